//! Prometheus metrics (prometheus-client), served on the metrics port.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cache::Cache;

/// Labels of a SCIM request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `namespace/name` of a known directory, else `unknown`.
    pub directory: String,
    /// e.g. `PATCH /Users/{id}`.
    pub operation: String,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of an operation (latency histograms).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// Operation.
    pub operation: String,
}

/// Labels of an apiserver call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// create, patch, get, delete.
    pub verb: String,
    /// ScimUser / ScimGroup.
    pub kind: String,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// All metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests by directory, operation, status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by operation.
    pub request_latency: Family<OpLabels, Histogram, fn() -> Histogram>,
    /// Requests being served (queued or running).
    pub in_flight: Gauge,
    /// apiserver calls by verb and kind.
    pub api_calls: Family<ApiLabels, Counter>,
    /// apiserver write/read latency by verb and kind.
    pub api_latency: Family<ApiLabels, Histogram, fn() -> Histogram>,
    /// Optimistic-concurrency conflicts (409 from the apiserver on an update).
    pub conflicts: Counter,
    cache_directories: Gauge,
    cache_users: Gauge,
    cache_groups: Gauge,
    cache_memberships: Gauge,
}

impl Metrics {
    /// Registers everything.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kube_scim");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "SCIM requests", requests.clone());
        let request_latency =
            Family::<OpLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        registry.register(
            "request_duration_seconds",
            "SCIM request latency",
            request_latency.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests queued or running",
            in_flight.clone(),
        );
        let api_calls = Family::<ApiLabels, Counter>::default();
        registry.register(
            "apiserver_calls",
            "Calls to the apiserver",
            api_calls.clone(),
        );
        let api_latency =
            Family::<ApiLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        registry.register(
            "apiserver_call_duration_seconds",
            "Latency of apiserver calls",
            api_latency.clone(),
        );
        let conflicts = Counter::default();
        registry.register(
            "apiserver_conflicts",
            "Update conflicts on resourceVersion (each is retried)",
            conflicts.clone(),
        );
        let g = |r: &mut Registry, n: &str, h: &str| {
            let x = Gauge::default();
            r.register(n, h, x.clone());
            x
        };
        let cache_directories = g(&mut registry, "cache_directories", "Cached directories");
        let cache_users = g(&mut registry, "cache_users", "Cached users");
        let cache_groups = g(&mut registry, "cache_groups", "Cached groups");
        let cache_memberships = g(
            &mut registry,
            "cache_memberships",
            "Cached group membership records",
        );
        Metrics {
            registry,
            requests,
            request_latency,
            in_flight,
            api_calls,
            api_latency,
            conflicts,
            cache_directories,
            cache_users,
            cache_groups,
            cache_memberships,
        }
    }

    /// Text exposition, with cache gauges refreshed.
    pub fn render(&self, cache: &Arc<Cache>) -> String {
        let s = cache.sizes();
        self.cache_directories.set(s.directories as i64);
        self.cache_users.set(s.users as i64);
        self.cache_groups.set(s.groups as i64);
        self.cache_memberships.set(s.memberships as i64);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

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

/// Labels of a directory's own series: `namespace/name` of a directory the server knows (their
/// number is the number of directories; never user data).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirLabels {
    /// `namespace/name`.
    pub directory: String,
}

/// Labels of a throttled failed authentication.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottleLabels {
    /// `namespace/name` of a known directory, else `unknown`.
    pub directory: String,
    /// The limit it ran into: `address` or `directory`.
    pub scope: String,
}

/// Labels of the membership label writes of the background worker.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LabelWriteLabels {
    /// `namespace/name` of the directory (never a group or user id: bounded).
    pub directory: String,
    /// `add` (a member rollout) or `remove` (a deleted group, a rollout, leftovers).
    pub change: String,
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
    /// ScimUser / ScimGroup (Lease: one-time assertion claims).
    pub kind: String,
}

/// Labels of a retried apiserver call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// create, patch, get, list, delete.
    pub verb: String,
    /// ScimUser / ScimGroup.
    pub kind: String,
    /// The failed answer: `429`, `500` (an etcd timeout), `503`, `504`, `timeout` (a timeout
    /// reason with another code) or `transport` (no answer: connection refused, reset, lost).
    pub cause: String,
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
    /// apiserver calls sent again after a retryable failure, by verb, kind and cause.
    pub api_retries: Family<RetryLabels, Counter>,
    /// Requests answered 401, by directory.
    pub auth_failures: Family<DirLabels, Counter>,
    /// Failed authentications past a limit (answered 429 after a delay), by directory and scope.
    pub auth_throttled: Family<ThrottleLabels, Counter>,
    /// Requests refused because the body bytes budget was spent (answered 503), by directory.
    pub bodies_refused: Family<DirLabels, Counter>,
    /// Connections closed as soon as accepted: too many unauthenticated connections.
    pub connections_refused: Counter,
    /// Membership labels the background worker wrote, by directory and change.
    pub cleanup_label_writes: Family<LabelWriteLabels, Counter>,
    /// When each directory last got an authenticated request (Unix seconds).
    last_request: std::sync::Mutex<std::collections::HashMap<String, f64>>,
    directory_ready: Family<DirLabels, Gauge>,
    directory_suspended: Family<DirLabels, Gauge>,
    directory_users: Family<DirLabels, Gauge>,
    directory_active_users: Family<DirLabels, Gauge>,
    directory_groups: Family<DirLabels, Gauge>,
    directory_held: Family<DirLabels, Gauge>,
    group_cleanup_pending: Family<DirLabels, Gauge>,
    directory_last_request: Family<DirLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    cache_directories: Gauge,
    cache_users: Gauge,
    cache_groups: Gauge,
    cache_memberships: Gauge,
}

impl Metrics {
    /// Registers everything.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kube_scim");
        registry.register(
            "build",
            "Version and commit of this binary (always 1)",
            prometheus_client::metrics::info::Info::new(build_labels()),
        );
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
        let api_retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            "apiserver_retries",
            "apiserver calls sent again after a retryable failure (429, etcd timeout, 503, 504, lost connection)",
            api_retries.clone(),
        );
        let g = |r: &mut Registry, n: &str, h: &str| {
            let x = Gauge::default();
            r.register(n, h, x.clone());
            x
        };
        let auth_failures = Family::<DirLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Requests to a directory answered 401 (missing or invalid credentials)",
            auth_failures.clone(),
        );
        let auth_throttled = Family::<ThrottleLabels, Counter>::default();
        registry.register(
            "auth_failures_throttled",
            "Failed authentications past the per-address or per-directory limit (answered 429 after a delay)",
            auth_throttled.clone(),
        );
        let bodies_refused = Family::<DirLabels, Counter>::default();
        registry.register(
            "body_budget_refusals",
            "Requests answered 503 because the bytes of buffered bodies were at their limit",
            bodies_refused.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "unauthenticated_connections_refused",
            "Connections closed when accepted: too many connections without an authenticated request",
            connections_refused.clone(),
        );
        let per_dir = |r: &mut Registry, n: &str, h: &str| {
            let x = Family::<DirLabels, Gauge>::default();
            r.register(n, h, x.clone());
            x
        };
        let directory_ready = per_dir(
            &mut registry,
            "directory_ready",
            "1 if the directory's Ready condition is True",
        );
        let directory_suspended = per_dir(
            &mut registry,
            "directory_suspended",
            "1 if the directory is suspended (spec.suspend)",
        );
        let directory_users = per_dir(&mut registry, "directory_users", "Users of the directory");
        let directory_active_users = per_dir(
            &mut registry,
            "directory_active_users",
            "Active users of the directory",
        );
        let directory_groups =
            per_dir(&mut registry, "directory_groups", "Groups of the directory");
        let directory_held = per_dir(
            &mut registry,
            "directory_held_operations",
            "Deletions and deactivations the deletion guard holds",
        );
        let group_cleanup_pending = per_dir(
            &mut registry,
            "group_cleanup_pending",
            "Groups whose members' membership labels this replica's background worker has yet to write or remove (deleted groups, member rollouts, leftover labels)",
        );
        let cleanup_label_writes = Family::<LabelWriteLabels, Counter>::default();
        registry.register(
            "group_cleanup_label_writes",
            "Membership labels the background worker added or removed",
            cleanup_label_writes.clone(),
        );
        let directory_last_request =
            Family::<DirLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "directory_last_request_timestamp_seconds",
            "When the directory last got an authenticated request from its identity provider (Unix time, this replica)",
            directory_last_request.clone(),
        );
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
            api_retries,
            auth_failures,
            auth_throttled,
            bodies_refused,
            connections_refused,
            cleanup_label_writes,
            last_request: Default::default(),
            directory_ready,
            directory_suspended,
            directory_users,
            directory_active_users,
            directory_groups,
            directory_held,
            group_cleanup_pending,
            directory_last_request,
            cache_directories,
            cache_users,
            cache_groups,
            cache_memberships,
        }
    }

    /// Records an authenticated request to directory `directory` now.
    pub fn request_seen(&self, directory: &str) {
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        self.last_request
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(directory.to_string(), now);
    }

    /// Text exposition, with cache gauges refreshed.
    pub fn render(&self, cache: &Arc<Cache>) -> String {
        let stats = cache.directory_stats();
        for family in [
            &self.directory_ready,
            &self.directory_suspended,
            &self.directory_users,
            &self.directory_active_users,
            &self.directory_groups,
            &self.directory_held,
            &self.group_cleanup_pending,
        ] {
            family.clear();
        }
        self.directory_last_request.clear();
        {
            let mut seen = self.last_request.lock().unwrap_or_else(|e| e.into_inner());
            // Deleted directories leave no series behind.
            seen.retain(|d, _| stats.iter().any(|s| &s.directory == d));
            for (directory, at) in seen.iter() {
                self.directory_last_request
                    .get_or_create(&DirLabels {
                        directory: directory.clone(),
                    })
                    .set(*at);
            }
        }
        for st in &stats {
            let l = DirLabels {
                directory: st.directory.clone(),
            };
            self.directory_ready.get_or_create(&l).set(st.ready as i64);
            self.directory_suspended
                .get_or_create(&l)
                .set(st.suspended as i64);
            self.directory_users.get_or_create(&l).set(st.users as i64);
            self.directory_active_users
                .get_or_create(&l)
                .set(st.active_users as i64);
            self.directory_groups
                .get_or_create(&l)
                .set(st.groups as i64);
            self.directory_held.get_or_create(&l).set(st.held as i64);
            self.group_cleanup_pending
                .get_or_create(&l)
                .set(st.cleanup_pending as i64);
        }
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

/// Labels of `kube_scim_build_info`: alerts and dashboards tell replicas of different versions
/// apart during a rollout. The commit is whatever the build passed in `KUBE_SCIM_GIT_COMMIT`
/// (the release workflow does), `unknown` otherwise.
pub fn build_labels() -> Vec<(&'static str, &'static str)> {
    vec![
        ("version", env!("CARGO_PKG_VERSION")),
        (
            "git_commit",
            option_env!("KUBE_SCIM_GIT_COMMIT").unwrap_or("unknown"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_names_the_version() {
        let text = Metrics::new().render(&Arc::new(Cache::default()));
        let line = format!(
            "kube_scim_build_info{{version=\"{}\",git_commit=\"",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&line), "{text}");
    }

    #[test]
    fn directory_series_follow_the_cache() {
        let cache = Arc::new(Cache::default());
        let mut d = kube_scim_crds::ScimDirectory::new("d", Default::default());
        d.metadata.namespace = Some("ns".into());
        d.spec.suspend = true;
        cache.apply_directory(&d);
        cache.cleanups().queue(crate::cleanup_queue::CleanupJob {
            ns: "ns".into(),
            dir: "d".into(),
            group: "g".into(),
        });
        let metrics = Metrics::new();
        metrics.request_seen("ns/d");
        metrics.request_seen("ns/gone");
        let text = metrics.render(&cache);
        assert!(
            text.contains("kube_scim_directory_suspended{directory=\"ns/d\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kube_scim_directory_ready{directory=\"ns/d\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("kube_scim_directory_users{directory=\"ns/d\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("kube_scim_directory_last_request_timestamp_seconds{directory=\"ns/d\"}"),
            "{text}"
        );
        assert!(
            text.contains("kube_scim_group_cleanup_pending{directory=\"ns/d\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("ns/gone"),
            "unknown directories have no series: {text}"
        );
    }
}

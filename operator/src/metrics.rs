//! Prometheus metrics (`/metrics`, OpenMetrics text).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListWatchLabels {
    pub resource: String,
    pub verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub namespace: String,
    pub webhook: String,
}

/// The operator's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    pub reconciliations: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub group_binding_failures: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub leader: Gauge,
    pub counts_refreshes: Family<ResultLabels, Counter>,
    pub api_requests: Family<RequestLabels, Counter>,
    pub api_list_watch_requests: Family<ListWatchLabels, Counter>,
    pub webhook_delivered: Family<WebhookLabels, Counter>,
    pub webhook_failures: Family<WebhookLabels, Counter>,
    pub webhook_dropped: Family<WebhookLabels, Counter>,
    pub webhook_backlog: Family<WebhookLabels, Gauge>,
    pub webhook_checkpoints: Family<WebhookLabels, Counter>,
    pub webhook_outbox_bytes: Family<WebhookLabels, Gauge>,
    pub group_binding_bytes_written: Counter,
    pub group_binding_writes_deferred: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kube_scim_operator");
        registry.register(
            "build",
            "Version and commit of this binary (always 1)",
            prometheus_client::metrics::info::Info::new(build_labels()),
        );
        let reconciliations = Counter::default();
        registry.register(
            "reconciliations",
            "ScimDirectory reconciliations started",
            reconciliations.clone(),
        );
        let failures = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconciliation_errors",
            "ScimDirectory reconciliations that failed, by reason",
            failures.clone(),
        );
        let group_binding_failures = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "group_binding_errors",
            "ScimGroupBinding reconciliations that failed, by reason",
            group_binding_failures.clone(),
        );
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        registry.register(
            "reconcile_duration_seconds",
            "Duration of ScimDirectory reconciliations",
            duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and reconciles",
            leader.clone(),
        );
        let counts_refreshes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "counts_refreshes",
            "Refreshes of a directory's user and group counts, by result (written, unchanged, gone, conflict, failed)",
            counts_refreshes.clone(),
        );
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests to the Kubernetes API, by HTTP method and resource (e.g. scimdirectories/status); watches count once",
            api_requests.clone(),
        );
        let api_list_watch_requests = Family::<ListWatchLabels, Counter>::default();
        registry.register(
            "api_list_watch_requests",
            "Lists and watches of a collection (GETs of one object not included), by resource and verb (list, watch)",
            api_list_watch_requests.clone(),
        );
        let webhook_delivered = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_events_delivered",
            "Webhook events acknowledged by the receiver (redeliveries included)",
            webhook_delivered.clone(),
        );
        let webhook_failures = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_request_failures",
            "Webhook requests that failed (connection error, timeout or non-2xx answer)",
            webhook_failures.clone(),
        );
        let webhook_dropped = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_events_dropped",
            "Webhook events dropped after spec.retryFor",
            webhook_dropped.clone(),
        );
        let webhook_backlog = Family::<WebhookLabels, Gauge>::default();
        registry.register(
            "webhook_backlog",
            "Webhook events waiting for the receiver",
            webhook_backlog.clone(),
        );
        let webhook_checkpoints = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_checkpoints",
            "Writes of a webhook's outbox Secret",
            webhook_checkpoints.clone(),
        );
        let webhook_outbox_bytes = Family::<WebhookLabels, Gauge>::default();
        registry.register(
            "webhook_outbox_bytes",
            "Compressed size of a webhook's outbox (the Secret holds at most 900 KiB of it)",
            webhook_outbox_bytes.clone(),
        );
        let group_binding_bytes_written = Counter::default();
        registry.register(
            "group_binding_written_bytes",
            "Bytes of RoleBindings and ClusterRoleBindings written by ScimGroupBindings (the JSON sent)",
            group_binding_bytes_written.clone(),
        );
        let group_binding_writes_deferred = Counter::default();
        registry.register(
            "group_binding_writes_deferred",
            "ScimGroupBinding reconciles whose additions waited for the write budget",
            group_binding_writes_deferred.clone(),
        );
        Self {
            registry,
            group_binding_bytes_written,
            group_binding_writes_deferred,
            webhook_delivered,
            webhook_failures,
            webhook_dropped,
            webhook_backlog,
            webhook_checkpoints,
            webhook_outbox_bytes,
            reconciliations,
            failures,
            group_binding_failures,
            duration,
            leader,
            counts_refreshes,
            api_requests,
            api_list_watch_requests,
        }
    }
}

impl Metrics {
    /// The registry in OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn counts_refresh(&self, result: &str) {
        self.counts_refreshes
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts one request to the Kubernetes API (`query`: the URI's, without `?`).
    pub fn api_request(&self, method: &str, path: &str, query: Option<&str>) {
        self.api_requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                resource: api_resource(path),
            })
            .inc();
        if let Some(verb) = list_or_watch(method, path, query) {
            self.api_list_watch_requests
                .get_or_create(&ListWatchLabels {
                    resource: api_resource(path),
                    verb: verb.into(),
                })
                .inc();
        }
    }

    pub fn group_binding_failure(&self, reason: &str) {
        self.group_binding_failures
            .get_or_create(&ErrorLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn failure(&self, reason: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
}

/// The resource (and subresource) of a Kubernetes API path: `secrets`,
/// `scimdirectories/status`, `leases`; `other` for anything else (discovery, `/version`).
pub fn api_resource(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return "other".into(),
    };
    let rest = match rest {
        ["namespaces", _ns, resource, more @ ..] => {
            let mut r = vec![*resource];
            r.extend_from_slice(more);
            r
        }
        _ => rest.to_vec(),
    };
    match rest.as_slice() {
        [] => "other".into(),
        [resource] | [resource, _] => resource.to_string(),
        [resource, _, sub, ..] => format!("{resource}/{sub}"),
    }
}

/// `list` or `watch` for a GET of a collection, `None` for any other request: how often each
/// kind is listed and watched (the per-reconcile GETs of one object, counted with them in
/// `api_requests`, vary with the number of reconciles).
pub fn list_or_watch(method: &str, path: &str, query: Option<&str>) -> Option<&'static str> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["api", _, rest @ ..] | ["apis", _, _, rest @ ..] => rest,
        _ => return None,
    };
    let collection = match rest {
        ["namespaces", _] => false,
        ["namespaces", _, _] | [_] => true,
        _ => false,
    };
    if method != "GET" || !collection {
        return None;
    }
    let watch = query
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1");
    Some(if watch { "watch" } else { "list" })
}

/// Labels of `kube_scim_operator_build_info`: alerts and dashboards tell replicas of different versions
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
        let text = Metrics::default().encode();
        let line = format!(
            "kube_scim_operator_build_info{{version=\"{}\",git_commit=\"",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&line), "{text}");
    }

    #[test]
    fn group_binding_failures_are_counted_by_reason() {
        let metrics = Metrics::default();
        metrics.group_binding_failure("api_403");
        let text = metrics.encode();
        assert!(
            text.contains("kube_scim_operator_group_binding_errors_total{reason=\"api_403\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn only_gets_of_a_collection_are_lists_or_watches() {
        let dirs = "/apis/kubescim.io/v1alpha1/namespaces/ns/scimdirectories";
        for (method, path, query, verb) in [
            ("GET", dirs, Some("&limit=500"), Some("list")),
            ("GET", dirs, None, Some("list")),
            (
                "GET",
                dirs,
                Some("&watch=true&timeoutSeconds=290&resourceVersion=235"),
                Some("watch"),
            ),
            (
                "GET",
                "/apis/kubescim.io/v1alpha1/scimusers",
                Some("watch=1"),
                Some("watch"),
            ),
            ("GET", "/api/v1/namespaces", None, Some("list")),
            ("GET", &format!("{dirs}/contoso"), None, None),
            ("GET", "/api/v1/namespaces/ns", None, None),
            ("GET", &format!("{dirs}/contoso/status"), None, None),
            ("POST", dirs, None, None),
            ("GET", "/version", None, None),
        ] {
            assert_eq!(list_or_watch(method, path, query), verb, "{method} {path}");
        }
        let metrics = Metrics::default();
        metrics.api_request("GET", dirs, Some("watch=true"));
        metrics.api_request("GET", &format!("{dirs}/contoso"), None);
        let text = metrics.encode();
        assert!(
            text.contains(r#"kube_scim_operator_api_list_watch_requests_total{resource="scimdirectories",verb="watch"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"kube_scim_operator_api_requests_total{method="GET",resource="scimdirectories"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn api_paths_name_their_resource() {
        for (path, resource) in [
            ("/api/v1/namespaces/ns/secrets", "secrets"),
            ("/api/v1/namespaces/ns/secrets/d-scim-token", "secrets"),
            (
                "/apis/kubescim.io/v1alpha1/namespaces/ns/scimdirectories/d/status",
                "scimdirectories/status",
            ),
            ("/apis/kubescim.io/v1alpha1/scimusers", "scimusers"),
            ("/api/v1/namespaces/ns", "namespaces"),
            ("/api/v1/namespaces", "namespaces"),
            (
                "/apis/coordination.k8s.io/v1/namespaces/kube-scim/leases/op",
                "leases",
            ),
            ("/version", "other"),
            ("/apis", "other"),
        ] {
            assert_eq!(api_resource(path), resource, "{path}");
        }
    }
}

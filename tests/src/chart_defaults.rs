//! The configuration the Helm chart gives both components with its default values, for
//! `make dev`: locally, every feature behaves as after a plain `helm install` (e.g. a
//! ScimGroupBinding of `view` or `edit` is accepted, as `groupBindings.allowedClusterRoles`
//! allows). `helm_chart.rs` renders the chart and fails when these lists and the chart differ.

/// Environment of the operator's container with the chart's default values, without what names
/// the install itself (addresses, namespaces, the Lease, the verifier-key mount).
pub const OPERATOR_ENV: &[(&str, &str)] = &[
    ("KUBE_SCIM_LEASE_DURATION", "15s"),
    ("KUBE_SCIM_WATCH_NAMESPACES", ""),
    ("KUBE_SCIM_SERVER_SERVICE_PORT", "80"),
    ("KUBE_SCIM_CONCURRENCY", "4"),
    ("KUBE_SCIM_COUNTS_MIN_INTERVAL", "5s"),
    ("KUBE_SCIM_COUNTS_MAX_DELAY", "30s"),
    ("KUBE_SCIM_WEBHOOK_ALLOWED_CIDRS", ""),
    ("KUBE_SCIM_GROUP_BINDING_ALLOWED_CLUSTER_ROLES", "view,edit"),
    ("KUBE_SCIM_GROUP_BINDING_ALLOWED_ROLES", ""),
    ("KUBE_SCIM_GROUP_BINDING_ALLOW_CLUSTER_WIDE", "false"),
    ("KUBE_SCIM_GROUP_BINDING_SUBJECT_PREFIX", ""),
    ("KUBE_SCIM_GROUP_BINDING_WRITE_BUDGET", "4194304"),
    ("KUBE_SCIM_GROUP_BINDING_WRITE_BURST", "16777216"),
    ("KUBE_SCIM_LOG_FILTER", "info"),
    ("KUBE_SCIM_DEFAULT_ROUTE_KIND", "Ingress"),
];

/// Environment of the SCIM server's container with the chart's default values, without what
/// names the install itself.
pub const SERVER_ENV: &[(&str, &str)] = &[
    ("KUBE_SCIM_WATCH_NAMESPACES", ""),
    ("KUBE_SCIM_MAX_BODY_BYTES", "1048576"),
    ("KUBE_SCIM_REQUEST_TIMEOUT", "30s"),
    ("KUBE_SCIM_MAX_CONCURRENT_REQUESTS", "64"),
    ("KUBE_SCIM_MAX_CONCURRENT_REQUESTS_PER_DIRECTORY", "16"),
    ("KUBE_SCIM_INLINE_MEMBER_WRITES", "500"),
    ("KUBE_SCIM_MEMBER_CLEANUP_BATCH", "500"),
    ("KUBE_SCIM_MEMBER_WRITE_CONCURRENCY", "16"),
    ("KUBE_SCIM_MEMBERSHIP_SWEEP_INTERVAL", "5m"),
    (
        "KUBE_SCIM_ENTRA_METADATA_URL",
        "https://login.microsoftonline.com/{tenant}/.well-known/openid-configuration",
    ),
    (
        "KUBE_SCIM_ENTRA_ISSUER",
        "https://sts.windows.net/{tenant}/",
    ),
    (
        "KUBE_SCIM_FEDERATION_ISSUER",
        "https://login.microsoftonline.com/{tenant}/v2.0",
    ),
    ("KUBE_SCIM_MAX_APISERVER_REQUESTS", "64"),
    ("KUBE_SCIM_MAX_CONCURRENT_READS", "64"),
    ("KUBE_SCIM_MAX_CONCURRENT_READS_PER_DIRECTORY", "16"),
    ("KUBE_SCIM_MAX_BUFFERED_BODY_BYTES", "67108864"),
    ("KUBE_SCIM_MAX_BUFFERED_BODY_BYTES_PER_DIRECTORY", "4194304"),
    ("KUBE_SCIM_MAX_HEADER_BYTES", "16384"),
    ("KUBE_SCIM_HEADER_READ_TIMEOUT", "10s"),
    ("KUBE_SCIM_BODY_READ_TIMEOUT", "10s"),
    ("KUBE_SCIM_MAX_UNAUTHENTICATED_CONNECTIONS", "1024"),
    (
        "KUBE_SCIM_MAX_UNAUTHENTICATED_CONNECTIONS_PER_ADDRESS",
        "64",
    ),
    ("KUBE_SCIM_MAX_UNAUTHENTICATED_PROXY_CONNECTIONS", "1024"),
    ("KUBE_SCIM_AUTH_FAILURE_BURST_PER_ADDRESS", "20"),
    ("KUBE_SCIM_AUTH_FAILURE_BURST_PER_DIRECTORY", "60"),
    ("KUBE_SCIM_AUTH_FAILURE_DELAY", "1s"),
    ("KUBE_SCIM_AUTH_FAILURE_REFILL_INTERVAL", "1s"),
    ("KUBE_SCIM_LOG_FILTER", "info"),
];

/// Variables the chart sets per install, which `make dev` sets its own way (loopback
/// addresses, the `default` namespace, `.dev/verifier-keys`) or which only exist in a pod.
pub const PER_INSTALL_ENV: &[&str] = &[
    "POD_NAME",
    "POD_NAMESPACE",
    "KUBE_SCIM_IDENTITY",
    "KUBE_SCIM_LEASE_NAMESPACE",
    "KUBE_SCIM_LEASE_NAME",
    "KUBE_SCIM_SERVER_SERVICE_NAME",
    "KUBE_SCIM_SERVER_SERVICE_NAMESPACE",
    "KUBE_SCIM_LISTEN",
    "KUBE_SCIM_METRICS_BIND_ADDRESS",
    "KUBE_SCIM_VERIFIER_KEY_DIR",
    // The drain keeps a pod serving while proxies drop it from a Service's endpoints; a local
    // server behind no Service stops at once on Ctrl-C.
    "KUBE_SCIM_SHUTDOWN_DRAIN",
];

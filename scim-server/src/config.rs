//! Command-line flags (each also readable from an environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kube_scim_runtime::duration;
use kube_scim_runtime::logging::LogFormat;

/// kube-scim SCIM 2.0 server: serves `/scim/v2/<namespace>/<directory>` for every
/// ScimDirectory and stores users and groups as ScimUser / ScimGroup objects.
#[derive(Parser, Debug, Clone)]
#[command(name = "kube-scim-server", version, about, long_about = None)]
pub struct Settings {
    /// Address of the SCIM API.
    #[arg(long, env = "KUBE_SCIM_LISTEN", default_value = "[::]:8080")]
    pub listen: SocketAddr,

    /// Address of /metrics, /healthz and /readyz (the operator's flag of the same name).
    #[arg(
        long = "metrics-bind-address",
        alias = "metrics-listen",
        env = "KUBE_SCIM_METRICS_BIND_ADDRESS",
        default_value = "[::]:9090"
    )]
    pub metrics_listen: SocketAddr,

    /// Namespaces to serve (comma-separated). Empty: every namespace (needs cluster-wide RBAC).
    #[arg(
        long = "watch-namespaces",
        alias = "namespaces",
        env = "KUBE_SCIM_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub namespaces: Vec<String>,

    /// Largest accepted request body in bytes (larger: 413).
    #[arg(long, env = "KUBE_SCIM_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest accepted total size of request headers in bytes (larger: 431).
    #[arg(long, env = "KUBE_SCIM_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Deepest accepted JSON nesting of a request body.
    #[arg(long, env = "KUBE_SCIM_MAX_JSON_DEPTH", default_value_t = 32)]
    pub max_json_depth: usize,

    /// After this long a request (including its time queued) is answered 503: a duration
    /// (`30s`, `1m`) or, as `--request-timeout-secs` took, whole seconds.
    #[arg(long, alias = "request-timeout-secs", env = "KUBE_SCIM_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration::parse_flag_or_seconds)]
    pub request_timeout: Duration,

    /// Authorized SCIM requests that call the apiserver (writes, reads by id) processed at once;
    /// further ones wait in a queue (never 429). Cache-answered reads have their own slots
    /// (--max-concurrent-reads).
    #[arg(long, env = "KUBE_SCIM_MAX_CONCURRENT_REQUESTS", default_value_t = 64)]
    pub max_concurrent_requests: usize,

    /// Such requests of one directory processed at once (within --max-concurrent-requests);
    /// further requests of that directory wait in its own queue, so no directory can take
    /// every slot from the others.
    #[arg(
        long,
        env = "KUBE_SCIM_MAX_CONCURRENT_REQUESTS_PER_DIRECTORY",
        default_value_t = 16
    )]
    pub max_concurrent_requests_per_directory: usize,

    /// Requests answered from the cache (lists, filters, searches) processed at once: their own
    /// slots, so a read never waits for a slot a write to the apiserver holds.
    #[arg(long, env = "KUBE_SCIM_MAX_CONCURRENT_READS", default_value_t = 64)]
    pub max_concurrent_reads: usize,

    /// Requests of one directory answered from the cache at once (within
    /// --max-concurrent-reads).
    #[arg(
        long,
        env = "KUBE_SCIM_MAX_CONCURRENT_READS_PER_DIRECTORY",
        default_value_t = 16
    )]
    pub max_concurrent_reads_per_directory: usize,

    /// Bytes of request bodies buffered at once (a body of unknown length counts as
    /// --max-body-bytes); past it a request is answered 503 with Retry-After.
    #[arg(long, env = "KUBE_SCIM_MAX_BUFFERED_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_buffered_body_bytes: usize,

    /// Bytes of request bodies of one directory buffered at once (within
    /// --max-buffered-body-bytes); past it a request is answered 503 with Retry-After.
    // Four bodies of the largest size: every admitted body is work (read, parse, check) queued
    // on the cores that answer every other tenant; with 16 at once from one directory, other
    // tenants' cached reads waited up to 14 ms behind them, with 4 under 9 ms (issue 29's case
    // c). Entra's bodies are a few KiB, so four megabytes still hold hundreds of its requests.
    #[arg(
        long,
        env = "KUBE_SCIM_MAX_BUFFERED_BODY_BYTES_PER_DIRECTORY",
        default_value_t = 4 * 1024 * 1024
    )]
    pub max_buffered_body_bytes_per_directory: usize,

    /// Connections from one client address (IPv6: one /64) that have not yet carried an
    /// authenticated request; a further one is closed at once. 0: no limit.
    #[arg(
        long,
        env = "KUBE_SCIM_MAX_UNAUTHENTICATED_CONNECTIONS_PER_ADDRESS",
        default_value_t = 64
    )]
    pub max_unauthenticated_connections_per_address: usize,

    /// Connections in all that have not yet carried an authenticated request; a further one is
    /// closed at once. 0: no limit.
    #[arg(
        long,
        env = "KUBE_SCIM_MAX_UNAUTHENTICATED_CONNECTIONS",
        default_value_t = 1024
    )]
    pub max_unauthenticated_connections: usize,

    /// Connections from --trusted-proxies that have not yet carried an authenticated request, a
    /// pool apart from the direct clients' (which --max-unauthenticated-connections bounds), so
    /// neither side can fill the other's; a further one is closed at once. 0: no limit.
    #[arg(
        long,
        env = "KUBE_SCIM_MAX_UNAUTHENTICATED_PROXY_CONNECTIONS",
        default_value_t = 1024
    )]
    pub max_unauthenticated_proxy_connections: usize,

    /// Proxies (comma-separated CIDRs or addresses, e.g. the ingress controller's pod CIDR)
    /// whose `X-Forwarded-For` names the client for the per-address limits: for a connection
    /// from one of them, failed authentications are charged to the rightmost forwarded address
    /// that is not itself a trusted proxy, and the connection counts against
    /// --max-unauthenticated-proxy-connections, not the direct clients' limits. Any client
    /// inside these CIDRs can name any address:
    /// keep them to the proxies. Empty: the TCP peer is the client.
    #[arg(long, env = "KUBE_SCIM_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::proxy::ProxyNet>,

    /// Failed authentications one client address may make in a burst; past it (and past
    /// --auth-failure-burst-per-directory) failures are answered 429 after
    /// --auth-failure-delay. A valid credential is never refused. 0: no limit.
    #[arg(
        long,
        env = "KUBE_SCIM_AUTH_FAILURE_BURST_PER_ADDRESS",
        default_value_t = 20
    )]
    pub auth_failure_burst_per_address: u32,

    /// Failed authentications on one directory path (from every address, whether or not the
    /// directory exists) in a burst; past it failures are answered 429 after a delay. 0: no
    /// limit.
    #[arg(
        long,
        env = "KUBE_SCIM_AUTH_FAILURE_BURST_PER_DIRECTORY",
        default_value_t = 60
    )]
    pub auth_failure_burst_per_directory: u32,

    /// One more failed authentication is allowed per address and per directory every this long.
    #[arg(long, env = "KUBE_SCIM_AUTH_FAILURE_REFILL_INTERVAL", default_value = "1s", value_parser = duration::parse_flag)]
    pub auth_failure_refill_interval: Duration,

    /// How long a throttled failed authentication waits before its 429 (holding no slot).
    #[arg(long, env = "KUBE_SCIM_AUTH_FAILURE_DELAY", default_value = "1s", value_parser = duration::parse_flag)]
    pub auth_failure_delay: Duration,

    /// Longest wait for a request's head, and for the next request on an idle keep-alive
    /// connection; then the connection is closed.
    #[arg(long, env = "KUBE_SCIM_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration::parse_flag_or_seconds)]
    pub header_read_timeout: Duration,

    /// Longest wait for a request's whole body, read before the request takes a processing
    /// slot; a body not received in time is answered 408.
    #[arg(long, env = "KUBE_SCIM_BODY_READ_TIMEOUT", default_value = "10s", value_parser = duration::parse_flag_or_seconds)]
    pub body_read_timeout: Duration,

    /// Largest page of a list or filter response (ServiceProviderConfig filter.maxResults).
    #[arg(long, env = "KUBE_SCIM_MAX_RESULTS", default_value_t = 1000)]
    pub max_results: usize,

    /// Membership label writes run in parallel per group PATCH.
    #[arg(long, env = "KUBE_SCIM_MEMBER_WRITE_CONCURRENCY", default_value_t = 16)]
    pub member_write_concurrency: usize,

    /// apiserver calls in flight at once (every request's membership writes and the
    /// background worker together); further calls wait. Keeps a burst of group changes within
    /// what the server's API Priority and Fairness level admits (an overflow is answered 429,
    /// which is retried, but costs time).
    #[arg(long, env = "KUBE_SCIM_MAX_APISERVER_REQUESTS", default_value_t = 64)]
    pub max_apiserver_requests: usize,

    /// A member-list replacement (PUT with `members`, PATCH `replace` of `members`) or a new
    /// group that would write more membership labels than this is recorded on the group
    /// (`spec.memberRollout`, served at once) and its labels are written in the background, so
    /// no request's time grows with the group's size.
    #[arg(long, env = "KUBE_SCIM_INLINE_MEMBER_WRITES", default_value_t = 500)]
    pub inline_member_writes: usize,

    /// Membership labels the background cleanup of a deleted group removes per batch (each
    /// batch is written --member-write-concurrency at a time, then the group is read again).
    #[arg(long, env = "KUBE_SCIM_MEMBER_CLEANUP_BATCH", default_value_t = 500)]
    pub member_cleanup_batch: usize,

    /// How often the cache is swept for membership labels that name no group (a group deleted
    /// with kubectl, or while no server ran); they are removed. A group that disappears while
    /// the server runs is cleaned at once; the sweep is the safety net.
    #[arg(long, env = "KUBE_SCIM_MEMBERSHIP_SWEEP_INTERVAL", default_value = "5m", value_parser = duration::parse_flag)]
    pub membership_sweep_interval: Duration,

    /// Retries of an update after a resourceVersion conflict.
    #[arg(long, env = "KUBE_SCIM_CONFLICT_RETRIES", default_value_t = 5)]
    pub conflict_retries: usize,

    /// How long the server keeps serving after SIGTERM before it stops accepting connections,
    /// while /readyz fails and every response closes its connection (`Connection: close`), so
    /// proxies and keep-alive clients move to other replicas without a failed request. The
    /// chart sets it to `server.drainSeconds`.
    #[arg(long, env = "KUBE_SCIM_SHUTDOWN_DRAIN", default_value = "0s", value_parser = duration::parse_flag_or_seconds)]
    pub shutdown_drain: Duration,

    /// How long in-flight requests may finish after the drain: a duration or whole seconds.
    #[arg(long, alias = "shutdown-grace-secs", env = "KUBE_SCIM_SHUTDOWN_GRACE", default_value = "25s", value_parser = duration::parse_flag_or_seconds)]
    pub shutdown_grace: Duration,

    /// Directory of verifier keys (required), the same as the operator's: each file is one HMAC
    /// key (file name = key id). A bearer token is accepted when it matches a verifier published
    /// under any key found here; the Helm chart mounts a Secret here.
    #[arg(long, env = "KUBE_SCIM_VERIFIER_KEY_DIR")]
    pub verifier_key_dir: Option<PathBuf>,

    /// How often the verifier key directory is re-read (a mounted Secret changes in place).
    #[arg(long, env = "KUBE_SCIM_VERIFIER_KEY_RELOAD_INTERVAL", default_value = "10s", value_parser = duration::parse_flag)]
    pub verifier_key_reload_interval: Duration,

    /// OpenID metadata URL of an Entra tenant, `{tenant}` standing for the tenant id, for
    /// directories with auth method `EntraToken`. Change it for a sovereign cloud (e.g.
    /// `https://login.microsoftonline.us/{tenant}/.well-known/openid-configuration`) or a test
    /// issuer.
    #[arg(long, env = "KUBE_SCIM_ENTRA_METADATA_URL", default_value = crate::auth::entra::DEFAULT_METADATA_URL)]
    pub entra_metadata_url: String,

    /// Issuer of an Entra tenant's tokens, `{tenant}` standing for the tenant id (e.g.
    /// `https://sts.chinacloudapi.cn/{tenant}/` for Microsoft Entra operated by 21Vianet).
    #[arg(long, env = "KUBE_SCIM_ENTRA_ISSUER", default_value = crate::auth::entra::DEFAULT_ISSUER)]
    pub entra_issuer: String,

    /// Issuer of the client assertions an Entra tenant signs for workload identity federation
    /// (its v2.0 access tokens), `{tenant}` standing for the tenant id (e.g.
    /// `https://login.microsoftonline.us/{tenant}/v2.0` for US Government). Their keys come
    /// from `--entra-metadata-url`.
    #[arg(long, env = "KUBE_SCIM_FEDERATION_ISSUER", default_value = crate::auth::federation::DEFAULT_ISSUER)]
    pub federation_issuer: String,

    /// Shortest time between two fetches of one Entra tenant's signing keys (a token signed
    /// with an unknown key makes one).
    #[arg(long, env = "KUBE_SCIM_ENTRA_KEY_REFRESH_INTERVAL", default_value = "5s", value_parser = duration::parse_flag)]
    pub entra_key_refresh_interval: Duration,

    /// How often Events about authentication failures and rejected requests are published on
    /// a ScimDirectory: at most one of each kind per directory per interval.
    #[arg(long, env = "KUBE_SCIM_EVENT_INTERVAL", default_value = "1m", value_parser = duration::parse_flag)]
    pub event_interval: Duration,

    /// Log format: `json` (one JSON object per line) or `text`.
    #[arg(long, env = "KUBE_SCIM_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `kube_scim_server=debug,info`;
    /// RUST_LOG, when set, takes precedence (as in the operator).
    #[arg(
        long,
        alias = "log-level",
        env = "KUBE_SCIM_LOG_FILTER",
        default_value = "info"
    )]
    pub log_filter: String,
}

impl Settings {
    /// Request timeout (at least a second).
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout.max(Duration::from_secs(1))
    }

    /// Watched namespaces without empty entries.
    pub fn watched_namespaces(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_on_ipv6_and_ipv4_by_default() {
        let s = Settings::try_parse_from(["kube-scim-server"]).unwrap();
        assert_eq!(s.listen, "[::]:8080".parse().unwrap());
        assert_eq!(s.metrics_listen, "[::]:9090".parse().unwrap());
    }

    #[test]
    fn durations_and_log_flags_follow_the_shared_convention_and_keep_their_old_names() {
        let s = Settings::try_parse_from(["kube-scim-server"]).unwrap();
        assert_eq!(s.request_timeout(), Duration::from_secs(30));
        assert_eq!(s.shutdown_grace, Duration::from_secs(25));
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.verifier_key_dir, None);
        assert_eq!(s.verifier_key_reload_interval, Duration::from_secs(10));
        let s = Settings::try_parse_from([
            "kube-scim-server",
            "--request-timeout-secs=7",
            "--shutdown-grace=1m",
            "--log-level=warn",
            "--log-format=text",
        ])
        .unwrap();
        assert_eq!(s.request_timeout(), Duration::from_secs(7));
        assert_eq!(s.shutdown_grace, Duration::from_secs(60));
        assert_eq!(s.log_filter, "warn");
        assert_eq!(s.log_format, LogFormat::Text);
    }
}

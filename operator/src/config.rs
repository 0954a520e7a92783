//! Command-line flags; each can also be set through the environment variable named in `--help`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::route::{ParentRef, RouteDefaults, ServerService};
use kube_scim_crds::RouteKind;
use kube_scim_runtime::duration;
use kube_scim_runtime::logging::LogFormat;

/// kube-scim operator: reconciles ScimDirectories into a bearer-token Secret, an Ingress route
/// and a Tenant URL (status.endpoint), and keeps their status (conditions, token verifiers,
/// user and group counts) up to date.
///
/// Kubernetes access comes from the usual inference: $KUBECONFIG or ~/.kube/config, else the
/// in-cluster ServiceAccount.
#[derive(Parser, Debug, Clone)]
#[command(name = "kube-scim-operator", version, about, long_about)]
pub struct Flags {
    /// Namespaces to watch, comma separated. Empty: all namespaces.
    #[arg(
        long,
        env = "KUBE_SCIM_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub watch_namespaces: Vec<String>,

    /// Route kind of directories that set no spec.routeKind: `Ingress`, `Gateway` (a Gateway API
    /// HTTPRoute) or `None`.
    #[arg(long, env = "KUBE_SCIM_DEFAULT_ROUTE_KIND", default_value = "Ingress", value_parser = parse_route_kind)]
    pub default_route_kind: RouteKind,

    /// Gateway of HTTPRoutes for directories that set no spec.gateway.parentRefs, as
    /// `namespace/name` (or `name`, in the directory's namespace), optionally followed by
    /// `:listener`.
    #[arg(long, env = "KUBE_SCIM_DEFAULT_GATEWAY", value_parser = ParentRef::parse)]
    pub default_gateway: Option<ParentRef>,

    /// HTTPRoute host for directories that set no spec.gateway.host (default: the Ingress host).
    #[arg(long, env = "KUBE_SCIM_DEFAULT_GATEWAY_HOST")]
    pub default_gateway_host: Option<String>,

    /// Ingress host for directories that set no spec.ingress.host.
    #[arg(long, env = "KUBE_SCIM_DEFAULT_INGRESS_HOST")]
    pub default_ingress_host: Option<String>,

    /// IngressClass for directories that set no spec.ingress.ingressClassName.
    #[arg(long, env = "KUBE_SCIM_DEFAULT_INGRESS_CLASS")]
    pub default_ingress_class: Option<String>,

    /// TLS Secret name (looked up in each directory's namespace) for directories that set no
    /// spec.ingress.tlsSecretName. Setting it makes Tenant URLs https.
    #[arg(long, env = "KUBE_SCIM_DEFAULT_TLS_SECRET")]
    pub default_tls_secret: Option<String>,

    /// Annotations for every Ingress as a JSON object, e.g. `{"a.example/allow":"10.0.0.0/8,
    /// 192.168.0.0/16"}` (JSON, so values may contain commas). spec.ingress.annotations
    /// override these key by key.
    #[arg(long = "default-ingress-annotations", env = "KUBE_SCIM_DEFAULT_INGRESS_ANNOTATIONS", value_parser = parse_annotations)]
    pub default_ingress_annotations_json: Option<BTreeMap<String, String>>,

    /// One more annotation for every Ingress, as key=value (the value is taken whole); repeat
    /// the flag. Overrides the same key of --default-ingress-annotations.
    #[arg(long = "default-ingress-annotation", value_parser = parse_key_value)]
    pub default_ingress_annotations: Vec<(String, String)>,

    /// Name of the SCIM server's Service that Ingresses route to.
    #[arg(
        long,
        env = "KUBE_SCIM_SERVER_SERVICE_NAME",
        default_value = "kube-scim-server"
    )]
    pub server_service_name: String,

    /// Namespace of the SCIM server's Service (default: $POD_NAMESPACE, else `kube-scim`).
    #[arg(long, env = "KUBE_SCIM_SERVER_SERVICE_NAMESPACE")]
    pub server_service_namespace: Option<String>,

    /// Port of the SCIM server's Service.
    #[arg(long, env = "KUBE_SCIM_SERVER_SERVICE_PORT", default_value_t = 80)]
    pub server_service_port: u16,

    /// Cluster DNS domain, for the ExternalName Services of directories outside the server's
    /// namespace.
    #[arg(
        long,
        env = "KUBE_SCIM_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,

    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(
        long,
        env = "KUBE_SCIM_METRICS_BIND_ADDRESS",
        default_value = "[::]:8080"
    )]
    pub metrics_bind_address: SocketAddr,

    /// Run only while holding the leader Lease, so that several replicas are safe.
    #[arg(long, env = "KUBE_SCIM_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Name of the coordination.k8s.io Lease used for leader election.
    #[arg(
        long,
        env = "KUBE_SCIM_LEASE_NAME",
        default_value = "kube-scim-operator"
    )]
    pub lease_name: String,

    /// Namespace of the Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "KUBE_SCIM_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a Lease is valid without renewal; a standby takes over after this.
    #[arg(long, env = "KUBE_SCIM_LEASE_DURATION", default_value = "15s", value_parser = duration::parse_flag)]
    pub lease_duration: Duration,

    /// The leader gives up (and exits) when it could not renew for this long.
    #[arg(long, env = "KUBE_SCIM_LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = duration::parse_flag)]
    pub lease_renew_deadline: Duration,

    /// How often the leader renews and a standby tries to acquire the Lease.
    #[arg(long, env = "KUBE_SCIM_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = duration::parse_flag)]
    pub lease_retry_period: Duration,

    /// Identity in the Lease and in events (default: $POD_NAME, else hostname plus a random suffix).
    #[arg(long, env = "KUBE_SCIM_IDENTITY")]
    pub identity: Option<String>,

    /// Directories reconciled at the same time.
    #[arg(long, env = "KUBE_SCIM_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,

    /// Every directory is reconciled again at least this often (picks up changes nothing
    /// watches, e.g. an unlabelled bring-your-own Secret edited outside the cluster's watch).
    #[arg(long, env = "KUBE_SCIM_RESYNC_INTERVAL", default_value = "10m", value_parser = duration::parse_flag)]
    pub resync_interval: Duration,

    /// A directory's user and group counts (and lastProvisioningTime) in status are written at
    /// most once per this interval, however fast users and groups change; once changes pause
    /// for this long, the counts are brought up to date.
    #[arg(long, env = "KUBE_SCIM_COUNTS_MIN_INTERVAL", default_value = "5s", value_parser = duration::parse_flag)]
    pub counts_min_interval: Duration,

    /// While users and groups keep changing, a directory's counts in status lag the changes by
    /// at most this long (at least --counts-min-interval).
    #[arg(long, env = "KUBE_SCIM_COUNTS_MAX_DELAY", default_value = "30s", value_parser = duration::parse_flag)]
    pub counts_max_delay: Duration,
    /// Directory of verifier keys (required): each file is one HMAC key (file name = key id, at
    /// least 32 bytes), shared with the SCIM server; the Helm chart mounts a Secret here. Token
    /// verifiers are published under every key, so a key is rotated by adding the new one,
    /// waiting until both components have it, then removing the old one.
    #[arg(long, env = "KUBE_SCIM_VERIFIER_KEY_DIR")]
    pub verifier_key_dir: Option<PathBuf>,

    /// How often the verifier key directory is re-read; a change re-publishes every directory's
    /// verifiers.
    #[arg(long, env = "KUBE_SCIM_VERIFIER_KEY_RELOAD_INTERVAL", default_value = "10s", value_parser = duration::parse_flag)]
    pub verifier_key_reload_interval: Duration,

    /// Addresses that ScimWebhook receivers may have although they are loopback, link-local,
    /// private or otherwise special (SSRF protection), as CIDRs, comma separated, e.g.
    /// `10.0.0.0/8`. Empty: only public addresses.
    #[arg(
        long,
        env = "KUBE_SCIM_WEBHOOK_ALLOWED_CIDRS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub webhook_allowed_cidrs: Vec<String>,

    /// How often at most a ScimWebhook's outbox Secret is written; events are sent only once
    /// they are in it.
    #[arg(long, env = "KUBE_SCIM_WEBHOOK_CHECKPOINT_INTERVAL", default_value = "1s", value_parser = duration::parse_flag)]
    pub webhook_checkpoint_interval: Duration,

    /// How often at most a ScimWebhook's signing key Secret is re-read: a key rotation (a new
    /// `key`, the old one under `previous`) takes effect within this time.
    #[arg(long, env = "KUBE_SCIM_WEBHOOK_KEY_REFRESH_INTERVAL", default_value = "30s", value_parser = duration::parse_flag)]
    pub webhook_key_refresh_interval: Duration,

    /// ClusterRoles a ScimGroupBinding may grant, comma separated (e.g. `view,edit`). The
    /// operator binds nothing else, whoever wrote the ScimGroupBinding; it must itself hold
    /// `bind` on these (the Helm chart grants it for exactly this list).
    #[arg(
        long,
        env = "KUBE_SCIM_GROUP_BINDING_ALLOWED_CLUSTER_ROLES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub group_binding_allowed_cluster_roles: Vec<String>,

    /// Names of namespaced Roles a ScimGroupBinding may grant in its target namespaces, comma
    /// separated.
    #[arg(
        long,
        env = "KUBE_SCIM_GROUP_BINDING_ALLOWED_ROLES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub group_binding_allowed_roles: Vec<String>,

    /// Let ScimGroupBindings with `clusterWide: true` create ClusterRoleBindings.
    #[arg(long, env = "KUBE_SCIM_GROUP_BINDING_ALLOW_CLUSTER_WIDE", default_value_t = false, action = clap::ArgAction::Set)]
    pub group_binding_allow_cluster_wide: bool,

    /// Literal prefix every ScimGroupBinding's subject template must begin with, e.g. `oidc:`:
    /// the prefix the cluster's authenticator gives identity-provider names
    /// (`claimMappings.username.prefix`, `--oidc-username-prefix`). Empty: none required
    /// (names in the reserved `system:` namespace are refused either way).
    #[arg(
        long,
        env = "KUBE_SCIM_GROUP_BINDING_SUBJECT_PREFIX",
        default_value = ""
    )]
    pub group_binding_subject_prefix: String,

    /// Bytes of RoleBindings one ScimGroupBinding may write per minute when a change adds
    /// subjects (removals are never held back, but count); 0 turns the budget off. Bounds
    /// the etcd history a SCIM credential holder can cause by toggling members.
    #[arg(
        long,
        env = "KUBE_SCIM_GROUP_BINDING_WRITE_BUDGET",
        default_value_t = 4 * 1024 * 1024
    )]
    pub group_binding_write_budget: u64,

    /// Bytes one ScimGroupBinding may write at once before the per-minute budget applies
    /// (one change into 64 namespaces of 256 KiB parts is 16 MiB).
    #[arg(
        long,
        env = "KUBE_SCIM_GROUP_BINDING_WRITE_BURST",
        default_value_t = 16 * 1024 * 1024
    )]
    pub group_binding_write_burst: u64,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `kube_scim_operator=debug,info`;
    /// RUST_LOG, when set, takes precedence (as in the SCIM server).
    #[arg(long, env = "KUBE_SCIM_LOG_FILTER", default_value = "info")]
    pub log_filter: String,

    /// Log format: `json` (one JSON object per line) or `text`.
    #[arg(long, env = "KUBE_SCIM_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

fn parse_route_kind(s: &str) -> Result<RouteKind, String> {
    match s.to_ascii_lowercase().as_str() {
        "ingress" => Ok(RouteKind::Ingress),
        "gateway" => Ok(RouteKind::Gateway),
        "none" => Ok(RouteKind::None),
        _ => Err(format!(
            "{s:?} is not a route kind: Ingress, Gateway or None"
        )),
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

fn parse_annotations(s: &str) -> Result<BTreeMap<String, String>, String> {
    if s.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_str(s).map_err(|e| {
        format!("not a JSON object of string values ({e}); e.g. {{\"key\":\"value\"}}")
    })
}

fn pod_namespace() -> Option<String> {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
}

impl Flags {
    /// The SSRF allow-list of --webhook-allowed-cidrs.
    pub fn webhook_policy(&self) -> anyhow::Result<crate::webhook::target::Policy> {
        let mut allowed = Vec::new();
        for cidr in self
            .webhook_allowed_cidrs
            .iter()
            .filter(|c| !c.trim().is_empty())
        {
            allowed.push(
                cidr.trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--webhook-allowed-cidrs {cidr}: {e}"))?,
            );
        }
        Ok(crate::webhook::target::Policy { allowed })
    }

    /// What ScimGroupBindings may grant.
    pub fn binding_policy(&self) -> crate::group_binding::plan::BindingPolicy {
        let names = |list: &[String]| {
            list.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        crate::group_binding::plan::BindingPolicy {
            allowed_cluster_roles: names(&self.group_binding_allowed_cluster_roles),
            allowed_roles: names(&self.group_binding_allowed_roles),
            allow_cluster_wide: self.group_binding_allow_cluster_wide,
            subject_prefix: self.group_binding_subject_prefix.clone(),
            write_budget: crate::group_binding::budget::WriteBudget {
                bytes_per_minute: self.group_binding_write_budget,
                burst: self.group_binding_write_burst,
            },
        }
    }

    /// Ingress defaults and the SCIM server Service.
    pub fn route_defaults(&self) -> RouteDefaults {
        RouteDefaults {
            kind: self.default_route_kind,
            host: self.default_ingress_host.clone().filter(|s| !s.is_empty()),
            gateway_host: self.default_gateway_host.clone().filter(|s| !s.is_empty()),
            gateway_parents: self.default_gateway.clone().into_iter().collect(),
            ingress_class: self.default_ingress_class.clone().filter(|s| !s.is_empty()),
            tls_secret: self.default_tls_secret.clone().filter(|s| !s.is_empty()),
            annotations: self
                .default_ingress_annotations_json
                .clone()
                .unwrap_or_default()
                .into_iter()
                .chain(self.default_ingress_annotations.iter().cloned())
                .collect(),
            server: ServerService {
                name: self.server_service_name.clone(),
                namespace: self
                    .server_service_namespace
                    .clone()
                    .filter(|s| !s.is_empty())
                    .or_else(pod_namespace)
                    .unwrap_or_else(|| "kube-scim".into()),
                port: self.server_service_port,
                cluster_domain: self.cluster_domain.clone(),
            },
        }
    }

    /// Namespaces to watch; empty means all.
    pub fn namespaces(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .watch_namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Namespace of the leader-election Lease.
    pub fn lease_namespace(&self) -> String {
        self.lease_namespace
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(pod_namespace)
            .unwrap_or_else(|| "default".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_listen_on_ipv6_and_ipv4_by_default() {
        let flags = Flags::try_parse_from(["kube-scim-operator"]).unwrap();
        assert_eq!(flags.metrics_bind_address, "[::]:8080".parse().unwrap());
    }

    #[test]
    fn flags_parse_with_defaults_and_overrides() {
        let flags = Flags::try_parse_from(["kube-scim-operator"]).unwrap();
        assert!(flags.namespaces().is_empty());
        assert!(flags.leader_elect);
        assert_eq!(flags.lease_duration, Duration::from_secs(15));
        assert_eq!(flags.route_defaults().server.port, 80);
        assert_eq!(flags.counts_min_interval, Duration::from_secs(5));
        assert_eq!(flags.counts_max_delay, Duration::from_secs(30));
        assert_eq!(flags.verifier_key_dir, None);
        assert_eq!(flags.verifier_key_reload_interval, Duration::from_secs(10));

        let flags = Flags::try_parse_from([
            "kube-scim-operator",
            "--watch-namespaces=b,a,,a",
            "--default-ingress-host=scim.example.com",
            "--default-ingress-annotation=cert-manager.io/cluster-issuer=letsencrypt",
            "--default-ingress-annotation=x=y=z",
            "--server-service-namespace=scim",
            "--lease-duration=30s",
            "--leader-elect=false",
            "--counts-min-interval=2s",
            "--counts-max-delay=1m",
            "--verifier-key-dir=/etc/kube-scim/verifier-keys",
            "--verifier-key-reload-interval=1s",
        ])
        .unwrap();
        assert_eq!(flags.counts_min_interval, Duration::from_secs(2));
        assert_eq!(flags.counts_max_delay, Duration::from_secs(60));
        assert_eq!(
            flags.verifier_key_dir.as_deref(),
            Some(std::path::Path::new("/etc/kube-scim/verifier-keys"))
        );
        assert_eq!(flags.verifier_key_reload_interval, Duration::from_secs(1));
        assert_eq!(flags.namespaces(), vec!["a", "b"]);
        let defaults = flags.route_defaults();
        assert_eq!(defaults.host.as_deref(), Some("scim.example.com"));
        assert_eq!(
            defaults.annotations["cert-manager.io/cluster-issuer"],
            "letsencrypt"
        );
        assert_eq!(defaults.annotations["x"], "y=z");
        assert_eq!(defaults.server.namespace, "scim");
        assert_eq!(flags.lease_duration, Duration::from_secs(30));
        assert!(!flags.leader_elect);
        assert_eq!(defaults.kind, RouteKind::Ingress);
        assert!(Flags::try_parse_from(["kube-scim-operator", "--lease-duration=soon"]).is_err());

        let flags = Flags::try_parse_from([
            "kube-scim-operator",
            "--default-route-kind=gateway",
            "--default-gateway=infra/edge:https",
        ])
        .unwrap();
        let defaults = flags.route_defaults();
        assert_eq!(defaults.kind, RouteKind::Gateway);
        assert_eq!(
            defaults.gateway_parents,
            vec![ParentRef {
                name: "edge".into(),
                namespace: Some("infra".into()),
                section: Some("https".into()),
            }]
        );
        assert!(Flags::try_parse_from(["kube-scim-operator", "--default-gateway=Edge/"]).is_err());
        assert!(
            Flags::try_parse_from(["kube-scim-operator", "--default-route-kind=istio"]).is_err()
        );

        // JSON keeps commas inside values; a repeated key=value flag overrides a JSON key.
        let flags = Flags::try_parse_from([
            "kube-scim-operator",
            r#"--default-ingress-annotations={"allow":"10.0.0.0/8,192.168.0.0/16","x":"1"}"#,
            "--default-ingress-annotation=x=2",
        ])
        .unwrap();
        let annotations = flags.route_defaults().annotations;
        assert_eq!(annotations["allow"], "10.0.0.0/8,192.168.0.0/16");
        assert_eq!(annotations["x"], "2");
        assert!(
            Flags::try_parse_from(["kube-scim-operator", "--default-ingress-annotations=a=b"])
                .is_err()
        );
    }
}

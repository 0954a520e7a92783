//! Gateway API routes: the HTTPRoute of a directory and the ReferenceGrant that lets it reach the
//! SCIM server in another namespace, built as JSON (CRDs that k8s-openapi does not type, and a
//! cluster may not have), and the pure reading of what the Gateway controller reports: which
//! listeners a route attaches to (the Tenant URL's scheme) and the HTTPRoute's status per parent.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use super::{ParentRef, Route, ServerService, child_labels, child_name};

/// API group of the Gateway API.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Name of the ReferenceGrant in the SCIM server's namespace that lets the HTTPRoute of
/// directory `namespace/directory` name the server's Service (`.` cannot occur in a namespace,
/// so the name is unique per directory).
pub fn reference_grant_name(namespace: &str, directory: &str) -> String {
    child_name(&format!("scim-route-{namespace}.{directory}"), "", 253)
}

/// The HTTPRoute of a directory: `route.path` (PathPrefix) on `route.host`, attached to
/// `route.parents`, to the SCIM server Service. A path prefix is rewritten away, so the server
/// sees its own `/scim/v2/<namespace>/<name>` path.
pub fn build_httproute(
    name: &str,
    namespace: &str,
    directory: &str,
    owner: OwnerReference,
    route: &Route,
    server: &ServerService,
) -> Value {
    let parents: Vec<Value> = route
        .parents
        .iter()
        .map(|p| {
            let mut parent = json!({"group": GATEWAY_GROUP, "kind": "Gateway", "name": p.name});
            if let Some(ns) = &p.namespace {
                parent["namespace"] = json!(ns);
            }
            if let Some(section) = &p.section {
                parent["sectionName"] = json!(section);
            }
            parent
        })
        .collect();
    let mut backend =
        json!({"group": "", "kind": "Service", "name": server.name, "port": server.port});
    if namespace != server.namespace {
        backend["namespace"] = json!(server.namespace);
    }
    let mut rule = json!({
        "matches": [{"path": {"type": "PathPrefix", "value": route.path}}],
        "backendRefs": [backend],
    });
    if route.path != route.scim_path {
        rule["filters"] = json!([{
            "type": "URLRewrite",
            "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": route.scim_path}},
        }]);
    }
    json!({
        "apiVersion": format!("{GATEWAY_GROUP}/v1"),
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": child_labels(directory),
            "ownerReferences": [owner],
        },
        "spec": {
            "parentRefs": parents,
            "hostnames": route.host.iter().collect::<Vec<_>>(),
            "rules": [rule],
        },
    })
}

/// The ReferenceGrant in the server's namespace that admits HTTPRoutes of `namespace` to the
/// server's Service (Gateway API forbids cross-namespace backends without one). It cannot be
/// owned across namespaces; its labels name the directory and the finalizer removes it.
pub fn build_reference_grant(
    name: &str,
    namespace: &str,
    directory: &str,
    server: &ServerService,
) -> Value {
    let mut labels = child_labels(directory);
    labels.insert(
        kube_scim_crds::labels::DIRECTORY_NAMESPACE.to_string(),
        namespace.to_string(),
    );
    json!({
        "apiVersion": format!("{GATEWAY_GROUP}/v1beta1"),
        "kind": "ReferenceGrant",
        "metadata": {"name": name, "namespace": server.namespace, "labels": labels},
        "spec": {
            "from": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute", "namespace": namespace}],
            "to": [{"group": "", "kind": "Service", "name": server.name}],
        },
    })
}

/// Whether `host` is accepted by a listener `hostname` (exact, or `*.` covering one or more
/// leading labels as the Gateway API defines); a listener without hostname accepts every host.
pub fn listener_accepts(listener_hostname: Option<&str>, host: &str) -> bool {
    match listener_hostname {
        None | Some("") => true,
        Some(pattern) => match pattern.strip_prefix("*.") {
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => pattern.eq_ignore_ascii_case(host),
        },
    }
}

/// Why a Gateway cannot carry the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerProblem {
    /// No listener of that name.
    NoSuchListener(String),
    /// No listener accepts the host.
    NoListenerForHost,
}

/// Whether the listeners of `gateway` (a Gateway object as JSON) that the route attaches to
/// speak https: with `section`, that listener; else every listener whose hostname accepts
/// `host`. https wins when both kinds are attached, as Entra requires https.
pub fn gateway_serves_https(
    gateway: &Value,
    section: Option<&str>,
    host: &str,
) -> Result<bool, ListenerProblem> {
    let listeners = gateway["spec"]["listeners"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let attached: Vec<&Value> = listeners
        .iter()
        .filter(|l| match section {
            Some(name) => l["name"].as_str() == Some(name),
            None => listener_accepts(l["hostname"].as_str(), host),
        })
        .filter(|l| matches!(l["protocol"].as_str(), Some("HTTP" | "HTTPS")))
        .collect();
    if attached.is_empty() {
        return Err(match section {
            Some(name) => ListenerProblem::NoSuchListener(name.to_string()),
            None => ListenerProblem::NoListenerForHost,
        });
    }
    Ok(attached
        .iter()
        .any(|l| l["protocol"].as_str() == Some("HTTPS")))
}

/// What the Gateway controller reports on an HTTPRoute for one parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentVerdict {
    /// No controller has written status for this parent (for this generation) yet.
    Awaiting,
    /// `Accepted` and `ResolvedRefs` are both True.
    Accepted,
    /// `Accepted` is False: the condition's reason and message.
    NotAccepted(String, String),
    /// `ResolvedRefs` is False: the condition's reason and message.
    Unresolved(String, String),
}

/// The verdict of `httproute` (as JSON) for `parent`, from `status.parents`.
pub fn parent_verdict(
    httproute: &Value,
    parent: &ParentRef,
    route_namespace: &str,
) -> ParentVerdict {
    let generation = httproute["metadata"]["generation"].as_i64();
    let wanted_ns = parent.namespace.as_deref().unwrap_or(route_namespace);
    let Some(entry) = httproute["status"]["parents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            let r = &p["parentRef"];
            r["name"].as_str() == Some(parent.name.as_str())
                && r["namespace"].as_str().unwrap_or(route_namespace) == wanted_ns
                && r["sectionName"].as_str() == parent.section.as_deref()
        })
    else {
        return ParentVerdict::Awaiting;
    };
    let condition = |type_: &str| {
        entry["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"].as_str() == Some(type_))
            .filter(|c| {
                // A condition about an older spec says nothing about this one.
                match (c["observedGeneration"].as_i64(), generation) {
                    (Some(seen), Some(current)) => seen >= current,
                    _ => true,
                }
            })
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or_default().to_string(),
                    c["reason"].as_str().unwrap_or_default().to_string(),
                    c["message"].as_str().unwrap_or_default().to_string(),
                )
            })
    };
    match (condition("Accepted"), condition("ResolvedRefs")) {
        (Some((s, reason, message)), _) if s == "False" => {
            ParentVerdict::NotAccepted(reason, message)
        }
        (_, Some((s, reason, message))) if s == "False" => {
            ParentVerdict::Unresolved(reason, message)
        }
        (Some((a, _, _)), Some((r, _, _))) if a == "True" && r == "True" => ParentVerdict::Accepted,
        _ => ParentVerdict::Awaiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{RouteDefaults, resolve};
    use kube_scim_crds::{RouteKind, ScimDirectorySpec};

    fn spec() -> ScimDirectorySpec {
        ScimDirectorySpec::default()
    }

    #[test]
    fn gateway_routes_take_their_own_settings_and_defaults() {
        let defaults = RouteDefaults {
            kind: RouteKind::Gateway,
            host: Some("scim.example.com".into()),
            gateway_parents: vec![ParentRef::parse("infra/edge").unwrap()],
            ..Default::default()
        };
        let mut s = spec();
        s.ingress.tls_secret_name = Some("ignored-for-gateways".into());
        let route = resolve("ns", "dir", &s, &defaults);
        assert_eq!(route.kind, RouteKind::Gateway);
        assert_eq!(route.host.as_deref(), Some("scim.example.com"));
        assert_eq!(route.parents[0].namespace.as_deref(), Some("infra"));
        assert!(!route.tls && route.tls_secret.is_none());

        s.gateway.host = Some("id.example.org".into());
        s.gateway.path_prefix = Some("/identity".into());
        s.gateway.parent_refs = vec![kube_scim_crds::GatewayParentRef {
            name: "local".into(),
            namespace: None,
            section_name: Some("https".into()),
        }];
        let route = resolve("ns", "dir", &s, &defaults);
        assert_eq!(route.host.as_deref(), Some("id.example.org"));
        assert_eq!(route.path, "/identity/scim/v2/ns/dir");
        assert_eq!(route.parents[0].display("ns"), "ns/local:https");

        let server = ServerService::default();
        let httproute = build_httproute(
            "dir-scim",
            "ns",
            "dir",
            OwnerReference::default(),
            &route,
            &server,
        );
        let rule = &httproute["spec"]["rules"][0];
        assert_eq!(
            rule["matches"][0]["path"]["value"],
            "/identity/scim/v2/ns/dir"
        );
        assert_eq!(
            rule["filters"][0]["urlRewrite"]["path"]["replacePrefixMatch"], "/scim/v2/ns/dir",
            "the prefix is stripped before the server"
        );
        assert_eq!(rule["backendRefs"][0]["namespace"], "kube-scim");
        assert_eq!(httproute["spec"]["hostnames"][0], "id.example.org");
        assert_eq!(httproute["spec"]["parentRefs"][0]["sectionName"], "https");

        let grant = build_reference_grant(&reference_grant_name("ns", "dir"), "ns", "dir", &server);
        assert_eq!(grant["metadata"]["namespace"], "kube-scim");
        assert_eq!(grant["spec"]["from"][0]["namespace"], "ns");
        assert_eq!(grant["spec"]["to"][0]["name"], "kube-scim-server");
        assert_ne!(
            reference_grant_name("a-b", "c"),
            reference_grant_name("a", "b-c")
        );
    }

    #[test]
    fn listeners_decide_the_scheme() {
        let gateway = json!({"spec": {"listeners": [
            {"name": "web", "protocol": "HTTP", "port": 80},
            {"name": "websecure", "protocol": "HTTPS", "port": 443, "hostname": "*.example.com"},
            {"name": "tcp", "protocol": "TCP", "port": 5432},
        ]}});
        assert_eq!(
            gateway_serves_https(&gateway, Some("web"), "a.example.com"),
            Ok(false)
        );
        assert_eq!(
            gateway_serves_https(&gateway, None, "a.example.com"),
            Ok(true)
        );
        assert_eq!(
            gateway_serves_https(&gateway, None, "a.example.org"),
            Ok(false)
        );
        assert_eq!(
            gateway_serves_https(&gateway, Some("tcp"), "a.example.com"),
            Err(ListenerProblem::NoSuchListener("tcp".into()))
        );
        let only_tls = json!({"spec": {"listeners": [
            {"name": "websecure", "protocol": "HTTPS", "hostname": "scim.example.com"},
        ]}});
        assert_eq!(
            gateway_serves_https(&only_tls, None, "other.example.com"),
            Err(ListenerProblem::NoListenerForHost)
        );
        assert!(listener_accepts(Some("*.example.com"), "a.b.example.com"));
        assert!(!listener_accepts(Some("*.example.com"), "example.com"));
        assert!(listener_accepts(
            Some("SCIM.example.com"),
            "scim.example.com"
        ));
    }

    #[test]
    fn httproute_status_gives_a_verdict_per_parent() {
        let parent = ParentRef::parse("edge").unwrap();
        let with = |conditions: Value, generation: i64| {
            json!({
                "metadata": {"generation": generation},
                "status": {"parents": [{
                    "parentRef": {"name": "edge", "namespace": "ns"},
                    "conditions": conditions,
                }]},
            })
        };
        let ok = json!([
            {"type": "Accepted", "status": "True", "observedGeneration": 2},
            {"type": "ResolvedRefs", "status": "True", "observedGeneration": 2},
        ]);
        assert_eq!(
            parent_verdict(&with(ok.clone(), 2), &parent, "ns"),
            ParentVerdict::Accepted
        );
        assert_eq!(
            parent_verdict(&with(ok, 3), &parent, "ns"),
            ParentVerdict::Awaiting,
            "conditions about an older generation"
        );
        let refused = json!([
            {"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners", "message": "no"},
        ]);
        assert_eq!(
            parent_verdict(&with(refused, 1), &parent, "ns"),
            ParentVerdict::NotAccepted("NotAllowedByListeners".into(), "no".into())
        );
        let unresolved = json!([
            {"type": "Accepted", "status": "True"},
            {"type": "ResolvedRefs", "status": "False", "reason": "RefNotPermitted", "message": "grant"},
        ]);
        assert_eq!(
            parent_verdict(&with(unresolved, 1), &parent, "ns"),
            ParentVerdict::Unresolved("RefNotPermitted".into(), "grant".into())
        );
        assert_eq!(
            parent_verdict(&json!({}), &parent, "ns"),
            ParentVerdict::Awaiting
        );
        let other = ParentRef::parse("infra/edge").unwrap();
        assert_eq!(
            parent_verdict(&with(json!([]), 1), &other, "ns"),
            ParentVerdict::Awaiting,
            "a Gateway of the same name in another namespace"
        );
    }
}

//! The pure part of the route step: who holds each name the route needs, what to do about it
//! (`Plan`), which objects a plan no longer needs, and the route part of the status.

use super::*;

/// The route part of the status.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteState {
    pub check: Check,
    pub endpoint: Option<String>,
}

impl RouteState {
    /// A route that does not work: a `False` condition and no Tenant URL.
    pub(super) fn failed(reason: &str, message: impl Into<String>) -> Self {
        RouteState {
            check: Check::failed(reason, message),
            endpoint: None,
        }
    }

    /// A child object the route needs is taken by `kind` `ns/name`, which is not this
    /// directory's: the operator never overwrites it, the user must clear the name so that it
    /// can `to_do`.
    pub(super) fn conflict(reason: &str, kind: &str, ns: &str, name: &str, to_do: &str) -> Self {
        RouteState::failed(
            reason,
            format!(
                "{kind} {ns}/{name} exists but does not belong to this directory. Delete or rename it so the operator can {to_do}."
            ),
        )
    }
}

/// Who holds a child object's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Nobody,
    ThisDirectory,
    SomethingElse,
}

impl Holder {
    pub(super) fn of(
        meta: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
        uid: &str,
    ) -> Self {
        match meta {
            None => Holder::Nobody,
            Some(m) if owned_by(m, uid) => Holder::ThisDirectory,
            Some(_) => Holder::SomethingElse,
        }
    }

    /// For objects that cannot carry an ownerReference (another namespace): by their labels.
    pub(super) fn by_labels(
        meta: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
        namespace: &str,
        directory: &str,
    ) -> Self {
        match meta {
            None => Holder::Nobody,
            Some(m) => {
                let l = m.labels.clone().unwrap_or_default();
                if l.get(labels::DIRECTORY).map(String::as_str) == Some(directory)
                    && l.get(labels::DIRECTORY_NAMESPACE).map(String::as_str) == Some(namespace)
                {
                    Holder::ThisDirectory
                } else {
                    Holder::SomethingElse
                }
            }
        }
    }
}

/// Who holds each name a directory's route may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holders {
    pub ingress: Holder,
    pub service: Holder,
    pub httproute: Holder,
    pub grant: Holder,
}

/// What to do about the route.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Route kind `None`: remove our objects; the Tenant URL is the public host if known, else
    /// the server's in-cluster Service.
    Disabled,
    /// No host in spec or defaults: remove our objects and say how to fix it.
    NoHost,
    /// Kind `Gateway` without a Gateway in spec or defaults: remove our objects, say how.
    NoGateway,
    /// The Ingress name is taken by something else.
    IngressConflict,
    /// The ExternalName Service name is taken by something else.
    ServiceConflict,
    /// The HTTPRoute name is taken by something else.
    HttpRouteConflict,
    /// The ReferenceGrant name is taken by something else.
    GrantConflict,
    /// Apply the Ingress, routing to the server's Service directly (same namespace) or
    /// through our ExternalName Service.
    ApplyIngress { through_external_service: bool },
    /// Apply the HTTPRoute and, across namespaces, the ReferenceGrant.
    ApplyHttpRoute { reference_grant: bool },
}

/// The plan, from the spec merged with defaults and who holds the names.
pub fn plan(route: &Route, same_namespace_as_server: bool, holders: Holders) -> Plan {
    if route.kind == RouteKind::None {
        return Plan::Disabled;
    }
    if route.host.is_none() {
        return Plan::NoHost;
    }
    if route.kind == RouteKind::Gateway {
        if route.parents.is_empty() {
            return Plan::NoGateway;
        }
        if holders.httproute == Holder::SomethingElse {
            return Plan::HttpRouteConflict;
        }
        if !same_namespace_as_server && holders.grant == Holder::SomethingElse {
            return Plan::GrantConflict;
        }
        return Plan::ApplyHttpRoute {
            reference_grant: !same_namespace_as_server,
        };
    }
    if holders.ingress == Holder::SomethingElse {
        return Plan::IngressConflict;
    }
    if !same_namespace_as_server && holders.service == Holder::SomethingElse {
        return Plan::ServiceConflict;
    }
    Plan::ApplyIngress {
        through_external_service: !same_namespace_as_server,
    }
}

/// Which of our objects a plan no longer needs: (ingress, service, httproute, grant).
pub fn unneeded(plan: &Plan) -> (bool, bool, bool, bool) {
    match plan {
        Plan::Disabled | Plan::NoHost | Plan::NoGateway => (true, true, true, true),
        Plan::IngressConflict
        | Plan::ServiceConflict
        | Plan::HttpRouteConflict
        | Plan::GrantConflict => (false, false, false, false),
        Plan::ApplyIngress {
            through_external_service,
        } => (false, !through_external_service, true, true),
        Plan::ApplyHttpRoute { reference_grant } => (true, true, false, !reference_grant),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn route(kind: RouteKind, host: Option<&str>) -> Route {
        Route {
            kind,
            host: host.map(str::to_string),
            path: "/scim/v2/ns/d".into(),
            scim_path: "/scim/v2/ns/d".into(),
            ingress_class: None,
            tls_secret: None,
            tls: false,
            annotations: BTreeMap::new(),
            parents: vec![route::ParentRef {
                name: "gw".into(),
                ..Default::default()
            }],
        }
    }

    fn holders(ingress: Holder, service: Holder, httproute: Holder, grant: Holder) -> Holders {
        Holders {
            ingress,
            service,
            httproute,
            grant,
        }
    }

    #[test]
    fn plans_follow_spec_host_and_who_holds_the_names() {
        use Holder::*;
        let h = route(RouteKind::Ingress, Some("scim.example.com"));
        let all_foreign = holders(SomethingElse, SomethingElse, SomethingElse, SomethingElse);
        assert_eq!(
            plan(&route(RouteKind::None, None), true, all_foreign),
            Plan::Disabled
        );
        assert_eq!(
            plan(
                &route(RouteKind::Ingress, None),
                true,
                holders(ThisDirectory, Nobody, Nobody, Nobody)
            ),
            Plan::NoHost
        );
        assert_eq!(
            plan(&h, true, holders(SomethingElse, Nobody, Nobody, Nobody)),
            Plan::IngressConflict
        );
        // A foreign Service matters only when the route goes through it.
        assert_eq!(
            plan(&h, true, holders(Nobody, SomethingElse, Nobody, Nobody)),
            Plan::ApplyIngress {
                through_external_service: false
            }
        );
        assert_eq!(
            plan(&h, false, holders(Nobody, SomethingElse, Nobody, Nobody)),
            Plan::ServiceConflict
        );
        assert_eq!(
            plan(
                &h,
                false,
                holders(ThisDirectory, ThisDirectory, SomethingElse, SomethingElse)
            ),
            Plan::ApplyIngress {
                through_external_service: true
            }
        );
    }

    #[test]
    fn gateway_plans_need_a_gateway_and_a_grant_only_across_namespaces() {
        use Holder::*;
        let g = route(RouteKind::Gateway, Some("scim.example.com"));
        assert_eq!(
            plan(
                &g,
                true,
                holders(SomethingElse, SomethingElse, Nobody, SomethingElse)
            ),
            Plan::ApplyHttpRoute {
                reference_grant: false
            }
        );
        assert_eq!(
            plan(&g, false, holders(Nobody, Nobody, Nobody, SomethingElse)),
            Plan::GrantConflict
        );
        assert_eq!(
            plan(&g, false, holders(Nobody, Nobody, SomethingElse, Nobody)),
            Plan::HttpRouteConflict
        );
        let mut no_parent = g.clone();
        no_parent.parents.clear();
        assert_eq!(
            plan(&no_parent, false, holders(Nobody, Nobody, Nobody, Nobody)),
            Plan::NoGateway
        );
    }

    #[test]
    fn switching_kinds_removes_the_other_kinds_objects() {
        // (ingress, service, httproute, grant)
        assert_eq!(
            unneeded(&Plan::ApplyHttpRoute {
                reference_grant: true
            }),
            (true, true, false, false)
        );
        assert_eq!(
            unneeded(&Plan::ApplyIngress {
                through_external_service: true
            }),
            (false, false, true, true)
        );
        assert_eq!(unneeded(&Plan::Disabled), (true, true, true, true));
        assert_eq!(
            unneeded(&Plan::IngressConflict),
            (false, false, false, false)
        );
    }
}

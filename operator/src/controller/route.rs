//! The route of a directory, by kind:
//! - `Ingress`: an Ingress for its SCIM path and, when the SCIM server runs in another
//!   namespace, an `ExternalName` Service the Ingress can name;
//! - `Gateway`: a Gateway API HTTPRoute attached to the user's Gateway and, across namespaces, a
//!   ReferenceGrant in the server's namespace (removed by the finalizer, as it cannot be owned);
//! - `None`: no object.
//!
//! `RouteReady` follows the route's own status: the address an Ingress controller published, or
//! the HTTPRoute's `Accepted`/`ResolvedRefs` from the Gateway controller. The objects are built in
//! [`crate::route`]; here they are observed, planned and written.
//!
//! One file over 600 lines on purpose: the three kinds share one plan type and one status
//! (`RouteState`) and one cleanup rule; its last 120 lines are the pure plan's unit tests.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use kube_scim_crds::{RouteKind, ScimDirectory, labels};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::context::{Context, MANAGER, owned_by};
use crate::reconcile::{Check, Error, is_forbidden, is_not_found};
use crate::route::{self, ListenerProblem, ParentVerdict, Route, RouteDefaults, ServerService};

/// The route part of the status.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteState {
    pub check: Check,
    pub endpoint: Option<String>,
}

impl RouteState {
    /// A route that does not work: a `False` condition and no Tenant URL.
    fn failed(reason: &str, message: impl Into<String>) -> Self {
        RouteState {
            check: Check::failed(reason, message),
            endpoint: None,
        }
    }

    /// A child object the route needs is taken by `kind` `ns/name`, which is not this
    /// directory's: the operator never overwrites it, the user must clear the name so that it
    /// can `to_do`.
    fn conflict(reason: &str, kind: &str, ns: &str, name: &str, to_do: &str) -> Self {
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
    fn of(
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
    fn by_labels(
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

/// Whether a directory's route needs a ReferenceGrant in the server's namespace (which only
/// the finalizer can remove).
pub fn needs_reference_grant(dir: &ScimDirectory, defaults: &RouteDefaults) -> bool {
    route::kind(&dir.spec, defaults) == RouteKind::Gateway
        && dir.metadata.namespace.as_deref() != Some(defaults.server.namespace.as_str())
}

fn gateway_resource(kind: &str, version: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: route::GATEWAY_GROUP.into(),
        version: version.into(),
        api_version: format!("{}/{version}", route::GATEWAY_GROUP),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The HTTPRoute resource, if the cluster serves the Gateway API.
pub async fn httproute_resource(client: &kube::Client) -> Option<ApiResource> {
    let group = kube::discovery::group(client, route::GATEWAY_GROUP)
        .await
        .ok()?;
    group
        .resources_by_stability()
        .into_iter()
        .find(|(r, _)| r.kind == "HTTPRoute" && r.version == "v1")
        .map(|(r, _)| r)
}

fn httproutes(ctx: &Context, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        ctx.client.clone(),
        ns,
        &gateway_resource("HTTPRoute", "v1", "httproutes"),
    )
}

fn reference_grants(ctx: &Context, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        ctx.client.clone(),
        ns,
        &gateway_resource("ReferenceGrant", "v1beta1", "referencegrants"),
    )
}

fn gateways(ctx: &Context, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        ctx.client.clone(),
        ns,
        &gateway_resource("Gateway", "v1", "gateways"),
    )
}

/// The object, or `None` when it or its whole API (a CRD not installed) does not exist.
async fn get_opt<K>(api: &Api<K>, name: &str) -> Result<Option<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(found) => Ok(found),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// [`get_opt`], with a 403 read as "none" unless `required`.
async fn get_unless_forbidden<K>(
    api: &Api<K>,
    name: &str,
    required: bool,
) -> Result<Option<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match get_opt(api, name).await {
        Err(Error::Kube(e)) if is_forbidden(&e) && !required => Ok(None),
        other => other,
    }
}

/// Deletes `name` when this directory holds it (a 404 meanwhile is fine).
async fn delete_ours<K>(api: &Api<K>, name: &str, holder: Holder) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    if holder != Holder::ThisDirectory {
        return Ok(());
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the directory's ReferenceGrant, if it holds one (the finalizer's route part).
pub async fn remove_reference_grant(dir: &ScimDirectory, ctx: &Context) -> Result<(), Error> {
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let name = dir.name_any();
    let server = &ctx.settings.defaults.server;
    let grants = reference_grants(ctx, &server.namespace);
    let grant_name = route::reference_grant_name(&ns, &name);
    let existing = get_opt(&grants, &grant_name).await?;
    let holder = Holder::by_labels(existing.as_ref().map(|g| &g.metadata), &ns, &name);
    delete_ours(&grants, &grant_name, holder).await
}

/// A 404 on a write to a Gateway API kind means its CRD is not installed.
fn gateway_api_missing(e: &kube::Error) -> bool {
    is_not_found(e)
}

fn missing_gateway_api() -> RouteState {
    RouteState::failed(
        "GatewayAPIMissing",
        "spec.routeKind is Gateway but the Gateway API CRDs (gateway.networking.k8s.io HTTPRoute, ReferenceGrant) are not installed: install the standard channel of sigs.k8s.io/gateway-api and a Gateway controller, or use routeKind Ingress.",
    )
}

/// The route part of a reconcile.
pub async fn reconcile(dir: &ScimDirectory, ctx: &Context) -> Result<RouteState, Error> {
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let uid = dir.uid().ok_or(Error::Unnamed)?;
    let name = dir.name_any();
    let defaults: &RouteDefaults = &ctx.settings.defaults;
    let server = &defaults.server;
    let route = route::resolve(&ns, &name, &dir.spec, defaults);
    let ingresses: Api<Ingress> = ctx.api(&ns);
    let services: Api<Service> = ctx.api(&ns);
    let routes = httproutes(ctx, &ns);
    let grants = reference_grants(ctx, &server.namespace);
    let ingress_name = route::ingress_name(&name);
    let service_name = route::external_service_name(&name);
    let grant_name = route::reference_grant_name(&ns, &name);

    let existing_ingress = ingresses.get_opt(&ingress_name).await?;
    let existing_service = services.get_opt(&service_name).await?;
    // An operator without RBAC on Gateway API kinds (an Ingress-only installation) cannot have
    // created any: a 403 means there is none to remove, unless the directory wants a Gateway.
    let gateway_kind = route.kind == RouteKind::Gateway;
    let existing_route = get_unless_forbidden(&routes, &ingress_name, gateway_kind).await?;
    let existing_grant = get_unless_forbidden(&grants, &grant_name, gateway_kind).await?;
    let holders = Holders {
        ingress: Holder::of(existing_ingress.as_ref().map(|i| &i.metadata), &uid),
        service: Holder::of(existing_service.as_ref().map(|s| &s.metadata), &uid),
        httproute: Holder::of(existing_route.as_ref().map(|r| &r.metadata), &uid),
        grant: Holder::by_labels(existing_grant.as_ref().map(|g| &g.metadata), &ns, &name),
    };
    let same_namespace = ns == server.namespace;
    let plan = plan(&route, same_namespace, holders);

    let (ingress_unneeded, service_unneeded, route_unneeded, grant_unneeded) = unneeded(&plan);
    if ingress_unneeded {
        delete_ours(&ingresses, &ingress_name, holders.ingress).await?;
    }
    if service_unneeded {
        delete_ours(&services, &service_name, holders.service).await?;
    }
    if route_unneeded {
        delete_ours(&routes, &ingress_name, holders.httproute).await?;
    }
    if grant_unneeded {
        delete_ours(&grants, &grant_name, holders.grant).await?;
    }

    match plan {
        Plan::Disabled => Ok(RouteState {
            check: Check::ok(
                "RouteDisabled",
                format!(
                    "The route kind is None: route {} to Service {}/{} port {} yourself",
                    route.path, server.namespace, server.name, server.port
                ),
            ),
            endpoint: Some(route::endpoint_without_route(
                &route,
                &ns,
                &name,
                dir.spec.provider,
                server,
            )),
        }),
        Plan::NoHost => Ok(RouteState::failed(
            "NoHost",
            match route.kind {
                RouteKind::Gateway => {
                    "No host for the HTTPRoute: set spec.gateway.host (or start the operator with --default-gateway-host or --default-ingress-host, Helm values routeDefaults.gateway.host or ingressDefaults.host), or set spec.routeKind to None and route to the SCIM server yourself."
                }
                _ => {
                    "No Ingress host: set spec.ingress.host (or start the operator with --default-ingress-host, Helm value ingressDefaults.host), or set spec.routeKind to None and route to the SCIM server yourself."
                }
            },
        )),
        Plan::NoGateway => Ok(RouteState::failed(
            "NoGateway",
            "spec.routeKind is Gateway but no Gateway is named: set spec.gateway.parentRefs (or start the operator with --default-gateway, Helm value routeDefaults.gateway.parentRef).",
        )),
        Plan::IngressConflict => Ok(RouteState::conflict(
            "IngressConflict",
            "Ingress",
            &ns,
            &ingress_name,
            "create the directory's route",
        )),
        Plan::ServiceConflict => Ok(RouteState::conflict(
            "ServiceConflict",
            "Service",
            &ns,
            &service_name,
            "route to the SCIM server",
        )),
        Plan::HttpRouteConflict => Ok(RouteState::conflict(
            "HTTPRouteConflict",
            "HTTPRoute",
            &ns,
            &ingress_name,
            "create the directory's route",
        )),
        Plan::GrantConflict => Ok(RouteState::conflict(
            "ReferenceGrantConflict",
            "ReferenceGrant",
            &server.namespace,
            &grant_name,
            "let the HTTPRoute reach the SCIM server",
        )),
        Plan::ApplyIngress {
            through_external_service,
        } => {
            apply_ingress(
                dir,
                ctx,
                &route,
                holders,
                through_external_service,
                (&ingress_name, &service_name),
            )
            .await
        }
        Plan::ApplyHttpRoute { reference_grant } => {
            apply_httproute(dir, ctx, route, holders, reference_grant, &grant_name).await
        }
    }
}

async fn apply_ingress(
    dir: &ScimDirectory,
    ctx: &Context,
    route: &Route,
    holders: Holders,
    through_external_service: bool,
    (ingress_name, service_name): (&str, &str),
) -> Result<RouteState, Error> {
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let name = dir.name_any();
    let server = &ctx.settings.defaults.server;
    let ingresses: Api<Ingress> = ctx.api(&ns);
    let services: Api<Service> = ctx.api(&ns);
    let owner = dir.controller_owner_ref(&()).ok_or(Error::Unnamed)?;
    let apply = PatchParams::apply(MANAGER).force();
    let backend = if through_external_service {
        let svc = route::build_external_service(service_name, &ns, &name, owner.clone(), server);
        services
            .patch(service_name, &apply, &Patch::Apply(&svc))
            .await?;
        service_name.to_string()
    } else {
        server.name.clone()
    };
    let desired = route::build_ingress(
        ingress_name,
        &ns,
        &name,
        owner,
        route,
        &backend,
        server.port,
    );
    let applied = ingresses
        .patch(ingress_name, &apply, &Patch::Apply(&desired))
        .await?;
    let host = route.host.as_deref().unwrap_or_default();
    if holders.ingress == Holder::Nobody {
        ctx.publish(
            dir,
            EventType::Normal,
            "RouteCreated",
            "Route",
            format!(
                "Created Ingress {ingress_name} for {host}{} (backend Service {backend})",
                route.path
            ),
        )
        .await;
    }
    let endpoint = route::endpoint(route, dir.spec.provider);
    let check = match route::ingress_address(&applied) {
        Some(address) => Check::ok(
            "IngressReady",
            format!(
                "Ingress {ingress_name} routes {host}{} to Service {backend}; its controller serves it at {address}",
                route.path
            ),
        ),
        None => Check::pending(
            "AwaitingAddress",
            format!(
                "Ingress {ingress_name} routes {host}{} to Service {backend}, but no Ingress controller has published an address for it yet: check that a controller serves IngressClass {}",
                route.path,
                route
                    .ingress_class
                    .as_deref()
                    .unwrap_or("(the cluster default)")
            ),
        ),
    };
    Ok(RouteState { check, endpoint })
}

async fn apply_httproute(
    dir: &ScimDirectory,
    ctx: &Context,
    mut route: Route,
    holders: Holders,
    reference_grant: bool,
    grant_name: &str,
) -> Result<RouteState, Error> {
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let name = dir.name_any();
    let server: &ServerService = &ctx.settings.defaults.server;
    let route_name = route::ingress_name(&name);
    let owner = dir.controller_owner_ref(&()).ok_or(Error::Unnamed)?;
    let apply = PatchParams::apply(MANAGER).force();
    if reference_grant {
        let grant = route::build_reference_grant(grant_name, &ns, &name, server);
        match reference_grants(ctx, &server.namespace)
            .patch(grant_name, &apply, &Patch::Apply(&grant))
            .await
        {
            Ok(_) => {}
            Err(e) if gateway_api_missing(&e) => return Ok(missing_gateway_api()),
            Err(e) => return Err(e.into()),
        }
    }
    let desired = route::build_httproute(&route_name, &ns, &name, owner, &route, server);
    let applied = match httproutes(ctx, &ns)
        .patch(&route_name, &apply, &Patch::Apply(&desired))
        .await
    {
        Ok(applied) => applied,
        Err(e) if gateway_api_missing(&e) => return Ok(missing_gateway_api()),
        Err(e) => return Err(e.into()),
    };
    let host = route.host.clone().unwrap_or_default();
    let parents: Vec<String> = route.parents.iter().map(|p| p.display(&ns)).collect();
    if holders.httproute == Holder::Nobody {
        ctx.publish(
            dir,
            EventType::Normal,
            "RouteCreated",
            "Route",
            format!(
                "Created HTTPRoute {route_name} for {host}{} on Gateway {} (backend Service {}/{})",
                route.path,
                parents.join(", "),
                server.namespace,
                server.name
            ),
        )
        .await;
    }

    // The scheme comes from the listeners the route attaches to.
    let mut https = false;
    for parent in &route.parents {
        let gateway_ns = parent.namespace.clone().unwrap_or_else(|| ns.clone());
        let Some(gateway) = get_opt(&gateways(ctx, &gateway_ns), &parent.name).await? else {
            return Ok(RouteState::failed(
                "GatewayNotFound",
                format!(
                    "Gateway {gateway_ns}/{} does not exist: create it, or name another in spec.gateway.parentRefs",
                    parent.name
                ),
            ));
        };
        let value = serde_json::to_value(&gateway).unwrap_or(Value::Null);
        match route::gateway_serves_https(&value, parent.section.as_deref(), &host) {
            Ok(tls) => https |= tls,
            Err(ListenerProblem::NoSuchListener(listener)) => {
                return Ok(RouteState::failed(
                    "ListenerNotFound",
                    format!(
                        "Gateway {gateway_ns}/{} has no HTTP or HTTPS listener named {listener}: fix spec.gateway.parentRefs[].sectionName",
                        parent.name
                    ),
                ));
            }
            Err(ListenerProblem::NoListenerForHost) => {
                return Ok(RouteState::failed(
                    "NoListenerForHost",
                    format!(
                        "No HTTP or HTTPS listener of Gateway {gateway_ns}/{} accepts host {host}: add one, or change spec.gateway.host",
                        parent.name
                    ),
                ));
            }
        }
    }
    route.tls = https;
    let endpoint = route::endpoint(&route, dir.spec.provider);

    let value = serde_json::to_value(&applied).unwrap_or(Value::Null);
    let verdicts: Vec<(String, ParentVerdict)> = route
        .parents
        .iter()
        .map(|p| (p.display(&ns), route::parent_verdict(&value, p, &ns)))
        .collect();
    for (parent, verdict) in &verdicts {
        match verdict {
            ParentVerdict::NotAccepted(reason, message) => {
                return Ok(RouteState::failed(
                    "RouteNotAccepted",
                    format!(
                        "Gateway {parent} did not accept HTTPRoute {route_name} ({reason}: {message}): check that its listeners allow routes from namespace {ns} and host {host}"
                    ),
                ));
            }
            ParentVerdict::Unresolved(reason, message) => {
                return Ok(RouteState::failed(
                    "BackendNotResolved",
                    format!(
                        "Gateway {parent} cannot reach the SCIM server Service {}/{} from HTTPRoute {route_name} ({reason}: {message})",
                        server.namespace, server.name
                    ),
                ));
            }
            ParentVerdict::Awaiting | ParentVerdict::Accepted => {}
        }
    }
    let awaiting: Vec<&str> = verdicts
        .iter()
        .filter(|(_, v)| *v == ParentVerdict::Awaiting)
        .map(|(p, _)| p.as_str())
        .collect();
    let check = if awaiting.is_empty() {
        Check::ok(
            "RouteAccepted",
            format!(
                "HTTPRoute {route_name} routes {host}{} to Service {}/{}, accepted by Gateway {}",
                route.path,
                server.namespace,
                server.name,
                parents.join(", ")
            ),
        )
    } else {
        Check::pending(
            "AwaitingGateway",
            format!(
                "HTTPRoute {route_name} is applied, but no controller has accepted it for Gateway {} yet: check that the Gateway's GatewayClass has a running controller",
                awaiting.join(", ")
            ),
        )
    };
    Ok(RouteState { check, endpoint })
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

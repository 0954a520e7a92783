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
//! [`plan`] is the pure part (one plan type, one status, one cleanup rule for the three kinds);
//! [`ingress`] and [`gateway`] write each kind's objects; this file reads what is there and
//! runs the plan.

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

mod gateway;
mod ingress;
mod plan;

use gateway::{apply_httproute, httproutes, reference_grants};
pub use gateway::{httproute_resource, remove_reference_grant};
use ingress::apply_ingress;
pub use plan::{Holder, Holders, Plan, RouteState, plan, unneeded};

/// Whether a directory's route needs a ReferenceGrant in the server's namespace (which only
/// the finalizer can remove).
pub fn needs_reference_grant(dir: &ScimDirectory, defaults: &RouteDefaults) -> bool {
    route::kind(&dir.spec, defaults) == RouteKind::Gateway
        && dir.metadata.namespace.as_deref() != Some(defaults.server.namespace.as_str())
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

/// The Normal Event of a route object this directory created.
async fn route_created(ctx: &Context, dir: &ScimDirectory, note: String) {
    ctx.publish(dir, EventType::Normal, "RouteCreated", "Route", note)
        .await;
}

/// The route objects as they are now: the name each would have is this directory's.
pub struct Existing {
    pub ingress: Option<Ingress>,
    pub service: Option<Service>,
    pub httproute: Option<DynamicObject>,
    pub grant: Option<DynamicObject>,
    /// The Gateways the wanted HTTPRoute attaches to (kind Gateway only), by namespace and
    /// name; one not found is absent. Read here, before any write, although only the written
    /// route's scheme needs them: no write of this reconcile changes a Gateway.
    pub gateways: Gateways,
}

/// Gateways by namespace and name.
pub type Gateways = std::collections::BTreeMap<(String, String), DynamicObject>;

/// Reads the route objects the directory may have.
pub async fn read(dir: &ScimDirectory, ctx: &Context) -> Result<Existing, Error> {
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let name = dir.name_any();
    let defaults: &RouteDefaults = &ctx.settings.defaults;
    let ingresses: Api<Ingress> = ctx.api(&ns);
    let services: Api<Service> = ctx.api(&ns);
    let routes = httproutes(ctx, &ns);
    let grants = reference_grants(ctx, &defaults.server.namespace);
    let ingress_name = route::ingress_name(&name);
    let grant_name = route::reference_grant_name(&ns, &name);
    let ingress = ingresses.get_opt(&ingress_name).await?;
    let service = services
        .get_opt(&route::external_service_name(&name))
        .await?;
    // An operator without RBAC on Gateway API kinds (an Ingress-only installation) cannot have
    // created any: a 403 means there is none to remove, unless the directory wants a Gateway.
    let gateway_kind = route::kind(&dir.spec, defaults) == RouteKind::Gateway;
    let httproute = get_unless_forbidden(&routes, &ingress_name, gateway_kind).await?;
    let grant = get_unless_forbidden(&grants, &grant_name, gateway_kind).await?;
    let mut gateways = Gateways::new();
    if gateway_kind {
        for parent in route::resolve(&ns, &name, &dir.spec, defaults).parents {
            let key = (parent.namespace.unwrap_or_else(|| ns.clone()), parent.name);
            if gateways.contains_key(&key) {
                continue;
            }
            if let Some(found) = get_opt(&gateway::gateways(ctx, &key.0), &key.1).await? {
                gateways.insert(key, found);
            }
        }
    }
    Ok(Existing {
        ingress,
        service,
        httproute,
        grant,
        gateways,
    })
}

/// The route step's plan: the route wanted, who holds each of its names, and what to do.
#[derive(Debug)]
pub struct Planned {
    pub route: Route,
    pub holders: Holders,
    pub plan: Plan,
    /// The Gateways read (see [`Existing::gateways`]), as JSON: their listeners give the
    /// written HTTPRoute its scheme.
    pub gateways: std::collections::BTreeMap<(String, String), Value>,
}

/// The route step's plan (pure).
pub fn decide(dir: &ScimDirectory, existing: &Existing, defaults: &RouteDefaults) -> Planned {
    let ns = dir.namespace().unwrap_or_default();
    let uid = dir.uid().unwrap_or_default();
    let name = dir.name_any();
    let route = route::resolve(&ns, &name, &dir.spec, defaults);
    let holders = Holders {
        ingress: Holder::of(existing.ingress.as_ref().map(|i| &i.metadata), &uid),
        service: Holder::of(existing.service.as_ref().map(|s| &s.metadata), &uid),
        httproute: Holder::of(existing.httproute.as_ref().map(|r| &r.metadata), &uid),
        grant: Holder::by_labels(existing.grant.as_ref().map(|g| &g.metadata), &ns, &name),
    };
    let same_namespace = ns == defaults.server.namespace;
    let plan = plan(&route, same_namespace, holders);
    let gateways = existing
        .gateways
        .iter()
        .map(|(key, g)| (key.clone(), serde_json::to_value(g).unwrap_or(Value::Null)))
        .collect();
    Planned {
        route,
        holders,
        plan,
        gateways,
    }
}

/// Carries out the route step's plan: removes what it no longer needs, writes the route, and
/// tells how the route stands.
pub async fn apply(
    dir: &ScimDirectory,
    ctx: &Context,
    planned: Planned,
) -> Result<RouteState, Error> {
    let Planned {
        route,
        holders,
        plan,
        gateways,
    } = planned;
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let name = dir.name_any();
    let server = &ctx.settings.defaults.server;
    let ingresses: Api<Ingress> = ctx.api(&ns);
    let services: Api<Service> = ctx.api(&ns);
    let routes = httproutes(ctx, &ns);
    let grants = reference_grants(ctx, &server.namespace);
    let ingress_name = route::ingress_name(&name);
    let service_name = route::external_service_name(&name);
    let grant_name = route::reference_grant_name(&ns, &name);

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
            apply_httproute(
                dir,
                ctx,
                route,
                holders,
                &gateways,
                reference_grant,
                &grant_name,
            )
            .await
        }
    }
}

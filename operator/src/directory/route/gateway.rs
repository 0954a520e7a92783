//! The Gateway API route: an HTTPRoute attached to the user's Gateway and, across namespaces, a
//! ReferenceGrant in the server's namespace; the Gateway API kinds as dynamic objects.

use super::*;

pub(super) fn gateway_resource(kind: &str, version: &str, plural: &str) -> ApiResource {
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

pub(super) fn httproutes(ctx: &Context, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        ctx.client.clone(),
        ns,
        &gateway_resource("HTTPRoute", "v1", "httproutes"),
    )
}

pub(super) fn reference_grants(ctx: &Context, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        ctx.client.clone(),
        ns,
        &gateway_resource("ReferenceGrant", "v1beta1", "referencegrants"),
    )
}

pub(super) fn gateways(ctx: &Context, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        ctx.client.clone(),
        ns,
        &gateway_resource("Gateway", "v1", "gateways"),
    )
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

pub(super) async fn apply_httproute(
    dir: &ScimDirectory,
    ctx: &Context,
    mut route: Route,
    holders: Holders,
    gateways: &std::collections::BTreeMap<(String, String), Value>,
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
        route_created(
            ctx,
            dir,
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

    // The scheme comes from the listeners the route attaches to (the Gateways as read before
    // the writes above, which leave them unchanged).
    let mut https = false;
    for parent in &route.parents {
        let gateway_ns = parent.namespace.clone().unwrap_or_else(|| ns.clone());
        let Some(value) = gateways.get(&(gateway_ns.clone(), parent.name.clone())) else {
            return Ok(RouteState::failed(
                "GatewayNotFound",
                format!(
                    "Gateway {gateway_ns}/{} does not exist: create it, or name another in spec.gateway.parentRefs",
                    parent.name
                ),
            ));
        };
        match route::gateway_serves_https(value, parent.section.as_deref(), &host) {
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

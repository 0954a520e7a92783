//! The Ingress route: an Ingress for the directory's SCIM path and, when the SCIM server runs in
//! another namespace, an `ExternalName` Service the Ingress can name.

use super::*;

pub(super) async fn apply_ingress(
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
        route_created(
            ctx,
            dir,
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

//! The route of a directory: an Ingress for its SCIM path and, when the SCIM server runs in
//! another namespace, an `ExternalName` Service the Ingress can name. The objects themselves
//! are built in [`crate::route`]; here they are observed, planned and written.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use kube_scim_crds::ScimDirectory;
use serde::de::DeserializeOwned;

use super::status::Check;
use super::{Context, Error, MANAGER, is_not_found, owned_by};
use crate::route::{self, Route, RouteDefaults};

/// The route part of the status.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteState {
    pub check: Check,
    pub endpoint: Option<String>,
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
}

/// What to do about the route.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// `spec.ingress.enabled: false`: remove our Ingress and Service; the Tenant URL is the
    /// public host if known, else the server's in-cluster Service.
    Disabled,
    /// No host in spec or defaults: remove our objects and say how to fix it.
    NoHost,
    /// The Ingress name is taken by something else.
    IngressConflict,
    /// The ExternalName Service name is taken by something else.
    ServiceConflict,
    /// Apply the Ingress, routing to the server's Service directly (same namespace) or
    /// through our ExternalName Service.
    Apply { through_external_service: bool },
}

/// The plan, from the spec merged with defaults and who holds the two names.
pub fn plan(
    enabled: bool,
    route: &Route,
    same_namespace_as_server: bool,
    ingress: Holder,
    service: Holder,
) -> Plan {
    if !enabled {
        return Plan::Disabled;
    }
    if route.host.is_none() {
        return Plan::NoHost;
    }
    if ingress == Holder::SomethingElse {
        return Plan::IngressConflict;
    }
    if !same_namespace_as_server && service == Holder::SomethingElse {
        return Plan::ServiceConflict;
    }
    Plan::Apply {
        through_external_service: !same_namespace_as_server,
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

/// The route part of a reconcile.
pub async fn reconcile(dir: &ScimDirectory, ctx: &Context) -> Result<RouteState, Error> {
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let uid = dir.uid().ok_or(Error::Unnamed)?;
    let name = dir.name_any();
    let defaults: &RouteDefaults = &ctx.settings.defaults;
    let server = &defaults.server;
    let route = route::resolve(&ns, &name, &dir.spec.ingress, defaults);
    let ingresses: Api<Ingress> = ctx.api(&ns);
    let services: Api<Service> = ctx.api(&ns);
    let ingress_name = route::ingress_name(&name);
    let service_name = route::external_service_name(&name);

    let existing_ingress = ingresses.get_opt(&ingress_name).await?;
    let existing_service = services.get_opt(&service_name).await?;
    let ingress = Holder::of(existing_ingress.as_ref().map(|i| &i.metadata), &uid);
    let service = Holder::of(existing_service.as_ref().map(|s| &s.metadata), &uid);
    let same_namespace = ns == server.namespace;

    let failed = |reason: &str, message: String| RouteState {
        check: Check::failed(reason, message),
        endpoint: None,
    };
    match plan(
        dir.spec.ingress.enabled,
        &route,
        same_namespace,
        ingress,
        service,
    ) {
        Plan::Disabled => {
            delete_ours(&ingresses, &ingress_name, ingress).await?;
            delete_ours(&services, &service_name, service).await?;
            Ok(RouteState {
                check: Check::ok(
                    "IngressDisabled",
                    format!(
                        "spec.ingress.enabled is false: route {} to Service {}/{} port {} yourself",
                        route.path, server.namespace, server.name, server.port
                    ),
                ),
                endpoint: Some(route::endpoint_without_ingress(
                    &route,
                    &ns,
                    &name,
                    dir.spec.provider,
                    server,
                )),
            })
        }
        Plan::NoHost => {
            delete_ours(&ingresses, &ingress_name, ingress).await?;
            delete_ours(&services, &service_name, service).await?;
            Ok(failed(
                "NoHost",
                "No Ingress host: set spec.ingress.host (or start the operator with --default-ingress-host, Helm value ingressDefaults.host), or set spec.ingress.enabled to false and route to the SCIM server yourself.".into(),
            ))
        }
        Plan::IngressConflict => Ok(failed(
            "IngressConflict",
            format!(
                "Ingress {ns}/{ingress_name} exists but does not belong to this directory. Delete or rename it so the operator can create the directory's route."
            ),
        )),
        Plan::ServiceConflict => Ok(failed(
            "ServiceConflict",
            format!(
                "Service {ns}/{service_name} exists but does not belong to this directory. Delete or rename it so the operator can route to the SCIM server."
            ),
        )),
        Plan::Apply {
            through_external_service,
        } => {
            let owner = dir.controller_owner_ref(&()).ok_or(Error::Unnamed)?;
            let apply = PatchParams::apply(MANAGER).force();
            let backend = if through_external_service {
                let svc =
                    route::build_external_service(&service_name, &ns, &name, owner.clone(), server);
                services
                    .patch(&service_name, &apply, &Patch::Apply(&svc))
                    .await?;
                service_name.clone()
            } else {
                delete_ours(&services, &service_name, service).await?;
                server.name.clone()
            };
            let desired = route::build_ingress(
                &ingress_name,
                &ns,
                &name,
                owner,
                &route,
                &backend,
                server.port,
            );
            ingresses
                .patch(&ingress_name, &apply, &Patch::Apply(&desired))
                .await?;
            let host = route.host.as_deref().unwrap_or_default();
            if ingress == Holder::Nobody {
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
            Ok(RouteState {
                check: Check::ok(
                    "IngressReady",
                    format!(
                        "Ingress {ingress_name} routes {host}{} to Service {backend}",
                        route.path
                    ),
                ),
                endpoint: route::endpoint(&route, dir.spec.provider),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>) -> Route {
        Route {
            host: host.map(str::to_string),
            path: "/scim/v2/ns/d".into(),
            ingress_class: None,
            tls_secret: None,
            annotations: Default::default(),
        }
    }

    #[test]
    fn plans_follow_spec_host_and_who_holds_the_names() {
        use Holder::*;
        let h = route(Some("scim.example.com"));
        assert_eq!(
            plan(false, &h, true, SomethingElse, SomethingElse),
            Plan::Disabled
        );
        assert_eq!(
            plan(true, &route(None), true, ThisDirectory, Nobody),
            Plan::NoHost
        );
        assert_eq!(
            plan(true, &h, true, SomethingElse, Nobody),
            Plan::IngressConflict
        );
        // A foreign Service matters only when the route goes through it.
        assert_eq!(
            plan(true, &h, true, Nobody, SomethingElse),
            Plan::Apply {
                through_external_service: false
            }
        );
        assert_eq!(
            plan(true, &h, false, Nobody, SomethingElse),
            Plan::ServiceConflict
        );
        assert_eq!(
            plan(true, &h, false, ThisDirectory, ThisDirectory),
            Plan::Apply {
                through_external_service: true
            }
        );
    }
}

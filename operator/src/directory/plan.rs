//! What a ScimDirectory reconcile does, decided from what [`super::read`] gathered: pure, no
//! I/O. Each step decides its own part ([`super::deletion`], [`super::token`],
//! [`super::route`], [`super::safety`], [`super::entra`]); this file puts them together.

use jiff::Timestamp;
use kube_scim_crds::ScimDirectory;
use serde_json::Value;

use super::read::Observed;
use super::{deletion, entra, route, safety, token};
use crate::reconcile::Check;
use crate::route::RouteDefaults;

/// How a reconcile treats the directory's lifecycle, and whether its route needs a
/// ReferenceGrant in another namespace (which only the finalizer can remove). Decided before
/// anything is read: it chooses between the finalizer helper and a plain apply.
pub fn lifecycle(dir: &ScimDirectory, defaults: &RouteDefaults) -> (deletion::Plan, bool) {
    let needs_grant = route::needs_reference_grant(dir, defaults);
    (deletion::plan(dir, needs_grant), needs_grant)
}

/// The plan of one reconcile of a live directory, in the order [`super::apply`] carries it out.
#[derive(Debug)]
pub struct Plan {
    pub token: token::Plan,
    pub route: route::Planned,
    /// The merge patch that drops a finalizer the directory no longer needs; applied after the
    /// route part removed an unneeded ReferenceGrant.
    pub finalizer_removal: Option<Value>,
    /// What the `kubescim.io/held-operations` annotation asks for.
    pub held_operations: safety::Plan,
    /// The Entra application rule's verdict, if the directory allows `EntraToken`.
    pub auth: Option<Check>,
    /// When it was decided: the time of new tokens and expiries, and of the conditions.
    pub now: Timestamp,
}

/// The plan for `dir` from `observed`.
pub fn plan(
    dir: &ScimDirectory,
    observed: &Observed,
    defaults: &RouteDefaults,
    needs_grant: bool,
    now: Timestamp,
) -> Plan {
    Plan {
        token: token::plan(dir, &observed.token, now),
        route: route::decide(dir, &observed.route, defaults),
        finalizer_removal: deletion::finalizer_removal(dir, needs_grant),
        held_operations: safety::plan(dir),
        auth: entra::check(dir, observed.directories.iter().map(|d| d.as_ref())),
        now,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kube_scim_crds::{
        DeletionPolicy, HELD_OPERATIONS_ANNOTATION, IngressSpec, RELEASE, ScimDirectorySpec,
    };

    use super::*;
    use crate::directory::deletion::FINALIZER;
    use crate::directory::fixtures;
    use crate::directory::token::GeneratedPlan;

    fn observed() -> Observed {
        Observed {
            token: token::Observed {
                previous: Default::default(),
                secret: None,
                keys: Arc::new(fixtures::keys()),
            },
            route: route::Existing {
                ingress: None,
                service: None,
                httproute: None,
                grant: None,
                gateways: Default::default(),
            },
            directories: Vec::new(),
        }
    }

    #[test]
    fn a_new_directory_plans_its_token_and_route_and_nothing_else() {
        let defaults = fixtures::settings(Some("scim.example.com")).defaults;
        let dir = fixtures::directory(ScimDirectorySpec {
            deletion_policy: DeletionPolicy::Delete,
            ..Default::default()
        });
        let (lifecycle, needs_grant) = lifecycle(&dir, &defaults);
        assert_eq!(lifecycle, deletion::Plan::Apply);
        let plan = plan(&dir, &observed(), &defaults, needs_grant, Timestamp::now());
        assert!(matches!(
            plan.token,
            token::Plan::Generated {
                plan: GeneratedPlan::Create,
                ..
            }
        ));
        assert_eq!(
            plan.route.plan,
            route::Plan::ApplyIngress {
                through_external_service: false
            }
        );
        assert_eq!(plan.finalizer_removal, None);
        assert_eq!(plan.held_operations, safety::Plan::Nothing);
        assert_eq!(plan.auth, None);
    }

    #[test]
    fn the_plan_gathers_every_steps_part() {
        let defaults = fixtures::settings(None).defaults;
        let mut dir = fixtures::directory(ScimDirectorySpec {
            deletion_policy: DeletionPolicy::Delete,
            ingress: IngressSpec {
                host: Some("scim.example.com".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        // Switched from Retain to Delete: the finalizer goes; the release annotation is read.
        dir.metadata.finalizers = Some(vec![FINALIZER.into()]);
        dir.metadata.annotations =
            Some([(HELD_OPERATIONS_ANNOTATION.to_string(), RELEASE.to_string())].into());
        let (lifecycle, needs_grant) = lifecycle(&dir, &defaults);
        assert_eq!(lifecycle, deletion::Plan::WithFinalizer);
        let plan = plan(&dir, &observed(), &defaults, needs_grant, Timestamp::now());
        assert!(plan.finalizer_removal.is_some());
        assert_eq!(plan.held_operations, safety::Plan::Release);
        // An invalid grace period is the token's whole plan: nothing to write.
        dir.spec.token.grace_period = Some("soon".into());
        let plan = super::plan(&dir, &observed(), &defaults, needs_grant, Timestamp::now());
        let token::Plan::Done(state, None) = plan.token else {
            panic!("{:?}", plan.token);
        };
        assert_eq!(state.check.reason, "InvalidGracePeriod");
    }
}

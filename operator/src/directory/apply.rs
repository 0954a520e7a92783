//! Carries out a ScimDirectory reconcile's plan, step by step: the token's Secret, the route's
//! objects (server-side apply, one field manager: [`super::MANAGER`]), a finalizer no longer
//! needed, held operations. Its outcome is what [`super::status`] makes conditions of.

use kube_scim_crds::ScimDirectory;

use super::context::Context;
use super::plan::Plan;
use super::read::Observed;
use super::route::RouteState;
use super::token::TokenState;
use super::{deletion, route, safety, token};
use crate::reconcile::{Check, Error};

/// What the steps report, for the status.
pub struct Outcome {
    pub token: TokenState,
    pub route: RouteState,
    pub auth: Option<Check>,
}

/// Carries out `plan`; the first failing write fails the reconcile.
pub async fn apply(
    dir: &ScimDirectory,
    ctx: &Context,
    observed: Observed,
    plan: Plan,
) -> Result<Outcome, Error> {
    let token = token::apply(dir, ctx, observed.token, plan.token, plan.now).await?;
    let route = route::apply(dir, ctx, plan.route).await?;
    // After the route part: it removes a ReferenceGrant the finalizer no longer has to.
    deletion::remove_finalizer(dir, ctx, plan.finalizer_removal).await?;
    safety::apply(dir, ctx, plan.held_operations).await?;
    Ok(Outcome {
        token,
        route,
        auth: plan.auth,
    })
}

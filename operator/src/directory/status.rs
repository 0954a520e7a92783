//! The directory's status: conditions from the outcome of each concern, and the one status
//! write per reconcile (only when something changed).

use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use kube_scim_crds::{
    AuthMethod, CONDITION_DELETIONS_HELD, CONDITION_READY, CONDITION_ROUTE_READY,
    CONDITION_SUSPENDED, CONDITION_TOKEN_READY, ScimDirectory, ScimDirectoryStatus,
};

use super::apply::Outcome;
use super::context::{Context, MANAGER};
use super::counts::{self, Counts};
use super::route::RouteState;
use super::safety;
use super::token::TokenState;
use crate::reconcile::{self, Check, Error, condition};
use crate::token as tokens;

/// `Ready`: the directory accepts provisioning requests: the token is in place and the route is,
/// or waits only for its controller (`RouteReady` then says `Unknown` and why); or the route is
/// and the current token is refused (`TokenTooWeak`) while a previous token is still in its grace
/// period (`previous_until`, its last expiry): the directory then still accepts that token.
pub fn ready(token: &Check, route: &Check, previous_until: Option<Timestamp>) -> Check {
    let route_in_place = route.ok || route.pending;
    match (token.ok, route_in_place, previous_until) {
        (true, true, _) if route.pending => Check::ok(
            "Ready",
            format!(
                "The token and the route are in place; the directory accepts provisioning requests. The route waits for its controller: {}",
                route.message
            ),
        ),
        (true, true, _) => Check::ok(
            "Ready",
            "The token and the route are in place; the directory accepts provisioning requests",
        ),
        (false, true, Some(until)) => Check::ok(
            "PreviousTokenValid",
            format!(
                "The directory accepts only the previous token, until {}: the current one is refused ({}; see condition TokenReady)",
                tokens::format_time(until),
                token.reason
            ),
        ),
        (false, true, None) => Check::failed("TokenNotReady", token.message.clone()),
        (true, false, _) => Check::failed("RouteNotReady", route.message.clone()),
        (false, false, _) => Check::failed(
            "TokenNotReady",
            format!("{} Also: {}", token.message, route.message),
        ),
    }
}

/// The OAuth 2.0 token endpoint of the directory whose Tenant URL is `endpoint`: the SCIM server
/// serves it under the directory's path, so the directory's route carries it too. The Tenant
/// URL's query (Entra's `?aadOptscim062020` flag) is for the SCIM requests, not the token endpoint.
pub fn oauth_token_endpoint(endpoint: &str) -> String {
    let path = endpoint.split_once('?').map_or(endpoint, |(path, _)| path);
    format!("{}/oauth2/token", path.trim_end_matches('/'))
}

/// The status the directory should have now. Without `counts` (the caches to count from are
/// not filled yet) the count fields stay as they are.
pub fn desired(
    dir: &ScimDirectory,
    token: &TokenState,
    route: &RouteState,
    auth: Option<&Check>,
    counts: Option<&Counts>,
    now: Timestamp,
) -> ScimDirectoryStatus {
    let previous = dir.status.clone().unwrap_or_default();
    let previous_until = if token.check.ok {
        None
    } else {
        tokens::last_expiry(&token.verifiers)
    };
    let mut ready = ready(&token.check, &route.check, previous_until);
    // A refused authentication setting (`super::entra`) refuses the whole directory: the SCIM
    // server serves no directory that is not Ready.
    if let Some(refused) = auth.filter(|c| !c.ok) {
        ready = refused.clone();
    }
    let client_credentials = dir.spec.auth.allows(AuthMethod::OAuthClientCredentials);
    let federation = dir.spec.auth.allows(AuthMethod::WorkloadIdentityFederation);
    let oauth = client_credentials || federation;
    let oauth_token_endpoint = route
        .endpoint
        .as_deref()
        .filter(|_| oauth)
        .map(oauth_token_endpoint);
    let oauth_client_id = dir.metadata.uid.clone().filter(|_| oauth);
    if ready.ok
        && let (Some(endpoint), Some(client_id)) = (&oauth_token_endpoint, &oauth_client_id)
    {
        let mut message = ready.message.trim_end_matches('.').to_string();
        if client_credentials {
            message = format!(
                "{message}. OAuth client credentials: token endpoint {endpoint}, client id {client_id}, client secret the token in Secret {}",
                token.secret_name.as_deref().unwrap_or("(none yet)")
            );
        }
        if federation {
            message = format!(
                "{message}. Workload identity federation: token endpoint {endpoint}, client id {client_id}, no client secret"
            );
        }
        ready.message = message;
    }
    let generation = dir.metadata.generation;
    let (held_deletions, held_deactivations) = match counts {
        Some(c) => (c.held_deletions, c.held_deactivations),
        None => (
            previous.held_deletions.unwrap_or(0),
            previous.held_deactivations.unwrap_or(0),
        ),
    };
    let suspended = safety::suspended(dir);
    let held = safety::held(dir, held_deletions, held_deactivations);
    let conditions = [
        (CONDITION_READY, &ready),
        (CONDITION_TOKEN_READY, &token.check),
        (CONDITION_ROUTE_READY, &route.check),
        (CONDITION_SUSPENDED, &suspended),
        (CONDITION_DELETIONS_HELD, &held),
    ]
    .into_iter()
    .map(|(type_, check)| condition(type_, check, generation, &previous.conditions, now))
    .collect();
    let current = token.verifiers.first().filter(|v| v.expires_at.is_none());
    let mut status = ScimDirectoryStatus {
        observed_generation: generation,
        conditions,
        endpoint: route.endpoint.clone(),
        token_secret_name: token.secret_name.clone(),
        token_created: token.created.clone(),
        token_fingerprint: current.and_then(|v| v.fingerprint.clone()),
        token_verifiers: token.verifiers.clone(),
        auth_methods: dir.spec.auth.methods.clone(),
        entra_tenant_id: dir
            .spec
            .auth
            .entra_token
            .as_ref()
            .filter(|_| dir.spec.auth.allows(AuthMethod::EntraToken))
            .map(|e| e.tenant_id.clone()),
        oauth_token_endpoint,
        oauth_client_id,
        users: previous.users,
        active_users: previous.active_users,
        inactive_users: previous.inactive_users,
        groups: previous.groups,
        last_provisioning_time: previous.last_provisioning_time,
        held_deletions: previous.held_deletions,
        held_deactivations: previous.held_deactivations,
    };
    if let Some(counts) = counts {
        counts::set_counts(&mut status, counts);
    }
    status
}

/// The checks that failed with a message not reported before: one Warning event each.
pub fn new_problems<'a>(dir: &ScimDirectory, checks: Vec<(&str, &'a Check)>) -> Vec<&'a Check> {
    let previous = dir
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    checks
        .into_iter()
        .filter(|(type_, check)| {
            !check.ok
                && !check.pending
                && !previous.iter().any(|c| {
                    c.type_ == *type_ && c.reason == check.reason && c.message == check.message
                })
        })
        .map(|(_, check)| check)
        .collect()
}

/// When to look again: at the resync interval, or just after the next verifier expires.
pub fn requeue_after(status: &ScimDirectoryStatus, resync: Duration, now: Timestamp) -> Duration {
    let mut wait = resync;
    if let Some(expiry) = tokens::next_expiry(&status.token_verifiers) {
        let until = Duration::try_from(expiry.duration_since(now)).unwrap_or(Duration::ZERO);
        wait = wait.min(until + Duration::from_millis(500));
    }
    wait
}

/// Reports new problems, writes the status if it changed, and says when to look again. The
/// counts are taken here, under the directory's status lock, which the counts refresher takes
/// for its own write of them.
pub async fn write(
    dir: &ScimDirectory,
    ctx: &Context,
    outcome: &Outcome,
    now: Timestamp,
) -> Result<Action, Error> {
    let Outcome { token, route, auth } = outcome;
    let auth = auth.as_ref();
    let _status = ctx.status_lock(&ObjectRef::from_obj(dir)).await;
    let counts = counts::of(dir, ctx);
    let counts = counts.as_ref();
    let new_status = desired(dir, token, route, auth, counts, now);
    let mut checks = vec![
        (CONDITION_TOKEN_READY, &token.check),
        (CONDITION_ROUTE_READY, &route.check),
    ];
    // A refused authentication setting shows as Ready's reason, and gets its Warning once.
    checks.extend(auth.map(|c| (CONDITION_READY, c)));
    if let Some(note) = safety::newly_held(dir, &new_status) {
        ctx.publish(
            dir,
            EventType::Warning,
            "DeletionsHeld",
            "DeletionGuard",
            note,
        )
        .await;
    }
    for check in new_problems(dir, checks) {
        ctx.publish(
            dir,
            EventType::Warning,
            &check.reason,
            "Reconcile",
            check.message.clone(),
        )
        .await;
    }
    if dir.status.as_ref() != Some(&new_status) {
        let ns = dir.namespace().ok_or(Error::Unnamed)?;
        let api: Api<ScimDirectory> = ctx.api(&ns);
        reconcile::status::apply(&api, &dir.name_any(), MANAGER, &new_status).await?;
    }
    let mut wait = requeue_after(&new_status, ctx.settings.resync, now);
    if !route.check.ok || auth.is_some_and(|c| !c.ok) {
        // Another controller's progress, or a Gateway the user creates next, may not be watched
        // (e.g. HTTPRoutes when the Gateway API was installed after the operator started): look
        // again soon.
        wait = wait.min(PENDING_RECHECK);
    }
    Ok(Action::requeue(wait))
}

/// How soon a route that is not ready is looked at again.
pub const PENDING_RECHECK: Duration = Duration::from_secs(10);

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;

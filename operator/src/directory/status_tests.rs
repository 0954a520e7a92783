//! The directory's conditions and status: transition times, the requeue time, Warning events
//! once per problem, what OAuth shows.

use super::*;

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn transition_time_only_moves_when_the_status_changes() {
    let t0 = at("2026-01-01T00:00:00Z");
    let t1 = at("2026-01-01T01:00:00Z");
    let first = condition(
        "TokenReady",
        &Check::ok("TokenCreated", "ok"),
        Some(1),
        &[],
        t0,
    );
    assert_eq!(first.status, "True");
    assert_eq!(first.observed_generation, Some(1));
    assert_eq!(first.last_transition_time.0, t0);
    let same = condition(
        "TokenReady",
        &Check::ok("TokenPresent", "still ok"),
        Some(2),
        std::slice::from_ref(&first),
        t1,
    );
    assert_eq!(
        same.last_transition_time.0, t0,
        "True -> True keeps the time"
    );
    assert_eq!(same.reason, "TokenPresent");
    let flipped = condition(
        "TokenReady",
        &Check::failed("SecretNotFound", "gone"),
        Some(2),
        &[same],
        t1,
    );
    assert_eq!(flipped.status, "False");
    assert_eq!(flipped.last_transition_time.0, t1);
}

#[test]
fn the_next_look_is_just_after_the_next_verifier_expires() {
    let now = at("2026-01-01T00:00:00Z");
    let resync = Duration::from_secs(600);
    let mut status = ScimDirectoryStatus::default();
    assert_eq!(requeue_after(&status, resync, now), resync);
    status.token_verifiers = vec![tokens::verifier_from_hash(
        format!("hmac-sha256:k:{}", "0".repeat(64)),
        Some(at("2026-01-01T00:01:00Z")),
    )];
    assert_eq!(
        requeue_after(&status, resync, now),
        Duration::from_millis(60_500)
    );
}

#[test]
fn a_problem_is_reported_once_per_message() {
    let bad = Check::failed("NoHost", "set a host");
    let mut dir = ScimDirectory::new("d", Default::default());
    let checks = vec![("RouteReady", &bad), ("TokenReady", &bad)];
    assert_eq!(new_problems(&dir, checks.clone()).len(), 2);
    dir.status = Some(ScimDirectoryStatus {
        conditions: vec![condition(
            "RouteReady",
            &bad,
            None,
            &[],
            at("2026-01-01T00:00:00Z"),
        )],
        ..Default::default()
    });
    assert_eq!(new_problems(&dir, checks).len(), 1);
}

#[test]
fn oauth_client_credentials_show_their_endpoint_and_client_id_in_status_and_ready() {
    let now = at("2026-01-01T00:00:00Z");
    let mut spec = kube_scim_crds::ScimDirectorySpec::default();
    spec.auth.methods = vec![AuthMethod::OAuthClientCredentials];
    let mut dir = ScimDirectory::new("d", spec);
    dir.metadata.uid = Some("0b5c2d3e-uid".into());
    let token = TokenState {
        check: Check::ok("TokenCreated", "ok"),
        secret_name: Some("d-scim-token".into()),
        created: None,
        verifiers: Vec::new(),
    };
    let route = RouteState {
        check: Check::ok("IngressReady", "ok"),
        endpoint: Some("https://scim.example.com/scim/v2/ns/d?aadOptscim062020".into()),
    };
    let status = desired(&dir, &token, &route, None, None, now);
    let endpoint = "https://scim.example.com/scim/v2/ns/d/oauth2/token";
    assert_eq!(status.oauth_token_endpoint.as_deref(), Some(endpoint));
    assert_eq!(status.oauth_client_id.as_deref(), Some("0b5c2d3e-uid"));
    let ready = &status.conditions[0];
    assert!(
        ready.message.contains(endpoint)
            && ready.message.contains("client id 0b5c2d3e-uid")
            && ready.message.contains("Secret d-scim-token"),
        "{}",
        ready.message
    );
    // A refused Entra setting refuses the directory, whatever token and route say.
    let unbound = Check::failed("EntraAppNotBound", "set allowedAppIds");
    let status = desired(&dir, &token, &route, Some(&unbound), None, now);
    assert_eq!(status.conditions[0].status, "False");
    assert_eq!(status.conditions[0].reason, "EntraAppNotBound");
    // Without the method, neither is shown.
    dir.spec.auth.methods = vec![AuthMethod::BearerToken];
    let status = desired(&dir, &token, &route, None, None, now);
    assert_eq!(status.oauth_token_endpoint, None);
    assert_eq!(status.oauth_client_id, None);
    assert!(!status.conditions[0].message.contains("OAuth"));
    // Federation alone: the same endpoint and client id, and no client secret to hand out.
    dir.spec.auth.methods = vec![AuthMethod::WorkloadIdentityFederation];
    let status = desired(&dir, &token, &route, None, None, now);
    assert_eq!(status.oauth_token_endpoint.as_deref(), Some(endpoint));
    assert_eq!(status.oauth_client_id.as_deref(), Some("0b5c2d3e-uid"));
    let ready = &status.conditions[0].message;
    assert!(
        ready.contains("Workload identity federation: token endpoint")
            && ready.contains("no client secret")
            && !ready.contains("Secret d-scim-token"),
        "{ready}"
    );
}

#[test]
fn ready_needs_token_and_route() {
    let ok = Check::ok("X", "fine");
    let bad = Check::failed("NoHost", "set spec.ingress.host");
    assert!(ready(&ok, &ok, None).ok);
    let r = ready(&ok, &bad, None);
    assert!(!r.ok);
    assert_eq!(r.reason, "RouteNotReady");
    assert_eq!(r.message, "set spec.ingress.host");
    assert_eq!(ready(&bad, &ok, None).reason, "TokenNotReady");
}

#[test]
fn a_refused_token_leaves_the_directory_ready_only_while_the_previous_one_lasts() {
    let weak = Check::failed("TokenTooWeak", "too weak");
    let route = Check::ok("IngressReady", "ok");
    let until = Some(at("2026-01-02T00:00:00Z"));
    let r = ready(&weak, &route, until);
    assert!(r.ok);
    assert_eq!(r.reason, "PreviousTokenValid");
    assert!(
        r.message.contains("2026-01-02T00:00:00Z") && r.message.contains("TokenTooWeak"),
        "{}",
        r.message
    );
    assert!(!ready(&weak, &Check::failed("NoHost", "x"), until).ok);
    assert!(!ready(&weak, &route, None).ok);
}

//! Auth method `EntraToken`: the Entra flow client presents tokens that a JWT test issuer on
//! 127.0.0.1 mints (as Entra does when the enterprise application's Secret Token is left empty);
//! the SCIM server verifies them against the issuer's published keys, on the shared plane. A
//! token opens only the directory bound to its application (`allowedAppIds`, the token's
//! `appid`); a directory bound to none, or to an application another directory has, is refused
//! (issue 27, defect 4).

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::PostParams;
use kube_scim_crds::{AuthMethod, AuthSpec, EntraTokenSpec, ScimDirectory, ScimDirectorySpec};
use kube_scim_tests::entra::{Dialect, EntraClient, EntraUser, assert_invalid_token};
use kube_scim_tests::jwt_issuer::{JwtIssuer, PROVISIONING_APP_ID, issuer_of, valid_claims};
use kube_scim_tests::stack::{Stack, StackOptions, ready_directory};
use kube_scim_tests::{ControlPlane, eventually};
use serde_json::{Value, json};

const TENANT: &str = "3f1e4b7a-5c2d-4e8f-9a0b-1c2d3e4f5a6b";
const OTHER_TENANT: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
/// The enterprise application of directory `jwt-only` (`both` has [`PROVISIONING_APP_ID`]).
const OTHER_APP_ID: &str = "5d2c1b0a-9e8f-4d7c-b6a5-4f3e2d1c0b9a";

fn spec(methods: Vec<AuthMethod>, allowed_app_ids: Vec<String>) -> ScimDirectorySpec {
    ScimDirectorySpec {
        auth: AuthSpec {
            methods,
            entra_token: Some(EntraTokenSpec {
                tenant_id: TENANT.into(),
                allowed_app_ids,
            }),
            oauth_client_credentials: None,
            workload_identity_federation: None,
        },
        ..Default::default()
    }
}

fn with(claims: &Value, changes: Value) -> Value {
    let mut c = claims.clone();
    for (k, v) in changes.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[tokio::test]
async fn entra_issued_tokens_open_only_their_tenants_directory_and_survive_a_key_rollover() {
    let issuer = JwtIssuer::start().await.unwrap();
    let plane = ControlPlane::shared();
    let ns = plane.namespace("entra-jwt").await.unwrap();
    let kube = plane.client().await.unwrap();
    let mut options = StackOptions::new(&ns);
    options.server_args = vec![
        format!("--entra-metadata-url={}", issuer.metadata_url_template()),
        "--entra-key-refresh-interval=1s".into(),
    ];
    let mut stack = Stack::start(plane, options).await.unwrap();
    let dirs: Api<ScimDirectory> = Api::namespaced(kube.clone(), &ns);
    for (name, spec) in [
        (
            "both",
            spec(
                vec![AuthMethod::BearerToken, AuthMethod::EntraToken],
                vec![PROVISIONING_APP_ID.into()],
            ),
        ),
        (
            "jwt-only",
            spec(vec![AuthMethod::EntraToken], vec![OTHER_APP_ID.into()]),
        ),
        ("bearer-only", ScimDirectorySpec::default()),
    ] {
        dirs.create(&PostParams::default(), &ScimDirectory::new(name, spec))
            .await
            .unwrap();
    }
    let mut bearer = std::collections::HashMap::new();
    for name in ["both", "jwt-only", "bearer-only"] {
        let (_, token) = ready_directory(&kube, &ns, name, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));
        bearer.insert(name, token);
    }
    let status = dirs.get("jwt-only").await.unwrap().status.unwrap();
    assert_eq!(status.auth_methods, vec![AuthMethod::EntraToken]);
    assert_eq!(status.entra_tenant_id.as_deref(), Some(TENANT));
    let status = dirs.get("bearer-only").await.unwrap().status.unwrap();
    assert_eq!(status.auth_methods, vec![AuthMethod::BearerToken]);
    assert_eq!(status.entra_tenant_id, None);

    // Entra's provisioning cycle with the token of each directory's application, in both
    // directories that accept Entra tokens.
    let claims = valid_claims(TENANT);
    let jwt = issuer.mint(0, &claims);
    let other_app_jwt = issuer.mint(0, &with(&claims, json!({"appid": OTHER_APP_ID})));
    for (name, token) in [("both", &jwt), ("jwt-only", &other_app_jwt)] {
        let client = EntraClient::new(&stack.base_url(&ns, name), token, Dialect::Compliant);
        let answer = client.test_connection().await.unwrap();
        assert_eq!(
            answer.status,
            200,
            "{name}: {}\n{}",
            answer.body,
            stack.logs()
        );
        let user = EntraUser {
            object_id: "0000000a-0000-4000-8000-00000000000a".into(),
            upn: format!("ada@{name}.example"),
            given_name: "Ada".into(),
            surname: "Lovelace".into(),
            display_name: "Ada Lovelace".into(),
            ..EntraUser::default()
        };
        let id = client.provision_user(&user, None).await.unwrap();
        assert!(!id.is_empty(), "{name}");
    }
    // The bearer token: unchanged where it is a method, refused where it is not; a directory
    // without EntraToken refuses Entra's token.
    let answer = EntraClient::new(
        &stack.base_url(&ns, "both"),
        &bearer["both"],
        Dialect::Compliant,
    )
    .test_connection()
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_invalid_token(
        &stack.base_url(&ns, "jwt-only"),
        &bearer["jwt-only"],
        "bearer on jwt-only",
    )
    .await;
    assert_invalid_token(
        &stack.base_url(&ns, "bearer-only"),
        &jwt,
        "jwt on bearer-only",
    )
    .await;

    // Every forgery and mismatch, against the directory that accepts both methods.
    let base = stack.base_url(&ns, "both");
    let now = claims["iat"].as_i64().unwrap() + 60;
    let bad_signature = issuer.mint_with_kid(2, &issuer.keys()[0].kid, &claims);
    let cases = [
        ("bad signature", bad_signature),
        ("alg none", issuer.unsigned(&claims)),
        (
            "HS256 with the public key as secret",
            issuer.hs256_with_public_key(&claims),
        ),
        (
            "wrong issuer",
            issuer.mint(0, &with(&claims, json!({"iss": "https://evil.example/"}))),
        ),
        (
            "wrong audience",
            issuer.mint(0, &with(&claims, json!({"aud": "api://some-other-app"}))),
        ),
        (
            "expired",
            issuer.mint(
                0,
                &with(&claims, json!({"exp": now - 600, "nbf": now - 4000})),
            ),
        ),
        (
            "not yet valid",
            issuer.mint(0, &with(&claims, json!({"nbf": now + 600}))),
        ),
        ("unknown kid", issuer.mint(1, &claims)),
        (
            "another tenant",
            issuer.mint(
                0,
                &with(
                    &claims,
                    json!({"iss": issuer_of(OTHER_TENANT), "tid": OTHER_TENANT}),
                ),
            ),
        ),
        (
            "this tenant's issuer, another tenant's tid",
            issuer.mint(0, &with(&claims, json!({"tid": OTHER_TENANT}))),
        ),
        ("not a JWT", "a.b.c".to_string()),
    ];
    for (case, token) in &cases {
        assert_invalid_token(&base, token, case).await;
    }
    // allowedAppIds: a token Entra issued for another application of the same tenant (the same
    // audience), e.g. one that application's SCIM endpoint received, is refused; so is one
    // naming no application.
    assert_invalid_token(
        &stack.base_url(&ns, "jwt-only"),
        &jwt,
        "the other directory's application",
    )
    .await;
    assert_invalid_token(&base, &other_app_jwt, "the other directory's application").await;
    assert_invalid_token(
        &stack.base_url(&ns, "jwt-only"),
        &issuer.mint(
            0,
            &with(
                &claims,
                json!({"appid": "00000000-0000-0000-0000-00000000beef"}),
            ),
        ),
        "another application",
    )
    .await;
    let mut no_app = claims.clone();
    no_app.as_object_mut().unwrap().remove("appid");
    assert_invalid_token(&base, &issuer.mint(0, &no_app), "no application").await;

    // A directory bound to no application is refused by the operator (and so by the server,
    // which serves no directory that is not Ready), with a Warning; so is one bound to an
    // application an older directory of the tenant already has.
    for (name, apps) in [
        ("unbound", vec![]),
        ("copycat", vec![PROVISIONING_APP_ID.to_uppercase()]),
    ] {
        dirs.create(
            &PostParams::default(),
            &ScimDirectory::new(name, spec(vec![AuthMethod::EntraToken], apps)),
        )
        .await
        .unwrap();
    }
    for (name, reason) in [
        ("unbound", "EntraAppNotBound"),
        ("copycat", "EntraAppConflict"),
    ] {
        let message = eventually(
            &format!("{name}: Ready=False {reason}"),
            Duration::from_secs(30),
            || async {
                let dir = dirs.get(name).await.ok()?;
                let ready = dir
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Ready")?;
                (ready.status == "False" && ready.reason == reason).then_some(ready.message)
            },
        )
        .await;
        assert!(message.contains("allowedAppIds"), "{name}: {message}");
        let events: Api<Event> = Api::namespaced(kube.clone(), &ns);
        eventually(
            &format!("{name}: a Warning {reason}"),
            Duration::from_secs(30),
            || async {
                events
                    .list(&Default::default())
                    .await
                    .ok()?
                    .items
                    .iter()
                    .any(|e| {
                        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                            && e.reason.as_deref() == Some(reason)
                            && e.type_.as_deref() == Some("Warning")
                    })
                    .then_some(())
            },
        )
        .await;
        let answer = EntraClient::new(&stack.base_url(&ns, name), &jwt, Dialect::Compliant)
            .test_connection()
            .await
            .unwrap();
        assert!(
            !(200..300).contains(&answer.status),
            "{name} opened: {} {}",
            answer.status,
            answer.body
        );
    }
    // The older directory keeps its application.
    let answer = EntraClient::new(&base, &jwt, Dialect::Compliant)
        .test_connection()
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, stack.logs());

    // The reasons are in the server's log; the tokens are not.
    let log = stack.server.log_tail(400);
    for reason in [
        "bad signature",
        "algorithm",
        "HS256",
        "wrong issuer",
        "wrong audience",
        "expired",
        "not yet valid",
        "unknown signing key",
        "issued for tenant",
        "allowedAppIds",
    ] {
        assert!(log.contains(reason), "no {reason:?} in the log:\n{log}");
    }
    for (case, token) in &cases {
        assert!(
            !log.contains(token.as_str()),
            "{case}: the token is in the log"
        );
    }
    assert!(!log.contains(&jwt));

    // Key rollover: the issuer replaces key 0 with key 1; a token signed with key 1 verifies
    // once the server refetches (at most one fetch per --entra-key-refresh-interval), without a
    // restart, and tokens of the retired key stop working.
    issuer.publish(&[1]);
    let fetches = issuer.key_fetches();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rolled = issuer.mint(1, &valid_claims(TENANT));
    let answer = EntraClient::new(&base, &rolled, Dialect::Compliant)
        .test_connection()
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, stack.logs());
    assert!(issuer.key_fetches() > fetches);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_invalid_token(&base, &jwt, "a token of the retired key").await;
    assert!(stack.server.is_running());
}

//! Auth method `WorkloadIdentityFederation`: Entra's federation flow (Microsoft's gallery
//! validation, `Federated_Identity_Test`) presents an Entra v2.0 access token of the admin's
//! application as an RFC 7523 client assertion at the directory's token endpoint, and
//! provisions with the access token it gets back. A JWT test issuer on 127.0.0.1 stands in for
//! Entra (keys, metadata, signing); the operator and the SCIM server run as processes on the
//! shared plane.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use kube_scim_crds::{
    AuthMethod, AuthSpec, ScimDirectory, ScimDirectorySpec, WorkloadIdentityFederationSpec,
};
use kube_scim_tests::entra::{
    Answer, ClientAuth, Dialect, EntraClient, EntraUser, assert_invalid_token,
    client_assertion_token, client_credentials_token,
};
use kube_scim_tests::jwt_issuer::{JwtIssuer, app_token_claims, issuer_of};
use kube_scim_tests::procs::ManagedProcess;
use kube_scim_tests::stack::{Stack, StackOptions, ready_directory};
use kube_scim_tests::{ControlPlane, free_port, workspace_binary};
use serde_json::{Value, json};

const TENANT: &str = "3f1e4b7a-5c2d-4e8f-9a0b-1c2d3e4f5a6b";
const OTHER_TENANT: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
/// Application (client) id of the admin's app registration: the assertion's `aud`.
const APP: &str = "c7d1f0a2-3b4e-4f5a-8b6c-7d8e9f0a1b2c";
/// Object ids of two service principals of the tenant: the assertions' `sub`.
const SP_ALPHA: &str = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9";
const SP_BETA: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

fn spec(subject: &str, audience: Option<&str>) -> ScimDirectorySpec {
    ScimDirectorySpec {
        auth: AuthSpec {
            methods: vec![AuthMethod::WorkloadIdentityFederation],
            entra_token: None,
            oauth_client_credentials: None,
            workload_identity_federation: Some(WorkloadIdentityFederationSpec {
                tenant_id: TENANT.into(),
                subject: subject.into(),
                audience: audience.map(str::to_string),
                access_token_lifetime: None,
            }),
        },
        ..Default::default()
    }
}

fn with(claims: &Value, changes: Value) -> Value {
    let mut c = claims.clone();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn exchange(endpoint: &str, client_id: Option<&str>, assertion: &str) -> Answer {
    client_assertion_token(endpoint, client_id, assertion, "client_credentials")
        .await
        .unwrap()
}

/// The access token of a successful exchange, after checking the answer's shape.
fn access_token(answer: &Answer, case: &str) -> String {
    assert_eq!(answer.status, 200, "{case}: {}", answer.body);
    assert_eq!(answer.body["token_type"], "Bearer", "{case}");
    assert_eq!(answer.body["expires_in"], 3600, "{case}");
    answer.body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: no access_token in {}", answer.body))
        .to_string()
}

fn refused(answer: &Answer, status: u16, error: &str, case: &str) {
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (status, Some(error)),
        "{case}: {}",
        answer.body
    );
}

/// Waits (bounded) until the server's watch has the Ready directory: asks with a grant the
/// endpoint refuses before it looks at the assertion (so nothing is used up).
async fn wait_until_served(endpoint: &str, stack: &Stack) {
    for _ in 0..100 {
        let answer = client_assertion_token(endpoint, None, "h.p.s", "password")
            .await
            .unwrap();
        if answer.body["error"] == "unsupported_grant_type" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{endpoint}: the server did not serve the directory within 10 s\n{}",
        stack.logs()
    );
}

#[tokio::test]
async fn entra_signed_assertions_are_exchanged_once_for_their_directorys_access_token() {
    let issuer = JwtIssuer::start().await.unwrap();
    let plane = ControlPlane::shared();
    let ns = plane.namespace("wif").await.unwrap();
    let kube = plane.client().await.unwrap();
    let mut options = StackOptions::new(&ns);
    options.server_args = vec![
        format!("--entra-metadata-url={}", issuer.metadata_url_template()),
        "--entra-key-refresh-interval=1s".into(),
        // This test sends dozens of deliberately refused assertions from one address; the
        // failed-authentication throttle has its own test (scim_server.rs).
        "--auth-failure-burst-per-address=0".into(),
        "--auth-failure-burst-per-directory=0".into(),
    ];
    let mut stack = Stack::start(plane, options).await.unwrap();
    let dirs: Api<ScimDirectory> = Api::namespaced(kube.clone(), &ns);

    // The apiserver refuses the method without its settings, saying which.
    let mut incomplete = spec(SP_ALPHA, None);
    incomplete.auth.workload_identity_federation = None;
    let err = dirs
        .create(
            &PostParams::default(),
            &ScimDirectory::new("incomplete", incomplete),
        )
        .await
        .expect_err("WorkloadIdentityFederation without settings");
    assert!(
        err.to_string()
            .contains("set auth.workloadIdentityFederation"),
        "{err}"
    );

    // alpha: Entra's setup (audience = the application id). beta: another service principal,
    // and the RFC 7523 default audience (its token endpoint).
    for (name, spec) in [
        ("alpha", spec(SP_ALPHA, Some(APP))),
        ("beta", spec(SP_BETA, None)),
    ] {
        dirs.create(&PostParams::default(), &ScimDirectory::new(name, spec))
            .await
            .unwrap();
    }
    let mut bearer = std::collections::HashMap::new();
    let mut endpoint = std::collections::HashMap::new();
    let mut client_id = std::collections::HashMap::new();
    for name in ["alpha", "beta"] {
        let (_, token) = ready_directory(&kube, &ns, name, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));
        bearer.insert(name, token);
        // What the admin gives Entra: the token endpoint and client id from the status.
        let dir = dirs.get(name).await.unwrap();
        let status = dir.status.clone().unwrap();
        let tenant_path = status.endpoint.clone().unwrap();
        let tenant_path = tenant_path.split('?').next().unwrap().to_string();
        let published = status.oauth_token_endpoint.clone().unwrap();
        assert_eq!(published, format!("{tenant_path}/oauth2/token"));
        assert_eq!(status.oauth_client_id, dir.uid());
        assert_eq!(
            status.auth_methods,
            vec![AuthMethod::WorkloadIdentityFederation]
        );
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert!(
            ready.message.contains("Workload identity federation")
                && ready.message.contains(&published),
            "{}",
            ready.message
        );
        let served = format!("{}/oauth2/token", stack.base_url(&ns, name));
        wait_until_served(&served, &stack).await;
        endpoint.insert(name, served);
        client_id.insert(name, dir.uid().unwrap());
    }
    let beta_audience = dirs
        .get("beta")
        .await
        .unwrap()
        .status
        .unwrap()
        .oauth_token_endpoint
        .unwrap();
    let alpha_claims = || app_token_claims(TENANT, APP, SP_ALPHA);
    let beta_claims = || {
        with(
            &app_token_claims(TENANT, APP, SP_BETA),
            json!({"aud": beta_audience}),
        )
    };

    // Happy path, as Microsoft's validation sends it: an access token back, which runs Entra's
    // provisioning cycle.
    let assertion = issuer.mint(0, &alpha_claims());
    let answer = exchange(&endpoint["alpha"], Some(&client_id["alpha"]), &assertion).await;
    let alpha_token = access_token(&answer, "alpha");
    let client = EntraClient::new(
        &stack.base_url(&ns, "alpha"),
        &alpha_token,
        Dialect::Compliant,
    );
    let answer = client.test_connection().await.unwrap();
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, stack.logs());
    let user = EntraUser {
        object_id: "0000000a-0000-4000-8000-0000000000f1".into(),
        upn: "ada@alpha.example".into(),
        given_name: "Ada".into(),
        surname: "Lovelace".into(),
        display_name: "Ada Lovelace".into(),
        ..EntraUser::default()
    };
    assert!(!client.provision_user(&user, None).await.unwrap().is_empty());
    // Replayed: the same assertion a second time.
    refused(
        &exchange(&endpoint["alpha"], Some(&client_id["alpha"]), &assertion).await,
        401,
        "invalid_client",
        "replayed assertion",
    );
    // beta, without client_id (optional in RFC 7523) and with a jti instead of Entra's uti.
    let beta_assertion = issuer.mint(
        0,
        &with(&beta_claims(), json!({"jti": "beta-jti-1", "uti": null})),
    );
    let beta_token = access_token(
        &exchange(&endpoint["beta"], None, &beta_assertion).await,
        "beta",
    );
    refused(
        &exchange(&endpoint["beta"], None, &beta_assertion).await,
        401,
        "invalid_client",
        "replayed jti",
    );

    // Directory A's assertion at directory B (another subject), and B's at A (another subject
    // and audience), also under the other's client id; neither uses the assertion up.
    let for_alpha = issuer.mint(0, &alpha_claims());
    refused(
        &exchange(&endpoint["beta"], Some(&client_id["beta"]), &for_alpha).await,
        401,
        "invalid_client",
        "alpha's assertion at beta",
    );
    refused(
        &exchange(&endpoint["beta"], None, &for_alpha).await,
        401,
        "invalid_client",
        "alpha's assertion at beta, no client id",
    );
    refused(
        &exchange(&endpoint["alpha"], Some(&client_id["beta"]), &for_alpha).await,
        401,
        "invalid_client",
        "beta's client id at alpha",
    );
    let for_beta = issuer.mint(0, &beta_claims());
    refused(
        &exchange(&endpoint["alpha"], None, &for_beta).await,
        401,
        "invalid_client",
        "beta's assertion at alpha",
    );
    access_token(
        &exchange(&endpoint["alpha"], None, &for_alpha).await,
        "alpha's assertion at alpha after the refusals",
    );
    // Access tokens open only their own directory.
    assert_invalid_token(
        &stack.base_url(&ns, "beta"),
        &alpha_token,
        "alpha's access token at beta",
    )
    .await;
    assert_invalid_token(
        &stack.base_url(&ns, "alpha"),
        &beta_token,
        "beta's access token at alpha",
    )
    .await;

    // Every mismatch and forgery, each with a fresh id.
    let t = now();
    let claims = alpha_claims;
    let cases = [
        (
            "wrong issuer (Entra's v1 issuer)",
            issuer.mint(0, &with(&claims(), json!({"iss": issuer_of(TENANT)}))),
        ),
        (
            "wrong issuer (another tenant)",
            issuer.mint(
                0,
                &with(
                    &claims(),
                    json!({"iss": format!("https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"), "tid": OTHER_TENANT}),
                ),
            ),
        ),
        (
            "this tenant's issuer, another tenant's tid",
            issuer.mint(0, &with(&claims(), json!({"tid": OTHER_TENANT}))),
        ),
        (
            "wrong subject",
            issuer.mint(0, &with(&claims(), json!({"sub": SP_BETA}))),
        ),
        (
            "wrong audience",
            issuer.mint(0, &with(&claims(), json!({"aud": format!("api://{APP}")}))),
        ),
        (
            "expired",
            issuer.mint(
                0,
                &with(
                    &claims(),
                    json!({"exp": t - 600, "nbf": t - 4000, "iat": t - 4000}),
                ),
            ),
        ),
        (
            "not yet valid",
            issuer.mint(0, &with(&claims(), json!({"nbf": t + 600}))),
        ),
        (
            "lifetime over a day",
            issuer.mint(0, &with(&claims(), json!({"exp": t + 2 * 86400}))),
        ),
        (
            "no id",
            issuer.mint(0, &with(&claims(), json!({"uti": null}))),
        ),
        (
            "bad signature",
            issuer.mint_with_kid(2, &issuer.keys()[0].kid, &claims()),
        ),
        ("alg none", issuer.unsigned(&claims())),
        (
            "HS256 with the public key as secret",
            issuer.hs256_with_public_key(&claims()),
        ),
        ("not a JWT", "a.b.c".to_string()),
    ];
    for (case, assertion) in &cases {
        refused(
            &exchange(&endpoint["alpha"], Some(&client_id["alpha"]), assertion).await,
            401,
            "invalid_client",
            case,
        );
    }

    // No shared secret opens a federation-only directory: not its token as a client secret,
    // not as a bearer token.
    refused(
        &client_credentials_token(
            &endpoint["alpha"],
            &client_id["alpha"],
            &bearer["alpha"],
            ClientAuth::Basic,
            "client_credentials",
        )
        .await
        .unwrap(),
        400,
        "unauthorized_client",
        "client secret on a federation-only directory",
    );
    assert_invalid_token(
        &stack.base_url(&ns, "alpha"),
        &bearer["alpha"],
        "the bearer token of a federation-only directory",
    )
    .await;

    // Unknown kid, then the rollover: Entra signs with a key the server has not seen; refused
    // (after one refetch) until the tenant publishes it, then the same assertion is accepted
    // (the refusal did not use it up) without a restart.
    let rolled = issuer.mint(1, &claims());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    refused(
        &exchange(&endpoint["alpha"], None, &rolled).await,
        401,
        "invalid_client",
        "unknown kid",
    );
    issuer.publish(&[0, 1]);
    let fetches = issuer.key_fetches();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answer = exchange(&endpoint["alpha"], None, &rolled).await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, stack.logs());
    assert!(issuer.key_fetches() > fetches);

    // The reasons are in the server's log; no assertion or access token is.
    let log = stack.server.log_tail(600);
    for reason in [
        "wrong issuer",
        "issued for tenant",
        "wrong subject",
        "wrong audience",
        "expired",
        "not yet valid",
        "lifetime longer",
        "no id",
        "bad signature",
        "algorithm",
        "already used",
        "unknown signing key",
        "client id is not this directory's",
    ] {
        assert!(log.contains(reason), "no {reason:?} in the log:\n{log}");
    }
    for secret in [
        &assertion,
        &beta_assertion,
        &alpha_token,
        &beta_token,
        &rolled,
    ] {
        assert!(!log.contains(secret.as_str()), "a credential is in the log");
    }
    for (case, assertion) in &cases {
        assert!(
            !log.contains(assertion.as_str()) || assertion == "a.b.c",
            "{case}: the assertion is in the log"
        );
    }
    assert!(stack.server.is_running());
}

/// The Lease that claims assertion id `id` of `issuer` (as the server names it: a hash).
fn claim_name(issuer: &str, id: &str) -> String {
    use sha2::{Digest, Sha256};
    let hex: String = Sha256::digest(format!("{issuer}\n{id}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("kube-scim-assertion-{hex}")[..63].to_string()
}

/// The claims of a minted assertion.
fn payload(assertion: &str) -> Value {
    use base64::Engine;
    let payload = assertion.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// The assertion's id (Entra's `uti`, or `jti`).
fn assertion_id(assertion: &str) -> String {
    let claims = payload(assertion);
    claims["jti"]
        .as_str()
        .or(claims["uti"].as_str())
        .unwrap()
        .to_string()
}

/// Two server replicas on one plane serve the same directory: an assertion exchanged at one is
/// refused at the other (its id is claimed in the apiserver, not only in a replica's memory),
/// and the claim is deleted once the assertion has expired.
#[tokio::test]
async fn an_assertion_is_exchanged_once_across_server_replicas() {
    let issuer = JwtIssuer::start().await.unwrap();
    let plane = ControlPlane::shared();
    let ns = plane.namespace("wif-replicas").await.unwrap();
    let kube = plane.client().await.unwrap();
    let server_args = vec![
        format!("--entra-metadata-url={}", issuer.metadata_url_template()),
        "--entra-key-refresh-interval=1s".into(),
    ];
    let mut options = StackOptions::new(&ns);
    options.server_args = server_args.clone();
    let stack = Stack::start(plane, options).await.unwrap();
    let (port, metrics) = (free_port().unwrap(), free_port().unwrap());
    let mut replica = Command::new(workspace_binary("kube-scim-server").unwrap());
    replica
        .env("KUBECONFIG", plane.kubeconfig())
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--metrics-bind-address=127.0.0.1:{metrics}"))
        .arg(format!("--watch-namespaces={ns}"))
        .arg("--verifier-key-dir")
        .arg(stack.server_keys.path())
        .args(&server_args);
    let log = plane.dir().join(format!("stack-{ns}")).join("replica.log");
    let mut replica = ManagedProcess::spawn_command("replica", replica, &log).unwrap();
    let logs = |replica: &ManagedProcess| {
        format!(
            "{}\n--- replica ---\n{}",
            stack.logs(),
            replica.log_tail(30)
        )
    };

    let dirs: Api<ScimDirectory> = Api::namespaced(kube.clone(), &ns);
    dirs.create(
        &PostParams::default(),
        &ScimDirectory::new("alpha", spec(SP_ALPHA, Some(APP))),
    )
    .await
    .unwrap();
    ready_directory(&kube, &ns, "alpha", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&replica)));
    let one = format!("{}/oauth2/token", stack.base_url(&ns, "alpha"));
    let two = format!("http://127.0.0.1:{port}/scim/v2/{ns}/alpha/oauth2/token");
    wait_until_served(&one, &stack).await;
    for _ in 0..300 {
        let answer = client_assertion_token(&two, None, "h.p.s", "password").await;
        if answer.is_ok_and(|a| a.body["error"] == "unsupported_grant_type") {
            break;
        }
        assert!(replica.is_running(), "{}", logs(&replica));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let claims = || app_token_claims(TENANT, APP, SP_ALPHA);
    let iss = claims()["iss"].as_str().unwrap().to_string();
    let leases: Api<Lease> = Api::namespaced(kube.clone(), &ns);

    // Exchanged at replica 1, then refused at replica 2 (and at 1); and the other way round.
    for (first, second, case) in [(&one, &two, "1 then 2"), (&two, &one, "2 then 1")] {
        let assertion = issuer.mint(0, &claims());
        let answer = exchange(first, None, &assertion).await;
        assert_eq!(
            answer.status,
            200,
            "{case}: {}\n{}",
            answer.body,
            logs(&replica)
        );
        refused(
            &exchange(second, None, &assertion).await,
            401,
            "invalid_client",
            &format!("{case}: replayed at the other replica"),
        );
        refused(
            &exchange(first, None, &assertion).await,
            401,
            "invalid_client",
            &format!("{case}: replayed at the same replica"),
        );
        // The claim: a labelled Lease, named by a hash (not the id), with the expiry.
        let lease = leases
            .get(&claim_name(&iss, &assertion_id(&assertion)))
            .await
            .unwrap_or_else(|e| panic!("{case}: no claim Lease: {e}"));
        assert_eq!(lease.labels()["app.kubernetes.io/managed-by"], "kube-scim");
        assert_eq!(lease.annotations()["kubescim.io/directory"], "alpha");
        // Until the assertion can no longer be accepted: exp plus the allowed skew.
        let exp = payload(&assertion)["exp"].as_i64().unwrap();
        assert_eq!(
            lease.annotations()["kubescim.io/expires"],
            (exp + 60).to_string(),
            "{case}"
        );
    }
    assert!(replica.log_tail(200).contains("already used"));

    // A short-lived assertion (exp within the skew: its claim expires 10 s from now), then,
    // after its expiry, the next exchange sweeps its claim and no other.
    let t = now();
    let short = issuer.mint(
        0,
        &with(
            &claims(),
            json!({"exp": t - 50, "iat": t - 100, "nbf": t - 100}),
        ),
    );
    let answer = exchange(&two, None, &short).await;
    assert_eq!(answer.status, 200, "short-lived: {}", answer.body);
    let short_claim = claim_name(&iss, &assertion_id(&short));
    assert!(leases.get_opt(&short_claim).await.unwrap().is_some());
    let claimed = || async {
        leases
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=kube-scim"))
            .await
            .unwrap()
            .items
            .len()
    };
    assert_eq!(claimed().await, 3);
    while now() <= t + 11 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let answer = exchange(&one, None, &issuer.mint(0, &claims())).await;
    assert_eq!(answer.status, 200, "after the expiry: {}", answer.body);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while leases.get_opt(&short_claim).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired claim was not swept within 30 s\n{}",
            logs(&replica)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(claimed().await, 3, "only the expired claim was swept");
    assert!(replica.is_running());
    replica.stop();
}

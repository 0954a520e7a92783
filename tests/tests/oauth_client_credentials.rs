//! Auth method `OAuthClientCredentials`: the Entra flow client obtains access tokens from a
//! directory's token endpoint (client id = the directory's uid, client secret = its token) by
//! HTTP Basic and by body parameters, then provisions with them; on the shared plane, with the
//! operator and the SCIM server as processes (and a second server replica for a while).

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use kube_scim_crds::{
    AuthMethod, AuthSpec, OAuthClientCredentialsSpec, ScimDirectory, ScimDirectorySpec,
};
use kube_scim_tests::entra::{
    Answer, ClientAuth, Dialect, EntraClient, EntraUser, assert_invalid_token,
    client_credentials_token,
};
use kube_scim_tests::procs::ManagedProcess;
use kube_scim_tests::stack::{Stack, StackOptions, ready_directory};
use kube_scim_tests::{ControlPlane, free_port, workspace_binary};
use serde_json::json;

fn spec(methods: Vec<AuthMethod>, lifetime: Option<&str>) -> ScimDirectorySpec {
    let mut spec = ScimDirectorySpec {
        auth: AuthSpec {
            methods,
            entra_token: None,
            oauth_client_credentials: lifetime.map(|l| OAuthClientCredentialsSpec {
                access_token_lifetime: Some(l.into()),
            }),
            workload_identity_federation: None,
        },
        ..Default::default()
    };
    spec.token.grace_period = Some("2s".into());
    spec
}

/// The access token of a successful answer, after checking its shape (RFC 6749 §5.1).
fn access_token(answer: &Answer, expires_in: u64, case: &str) -> String {
    assert_eq!(answer.status, 200, "{case}: {}", answer.body);
    assert_eq!(answer.body["token_type"], "Bearer", "{case}");
    assert_eq!(answer.body["expires_in"], expires_in, "{case}");
    answer.body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: no access_token in {}", answer.body))
        .to_string()
}

/// The token endpoint's answer to the client credentials grant Entra sends, with these
/// credentials presented `how`.
async fn request_token(endpoint: &str, client_id: &str, secret: &str, how: ClientAuth) -> Answer {
    client_credentials_token(endpoint, client_id, secret, how, "client_credentials")
        .await
        .unwrap()
}

/// The token endpoint refused with `error` and `status`.
fn refused_at_endpoint(answer: &Answer, status: u16, error: &str, case: &str) {
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (status, Some(error)),
        "{case}: {}",
        answer.body
    );
}

/// Waits (bounded) until the server's watch has brought the Ready directory behind `endpoint`
/// into its cache: the operator's status write and the server's watch event race.
async fn wait_until_served(endpoint: &str, client_id: &str, secret: &str) {
    for _ in 0..100 {
        let answer = request_token(endpoint, client_id, secret, ClientAuth::Basic).await;
        let description = answer.body["error_description"]
            .as_str()
            .unwrap_or_default();
        if !description.contains("there is no SCIM directory") && !description.contains("not ready")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{endpoint}: the server did not serve the directory within 10 s");
}

#[tokio::test]
async fn client_credentials_issue_short_lived_tokens_that_open_only_their_directory() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("oauth-cc").await.unwrap();
    let kube = plane.client().await.unwrap();
    let mut stack = Stack::start(plane, StackOptions::new(&ns)).await.unwrap();
    let dirs: Api<ScimDirectory> = Api::namespaced(kube.clone(), &ns);
    for (name, spec) in [
        (
            "contoso",
            spec(vec![AuthMethod::OAuthClientCredentials], None),
        ),
        (
            "fabrikam",
            spec(vec![AuthMethod::OAuthClientCredentials], Some("2s")),
        ),
        ("bearer", spec(vec![AuthMethod::BearerToken], None)),
    ] {
        dirs.create(&PostParams::default(), &ScimDirectory::new(name, spec))
            .await
            .unwrap();
    }
    // The apiserver refuses a lifetime outside 1s..6h (Microsoft's validation accepts at most
    // 6 h), saying which field and range.
    let refused = dirs
        .create(
            &PostParams::default(),
            &ScimDirectory::new(
                "too-long",
                spec(vec![AuthMethod::OAuthClientCredentials], Some("7h")),
            ),
        )
        .await
        .expect_err("a 7h access token lifetime");
    assert!(
        refused
            .to_string()
            .contains("accessTokenLifetime must be a duration between 1s and 6h"),
        "{refused}"
    );
    let mut secret = std::collections::HashMap::new();
    let mut client_id = std::collections::HashMap::new();
    let mut endpoint = std::collections::HashMap::new();
    for name in ["contoso", "fabrikam", "bearer"] {
        let (_, token) = ready_directory(&kube, &ns, name, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));
        secret.insert(name, token);
        let dir = dirs.get(name).await.unwrap();
        let status = dir.status.clone().unwrap();
        let uid = dir.uid().unwrap();
        let served = format!("{}/oauth2/token", stack.base_url(&ns, name));
        wait_until_served(&served, &uid, &secret[name]).await;
        if name == "bearer" {
            assert_eq!(status.oauth_token_endpoint, None);
            assert_eq!(status.oauth_client_id, None);
            continue;
        }
        // What the Entra admin pastes: token endpoint and client id from the status (and Ready).
        let tenant_url = status.endpoint.clone().unwrap();
        let published = status.oauth_token_endpoint.clone().unwrap();
        // The Tenant URL's path (its query is Entra's dialect flag) followed by /oauth2/token.
        let tenant_path = tenant_url.split('?').next().unwrap();
        assert_eq!(published, format!("{tenant_path}/oauth2/token"));
        assert_eq!(status.oauth_client_id, dir.uid());
        assert_eq!(
            status.auth_methods,
            vec![AuthMethod::OAuthClientCredentials]
        );
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert!(
            ready.message.contains(&published)
                && ready.message.contains(&dir.uid().unwrap())
                && ready
                    .message
                    .contains(status.token_secret_name.as_deref().unwrap()),
            "{}",
            ready.message
        );
        client_id.insert(name, dir.uid().unwrap());
        endpoint.insert(name, format!("{}/oauth2/token", stack.base_url(&ns, name)));
    }
    let grant = "client_credentials";

    // Microsoft's Validate_Credentials_Test, as its workflow sends it: client_id and
    // client_secret in the body, expires_in / 60 between 60 and 360, then
    // GET /Users?startIndex=1&count=1 with the token answered 2xx.
    let answer = request_token(
        &endpoint["contoso"],
        &client_id["contoso"],
        &secret["contoso"],
        ClientAuth::Post,
    )
    .await;
    let validated = access_token(&answer, 3600, "Validate_Credentials_Test");
    let minutes = answer.body["expires_in"].as_u64().unwrap() / 60;
    assert!((60..=360).contains(&minutes), "{minutes} minutes");
    let users = kube_scim_tests::http_client()
        .get(format!(
            "{}/Users?startIndex=1&count=1",
            stack.base_url(&ns, "contoso")
        ))
        .bearer_auth(&validated)
        .header("Accept", "application/scim+json")
        .send()
        .await
        .unwrap();
    assert!(users.status().is_success(), "{}", users.status());

    // Both client authentications; either token runs Entra's cycle.
    for how in [ClientAuth::Basic, ClientAuth::Post] {
        let answer = request_token(
            &endpoint["contoso"],
            &client_id["contoso"],
            &secret["contoso"],
            how,
        )
        .await;
        let token = access_token(&answer, 3600, &format!("{how:?}"));
        let client = EntraClient::new(&stack.base_url(&ns, "contoso"), &token, Dialect::Compliant);
        let answer = client.test_connection().await.unwrap();
        assert_eq!(answer.status, 200, "{how:?}: {}", answer.body);
        let user = EntraUser {
            object_id: format!("0000000a-0000-4000-8000-00000000000{}", how as u8),
            upn: format!("ada{}@contoso.example", how as u8),
            given_name: "Ada".into(),
            surname: "Lovelace".into(),
            display_name: "Ada Lovelace".into(),
            ..EntraUser::default()
        };
        let id = client.provision_user(&user, None).await.unwrap();
        assert!(!id.is_empty());
    }
    let contoso_token = access_token(
        &request_token(
            &endpoint["contoso"],
            &client_id["contoso"],
            &secret["contoso"],
            ClientAuth::Basic,
        )
        .await,
        3600,
        "contoso",
    );
    // A second server replica (same verifier keys, no state shared otherwise) accepts the first
    // one's access token, and the first accepts the second's.
    let (replica_port, replica_metrics) = (free_port().unwrap(), free_port().unwrap());
    let mut replica = Command::new(workspace_binary("kube-scim-server").unwrap());
    replica
        .env("KUBECONFIG", plane.kubeconfig())
        .arg(format!("--listen=127.0.0.1:{replica_port}"))
        .arg(format!(
            "--metrics-bind-address=127.0.0.1:{replica_metrics}"
        ))
        .arg(format!("--watch-namespaces={ns}"))
        .arg("--verifier-key-dir")
        .arg(stack.server_keys.path());
    let log = plane.dir().join(format!("stack-{ns}")).join("replica.log");
    let mut replica = ManagedProcess::spawn_command("replica", replica, &log).unwrap();
    let replica_base = format!("http://127.0.0.1:{replica_port}/scim/v2/{ns}/contoso");
    let mut replica_ready = false;
    for _ in 0..300 {
        let ready = kube_scim_tests::http_client()
            .get(format!("http://127.0.0.1:{replica_metrics}/readyz"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            replica_ready = true;
            break;
        }
        assert!(replica.is_running(), "{}", replica.log_tail(30));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(replica_ready, "replica not ready\n{}", replica.log_tail(30));
    let answer = EntraClient::new(&replica_base, &contoso_token, Dialect::Compliant)
        .test_connection()
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "replica: {}", answer.body);
    let from_replica = access_token(
        &request_token(
            &format!("{replica_base}/oauth2/token"),
            &client_id["contoso"],
            &secret["contoso"],
            ClientAuth::Post,
        )
        .await,
        3600,
        "replica",
    );
    let answer = EntraClient::new(
        &stack.base_url(&ns, "contoso"),
        &from_replica,
        Dialect::Compliant,
    )
    .test_connection()
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "the replica's token: {}", answer.body);
    replica.stop();

    // With OAuthClientCredentials alone, the client secret is no bearer token.
    assert_invalid_token(
        &stack.base_url(&ns, "contoso"),
        &secret["contoso"],
        "the client secret as a bearer token",
    )
    .await;

    // Refused at the token endpoint.
    let wrong = "W7xq2LmZ9vKc4TnR8pYb3HdF6jGs1AeU5oIw0QzXyNv";
    for (case, id, secret_, how, grant_type, status, error) in [
        (
            "wrong secret (Basic)",
            client_id["contoso"].as_str(),
            wrong,
            ClientAuth::Basic,
            grant,
            401,
            "invalid_client",
        ),
        (
            "wrong secret (body)",
            client_id["contoso"].as_str(),
            wrong,
            ClientAuth::Post,
            grant,
            401,
            "invalid_client",
        ),
        (
            "another directory's client id",
            client_id["fabrikam"].as_str(),
            secret["contoso"].as_str(),
            ClientAuth::Basic,
            grant,
            401,
            "invalid_client",
        ),
        (
            "another directory's client id and secret",
            client_id["fabrikam"].as_str(),
            secret["fabrikam"].as_str(),
            ClientAuth::Post,
            grant,
            401,
            "invalid_client",
        ),
        (
            "wrong grant type",
            client_id["contoso"].as_str(),
            secret["contoso"].as_str(),
            ClientAuth::Basic,
            "password",
            400,
            "unsupported_grant_type",
        ),
    ] {
        let answer = client_credentials_token(&endpoint["contoso"], id, secret_, how, grant_type)
            .await
            .unwrap();
        refused_at_endpoint(&answer, status, error, case);
    }
    // A Basic failure carries a Basic challenge; every answer is no-store.
    let resp = kube_scim_tests::http_client()
        .post(&endpoint["contoso"])
        .basic_auth(&client_id["contoso"], Some(wrong))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"].to_str().unwrap(),
        "Basic realm=\"kube-scim\""
    );
    assert_eq!(
        resp.headers()["cache-control"].to_str().unwrap(),
        "no-store"
    );
    // A directory without the method: its endpoint refuses even its own credentials.
    let answer = request_token(
        &format!("{}/oauth2/token", stack.base_url(&ns, "bearer")),
        &dirs.get("bearer").await.unwrap().uid().unwrap(),
        &secret["bearer"],
        ClientAuth::Basic,
    )
    .await;
    refused_at_endpoint(&answer, 400, "unauthorized_client", "method not enabled");

    // Refused at the SCIM endpoint: directory A's token on directory B (both with the method,
    // and one without), and an expired token (fabrikam's lifetime is 2 s).
    assert_invalid_token(
        &stack.base_url(&ns, "fabrikam"),
        &contoso_token,
        "contoso's access token on fabrikam",
    )
    .await;
    assert_invalid_token(
        &stack.base_url(&ns, "bearer"),
        &contoso_token,
        "contoso's access token on a bearer-only directory",
    )
    .await;
    let short = access_token(
        &request_token(
            &endpoint["fabrikam"],
            &client_id["fabrikam"],
            &secret["fabrikam"],
            ClientAuth::Post,
        )
        .await,
        2,
        "fabrikam",
    );
    let fabrikam = EntraClient::new(&stack.base_url(&ns, "fabrikam"), &short, Dialect::Compliant);
    assert_eq!(fabrikam.test_connection().await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_invalid_token(&stack.base_url(&ns, "fabrikam"), &short, "an expired token").await;

    // Rotation of fabrikam's client secret (gracePeriod 2s): the new secret works, the old one
    // until its grace period ends, then is refused at the token endpoint.
    let old_secret = secret["fabrikam"].clone();
    let rotate = json!({"spec": {"token": {"rotationRequest": "r1"}}});
    dirs.patch("fabrikam", &PatchParams::default(), &Patch::Merge(&rotate))
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), &ns);
    let secret_name = dirs
        .get("fabrikam")
        .await
        .unwrap()
        .status
        .unwrap()
        .token_secret_name
        .unwrap();
    let mut new_secret = None;
    for _ in 0..150 {
        let current = secrets
            .get(&secret_name)
            .await
            .ok()
            .and_then(|s| s.data?.get("token").map(|t| t.0.clone()))
            .map(|t| String::from_utf8(t).unwrap());
        if current.as_deref().is_some_and(|t| t != old_secret) {
            new_secret = current;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let new_secret = new_secret.expect("the rotated client secret within 30 s");
    let mut old_refused = None;
    for attempt in 0..150 {
        let with_new = request_token(
            &endpoint["fabrikam"],
            &client_id["fabrikam"],
            &new_secret,
            ClientAuth::Basic,
        )
        .await;
        if with_new.status == 200 {
            let with_old = request_token(
                &endpoint["fabrikam"],
                &client_id["fabrikam"],
                &old_secret,
                ClientAuth::Basic,
            )
            .await;
            if with_old.status == 401 {
                old_refused = Some((attempt, with_old));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, answer) = old_refused.unwrap_or_else(|| {
        panic!(
            "the old client secret was not refused within 30 s of the rotation\n{}",
            stack.logs()
        )
    });
    refused_at_endpoint(
        &answer,
        401,
        "invalid_client",
        "a rotated-out client secret",
    );

    // The method removed from contoso: the endpoint refuses, and the access token issued before
    // opens nothing (the server sees the change through its watch).
    let bearer_only = json!({"spec": {"auth": {"methods": ["BearerToken"]}}});
    dirs.patch(
        "contoso",
        &PatchParams::default(),
        &Patch::Merge(&bearer_only),
    )
    .await
    .unwrap();
    let mut disabled = false;
    for _ in 0..150 {
        let answer = request_token(
            &endpoint["contoso"],
            &client_id["contoso"],
            &secret["contoso"],
            ClientAuth::Basic,
        )
        .await;
        if answer.status == 400 {
            refused_at_endpoint(&answer, 400, "unauthorized_client", "method removed");
            disabled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        disabled,
        "the endpoint still issues tokens\n{}",
        stack.logs()
    );
    assert_invalid_token(
        &stack.base_url(&ns, "contoso"),
        &contoso_token,
        "an access token after the method was removed",
    )
    .await;
    // ... while the directory's token now opens it as a bearer token.
    let answer = EntraClient::new(
        &stack.base_url(&ns, "contoso"),
        &secret["contoso"],
        Dialect::Compliant,
    )
    .test_connection()
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    // The operator stops publishing the token endpoint (its own reconcile, polled: bounded).
    let mut unpublished = false;
    for _ in 0..150 {
        let status = dirs.get("contoso").await.unwrap().status.unwrap();
        if status.oauth_token_endpoint.is_none() && status.oauth_client_id.is_none() {
            unpublished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        unpublished,
        "status still shows the token endpoint\n{}",
        stack.logs()
    );

    // Why each token was refused is in the log; no secret or token is.
    let log = stack.server.log_tail(400);
    for reason in [
        "wrong client id or secret",
        "bad signature",
        "not among",
        "expired",
    ] {
        assert!(log.contains(reason), "no {reason:?} in the log:\n{log}");
    }
    for leaked in [&contoso_token, &short, &secret["contoso"], &old_secret] {
        assert!(!log.contains(leaked.as_str()), "a credential is in the log");
    }
    assert!(stack.server.is_running());
}

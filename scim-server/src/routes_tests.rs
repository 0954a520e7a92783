//! Requests through the whole router (routes, middleware, adapters, service) onto the
//! in-memory store: the HTTP shape of each verb, for both kinds, without a cluster.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use clap::Parser;
use http_body_util::BodyExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube_scim_crds::{
    CONDITION_READY, Provider, ScimDirectory, ScimDirectorySpec, ScimDirectoryStatus, TokenVerifier,
};
use kube_scim_runtime::verifier::{KeyRing, SharedKeyRing};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::AppState;
use crate::cache::Cache;
use crate::config::Settings;
use crate::directory::{DirectoryService, Limits};
use crate::memory_store::MemoryStore;
use crate::metrics::Metrics;

const TOKEN: &str = "secret-token";

fn app() -> axum::Router {
    app_for(Provider::default())
}

fn app_for(provider: Provider) -> axum::Router {
    app_with(ScimDirectorySpec {
        provider,
        ..Default::default()
    })
}

fn app_with(spec: ScimDirectorySpec) -> axum::Router {
    super::routes::scim(state_with(spec))
}

fn state_with(spec: ScimDirectorySpec) -> Arc<AppState<MemoryStore>> {
    let cache = Arc::new(Cache::default());
    cache.register_watcher();
    cache.watcher_synced();
    let keys =
        KeyRing::from_keys([("k1", b"routes-test-key-0123456789abcdef-0123".to_vec())]).unwrap();
    let binding = kube_scim_runtime::verifier::Binding {
        uid: "uid-d",
        namespace: "ns",
        name: "d",
    };
    let hash = keys.hashes(&binding, TOKEN).remove(0);
    let mut dir = ScimDirectory::new("d", spec);
    dir.metadata.namespace = Some("ns".into());
    dir.metadata.uid = Some("uid-d".into());
    dir.status = Some(ScimDirectoryStatus {
        conditions: vec![Condition {
            type_: CONDITION_READY.into(),
            status: "True".into(),
            reason: "Ready".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(jiff::Timestamp::now()),
        }],
        token_verifiers: vec![TokenVerifier {
            hash,
            fingerprint: None,
            expires_at: None,
        }],
        ..Default::default()
    });
    cache.apply_directory(&dir);
    let settings = Settings::try_parse_from(["kube-scim-server"]).unwrap();
    let limits = Limits {
        max_results: settings.max_results,
        member_write_concurrency: 4,
        conflict_retries: 2,
        inline_member_writes: 1000,
    };
    Arc::new(AppState {
        directory: DirectoryService::new(
            cache,
            MemoryStore::default(),
            limits,
            SharedKeyRing::new(keys),
        ),
        metrics: Arc::new(Metrics::new()),
        admission: crate::admission::Admission::new(&settings),
        events: Arc::new(crate::events::DirectoryEvents::new(None, "test".into())),
        draining: std::sync::atomic::AtomicBool::new(false),
        settings,
    })
}

async fn call(
    app: &axum::Router,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "scim.test")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/scim+json");
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const BASE: &str = "/scim/v2/ns/d";

#[tokio::test]
async fn each_verb_works_for_both_kinds_through_the_router() {
    let app = app();
    let (s, user) = call(
        &app,
        Method::POST,
        &format!("{BASE}/Users"),
        Some(json!({"userName": "a@b.c"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let uid = user["id"].as_str().unwrap().to_string();
    assert_eq!(
        user["meta"]["location"],
        format!("http://scim.test{BASE}/Users/{uid}")
    );
    let (s, group) = call(
        &app,
        Method::POST,
        &format!("{BASE}/Groups"),
        Some(json!({"displayName": "G", "members": [{"value": uid}]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let gid = group["id"].as_str().unwrap().to_string();
    assert_eq!(group["members"][0]["value"], uid.as_str());

    let (s, list) = call(
        &app,
        Method::GET,
        &format!("{BASE}/Users?filter=userName%20eq%20%22A@B.C%22"),
        None,
    )
    .await;
    assert_eq!(
        (s, list["totalResults"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (s, found) = call(
        &app,
        Method::POST,
        &format!("{BASE}/.search"),
        Some(json!({"filter": "id pr"})),
    )
    .await;
    assert_eq!(
        (s, found["totalResults"].as_u64()),
        (StatusCode::OK, Some(2))
    );

    let remove =
        json!({"Operations": [{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}]});
    let (s, _) = call(
        &app,
        Method::PATCH,
        &format!("{BASE}/Groups/{gid}"),
        Some(remove),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, put) = call(
        &app,
        Method::PUT,
        &format!("{BASE}/Users/{uid}"),
        Some(json!({"userName": "a@b.c", "active": false})),
    )
    .await;
    assert_eq!((s, put["active"].as_bool()), (StatusCode::OK, Some(false)));
    let (s, _) = call(&app, Method::DELETE, &format!("{BASE}/Groups/{gid}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, err) = call(&app, Method::GET, &format!("{BASE}/Groups/{gid}"), None).await;
    assert_eq!(
        (s, err["status"].as_str()),
        (StatusCode::NOT_FOUND, Some("404"))
    );
}

/// Okta's shapes (SCIM 2.0 reference): `password` on create, PUT of the whole profile without
/// the memberships Okta does not manage there, path-less `replace` of `active`, group PATCHes
/// answered 200 with the group. The same group PATCH on an Entra directory stays 204.
#[tokio::test]
async fn okta_directories_get_their_answers_and_keep_memberships_over_put() {
    let app = app_for(Provider::Okta);
    let (s, user) = call(
        &app,
        Method::POST,
        &format!("{BASE}/Users"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada@okta.test",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"primary": true, "value": "ada@okta.test", "type": "work"}],
            "displayName": "Ada Lovelace",
            "locale": "en-US",
            "externalId": "00u1",
            "groups": [],
            "password": "1mz050nq",
            "active": true
        })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(user.get("password").is_none(), "{user}");
    let uid = user["id"].as_str().unwrap().to_string();
    let (s, group) = call(
        &app,
        Method::POST,
        &format!("{BASE}/Groups"),
        Some(json!({"displayName": "Eng", "members": []})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let gid = group["id"].as_str().unwrap().to_string();
    let add = json!({"Operations": [{"op": "add", "path": "members",
        "value": [{"value": uid, "display": "ada@okta.test"}]}]});
    let (s, patched) = call(
        &app,
        Method::PATCH,
        &format!("{BASE}/Groups/{gid}"),
        Some(add),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{patched}");
    assert_eq!(patched["members"][0]["value"], uid.as_str());
    assert_eq!(
        patched["members"][0]["display"], "ada@okta.test",
        "Okta's display is kept, not the user's displayName"
    );

    // Okta's PUT carries the profile it manages, an empty `groups` and a password: the
    // membership made by group push stays, the password is neither stored nor returned.
    let put = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": uid,
        "userName": "ada@okta.test",
        "name": {"givenName": "Ada", "familyName": "King"},
        "emails": [{"primary": true, "value": "ada@okta.test", "type": "work"}],
        "active": true,
        "groups": [],
        "password": "t1meMa$heen"
    });
    let (s, replaced) = call(&app, Method::PUT, &format!("{BASE}/Users/{uid}"), Some(put)).await;
    assert_eq!(s, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["name"]["familyName"], "King");
    assert!(replaced.get("password").is_none());
    assert!(
        replaced.get("displayName").is_none(),
        "PUT replaces: {replaced}"
    );
    assert_eq!(replaced["groups"][0]["value"], gid.as_str(), "{replaced}");

    let off = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": false}}]});
    let (s, patched) = call(
        &app,
        Method::PATCH,
        &format!("{BASE}/Users/{uid}"),
        Some(off),
    )
    .await;
    assert_eq!(
        (s, patched["active"].as_bool()),
        (StatusCode::OK, Some(false))
    );

    let rename = json!({"Operations": [{"op": "replace", "value": {"id": gid, "displayName": "Engineering"}}]});
    let (s, renamed) = call(
        &app,
        Method::PATCH,
        &format!("{BASE}/Groups/{gid}"),
        Some(rename),
    )
    .await;
    assert_eq!(
        (s, renamed["displayName"].as_str()),
        (StatusCode::OK, Some("Engineering"))
    );
    assert_eq!(renamed["id"], gid.as_str());

    let (_, got) = call(&app, Method::GET, &format!("{BASE}/Groups/{gid}"), None).await;
    assert_eq!(got["members"][0]["display"], "ada@okta.test");

    // Any other client's `display` is read-only (RFC 7643 §2.4): the member's own name is served.
    let entra = app_for(Provider::Entra);
    let (_, u) = call(
        &entra,
        Method::POST,
        &format!("{BASE}/Users"),
        Some(json!({"userName": "bob@entra.test", "displayName": "Bob"})),
    )
    .await;
    let (_, g) = call(
        &entra,
        Method::POST,
        &format!("{BASE}/Groups"),
        Some(json!({"displayName": "Eng", "members": [{"value": u["id"], "display": "b"}]})),
    )
    .await;
    assert_eq!(g["members"][0]["display"], "Bob", "{g}");
    let rename = json!({"Operations": [{"op": "replace", "path": "displayName", "value": "E"}]});
    let (s, _) = call(
        &entra,
        Method::PATCH,
        &format!("{BASE}/Groups/{}", g["id"].as_str().unwrap()),
        Some(rename),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn every_error_is_a_scim_error() {
    let app = app();
    for (method, path, status) in [
        (
            Method::GET,
            "/scim/v2/ns/nope/Users".to_string(),
            StatusCode::UNAUTHORIZED,
        ),
        (Method::GET, format!("{BASE}/Nope"), StatusCode::NOT_FOUND),
        (
            Method::DELETE,
            format!("{BASE}/Users"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::GET,
            format!("{BASE}/Users?filter=userName%20zz%20%22x%22"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (s, body) = call(&app, method, &path, None).await;
        assert_eq!(s, status, "{path}");
        assert_eq!(
            body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{path}"
        );
        assert_eq!(body["status"], status.as_u16().to_string(), "{path}");
    }
}

/// A value longer than the CRD stores is a 400 invalidValue naming the attribute, on create and
/// on PATCH, and the stored user is left as it was.
#[tokio::test]
async fn a_value_longer_than_the_cluster_stores_is_refused_and_nothing_changes() {
    let app = app();
    let long = "x".repeat(1025);
    let (s, body) = call(
        &app,
        Method::POST,
        &format!("{BASE}/Users"),
        Some(json!({"userName": "a@b.c", "title": long})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["scimType"], "invalidValue", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("title is longer than the 1024 characters"),
        "{body}"
    );
    let (s, user) = call(
        &app,
        Method::POST,
        &format!("{BASE}/Users"),
        Some(json!({"userName": "a@b.c", "title": "Engineer"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let path = format!("{BASE}/Users/{}", user["id"].as_str().unwrap());
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": long}]});
    let (s, body) = call(&app, Method::PATCH, &path, Some(patch)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["scimType"], "invalidValue", "{body}");
    let (s, stored) = call(&app, Method::GET, &path, None).await;
    assert_eq!((s, &stored["title"]), (StatusCode::OK, &json!("Engineer")));
}

/// RFC 6750 §3.1: a request without credentials gets a bare challenge; a wrong token gets
/// `error="invalid_token"`.
#[tokio::test]
async fn a_missing_token_gets_a_challenge_without_an_error_code() {
    let app = app();
    let challenge = |authorization: Option<&str>| {
        let app = app.clone();
        let authorization = authorization.map(str::to_string);
        async move {
            let mut req = Request::builder()
                .uri(format!("{BASE}/Users"))
                .header(header::HOST, "scim.test");
            if let Some(a) = authorization {
                req = req.header(header::AUTHORIZATION, a);
            }
            let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
            resp.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(challenge(None).await, "Bearer realm=\"kube-scim\"");
    assert_eq!(
        challenge(Some("Bearer wrong")).await,
        "Bearer realm=\"kube-scim\", error=\"invalid_token\""
    );
}

/// A token request to the directory's OAuth endpoint: `(status, headers, body)`.
async fn token_request(
    app: &axum::Router,
    basic: Option<(&str, &str)>,
    form: &str,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    use base64::Engine;
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("{BASE}/oauth2/token"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        req = req.header(header::AUTHORIZATION, format!("Basic {pair}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(form.to_string())).unwrap())
        .await
        .unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn list_with(app: &axum::Router, token: &str) -> StatusCode {
    let req = Request::builder()
        .uri(format!("{BASE}/Users"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status()
}

fn oauth_spec(methods: Vec<kube_scim_crds::AuthMethod>) -> ScimDirectorySpec {
    let mut spec = ScimDirectorySpec::default();
    spec.auth.methods = methods;
    spec
}

/// The token endpoint through the router: both client authentications, RFC 6749's errors, and
/// the access token opening the directory while the directory's own token does not (method
/// `OAuthClientCredentials` alone).
#[tokio::test]
async fn the_token_endpoint_exchanges_client_credentials_for_an_access_token() {
    use kube_scim_crds::AuthMethod;
    let app = app_with(oauth_spec(vec![AuthMethod::OAuthClientCredentials]));
    let grant = "grant_type=client_credentials";
    let (status, headers, body) = token_request(&app, Some(("uid-d", TOKEN)), grant).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let access = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(list_with(&app, &access).await, StatusCode::OK);
    assert_eq!(list_with(&app, TOKEN).await, StatusCode::UNAUTHORIZED);
    // Another replica (its own cache and service, the same verifier keys) accepts it.
    let replica = app_with(oauth_spec(vec![AuthMethod::OAuthClientCredentials]));
    assert_eq!(list_with(&replica, &access).await, StatusCode::OK);

    let form = format!("{grant}&client_id=uid-d&client_secret={TOKEN}");
    let (status, _, body) = token_request(&app, None, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, headers, body) = token_request(&app, Some(("uid-d", "wrong")), grant).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        "Basic realm=\"kube-scim\""
    );
    let (status, headers, body) = token_request(
        &app,
        None,
        &format!("{grant}&client_id=other&client_secret={TOKEN}"),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_client"))
    );
    assert!(headers.get(header::WWW_AUTHENTICATE).is_none());
    let (status, _, body) =
        token_request(&app, Some(("uid-d", TOKEN)), "grant_type=password").await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("unsupported_grant_type"))
    );
    let (status, _, body) = token_request(&app, Some(("uid-d", TOKEN)), "scope=x").await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_request"))
    );
    // GET is not the token endpoint's method.
    let req = Request::builder()
        .uri(format!("{BASE}/oauth2/token"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}

/// Without the method, the endpoint refuses (`unauthorized_client`) and an access token that was
/// valid opens nothing.
#[tokio::test]
async fn without_the_method_the_endpoint_and_its_tokens_open_nothing() {
    use kube_scim_crds::AuthMethod;
    let with = app_with(oauth_spec(vec![AuthMethod::OAuthClientCredentials]));
    let (_, _, body) = token_request(
        &with,
        Some(("uid-d", TOKEN)),
        "grant_type=client_credentials",
    )
    .await;
    let access = body["access_token"].as_str().unwrap().to_string();
    // The same directory (same uid and keys) with the method removed.
    let without = app();
    let (status, _, body) = token_request(
        &without,
        Some(("uid-d", TOKEN)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("unauthorized_client"))
    );
    assert_eq!(list_with(&without, &access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(list_with(&without, TOKEN).await, StatusCode::OK);
}

/// After SIGTERM the server keeps serving through the drain, reports not ready (so it leaves
/// the Service's endpoints) and closes each connection after its response (so a keep-alive
/// client reconnects, to a pod that stays, instead of losing a request when this one stops).
#[tokio::test]
async fn a_draining_server_serves_reports_not_ready_and_closes_each_connection() {
    let state = state_with(ScimDirectorySpec::default());
    let app = super::routes::scim(state.clone());
    let get = |path: &str| {
        Request::builder()
            .uri(path)
            .header(header::HOST, "scim.test")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap()
    };
    let users = &format!("{BASE}/Users");
    let resp = app.clone().oneshot(get(users)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get(header::CONNECTION).is_none());
    let ready = app.clone().oneshot(get("/readyz")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    state
        .draining
        .store(true, std::sync::atomic::Ordering::Release);
    let resp = app.clone().oneshot(get(users)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "still served while draining");
    assert_eq!(resp.headers()[header::CONNECTION], "close");
    let ready = app.clone().oneshot(get("/readyz")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// Without a valid credential, a directory that exists and one that does not get the same
/// answers (status, headers that matter, body), on resources, discovery and the token endpoint.
#[tokio::test]
async fn unauthenticated_answers_do_not_tell_which_directories_exist() {
    use base64::Engine;
    use kube_scim_crds::AuthMethod;
    let app = app_with(oauth_spec(vec![
        AuthMethod::BearerToken,
        AuthMethod::OAuthClientCredentials,
    ]));
    let basic = |pair: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let form = "application/x-www-form-urlencoded";
    // (method, path tail, Authorization, (Content-Type, body))
    type Case<'a> = (Method, &'a str, Option<String>, Option<(&'a str, String)>);
    let cases: Vec<Case> = vec![
        (Method::GET, "/Users", None, None),
        (
            Method::GET,
            "/Users?filter=userName%20eq%20%22a%22",
            Some("Bearer wrong".into()),
            None,
        ),
        (Method::GET, "/Users/x", Some("Bearer wrong".into()), None),
        (Method::DELETE, "/Users/x", None, None),
        (
            Method::POST,
            "/Users",
            Some("Bearer wrong".into()),
            Some(("application/scim+json", r#"{"userName":"a"}"#.into())),
        ),
        (Method::GET, "/NoSuchThing", None, None),
        (Method::GET, "/ServiceProviderConfig", None, None),
        (Method::GET, "/Schemas", None, None),
        (Method::GET, "/ResourceTypes/User", None, None),
        (
            Method::POST,
            "/oauth2/token",
            Some(basic("uid-d:wrong")),
            Some((form, "grant_type=client_credentials".into())),
        ),
        (
            Method::POST,
            "/oauth2/token",
            None,
            Some((
                form,
                "grant_type=client_credentials&client_id=uid-d&client_secret=x".into(),
            )),
        ),
        (
            Method::POST,
            "/oauth2/token",
            None,
            Some((form, "grant_type=password".into())),
        ),
    ];
    for (method, tail, auth, body) in cases {
        let mut answers = Vec::new();
        for dir in ["d", "nope"] {
            let mut req = Request::builder()
                .method(method.clone())
                .uri(format!("/scim/v2/ns/{dir}{tail}"))
                .header(header::HOST, "scim.test");
            if let Some(a) = &auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            let body = match &body {
                Some((ct, b)) => {
                    req = req.header(header::CONTENT_TYPE, *ct);
                    Body::from(b.clone())
                }
                None => Body::empty(),
            };
            let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
            let status = resp.status();
            let challenge = resp.headers().get(header::WWW_AUTHENTICATE).cloned();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            // Discovery documents carry their own URL.
            let text = String::from_utf8_lossy(&bytes).replace("/ns/nope", "/ns/d");
            answers.push((status, challenge, text));
        }
        assert_eq!(answers[0], answers[1], "{method} {tail}");
        assert!(
            answers[0].0 == StatusCode::UNAUTHORIZED
                || answers[0].0 == StatusCode::OK
                || answers[0].0 == StatusCode::BAD_REQUEST,
            "{method} {tail}: {:?}",
            answers[0]
        );
    }
}

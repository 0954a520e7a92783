//! The one status write of every controller: server-side apply of the whole status under the
//! controller's own field manager, forced (the status is ours alone). A field the controller no
//! longer sets is removed by the apiserver, so no write has to null fields by hand.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Field managers, one per controller, so `kubectl get --show-managed-fields` tells which
/// controller wrote what.
pub mod manager {
    /// The ScimDirectory controller (Secrets, routes, counts and status); the name of 0.1.0,
    /// kept: a new name would leave what 0.1.0 wrote owned by the old one, never removed.
    pub const DIRECTORY: &str = "kube-scim-operator";
    /// The ScimGroupBinding controller (RoleBindings, ClusterRoleBindings and status).
    pub const GROUP_BINDING: &str = "kube-scim-operator-group-binding";
    /// The ScimWebhook deliverer (outbox Secrets and status).
    pub const WEBHOOK: &str = "kube-scim-operator-webhooks";
}

/// Applies `status` as the status of `name`, as `manager`.
pub async fn apply<K>(
    api: &Api<K>,
    name: &str,
    manager: &str,
    status: &impl Serialize,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::{Request, Response, StatusCode};
    use kube::Client;
    use kube::client::Body;
    use kube_scim_crds::{ScimWebhook, ScimWebhookStatus};
    use serde_json::Value;

    use super::*;
    use crate::reconcile::{Error, is_not_found};

    /// One request as the apiserver saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        query: String,
        content_type: String,
        body: Value,
    }

    /// A client whose apiserver answers every request with `code` and `body`.
    fn apiserver(code: u16) -> (Client, Arc<Mutex<Vec<Seen>>>) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().to_string();
                let path = request.uri().path().to_string();
                let query = request.uri().query().unwrap_or_default().to_string();
                let content_type = request
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let bytes = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                recorded.lock().unwrap().push(Seen {
                    method,
                    path,
                    query,
                    content_type,
                    body: body.clone(),
                });
                let answer = if code == 200 {
                    // The object back, as the apiserver would after the apply.
                    let mut object = json!({"metadata": {"name": "h", "namespace": "ns"},
                        "spec": {"directoryRef": {"name": "d"}, "url": "https://r.example.com",
                                 "signingKeySecretRef": {"name": "k"}}});
                    object["apiVersion"] = body["apiVersion"].clone();
                    object["kind"] = body["kind"].clone();
                    object["status"] = body["status"].clone();
                    object
                } else {
                    refusal(code)
                };
                send.send_response(
                    Response::builder()
                        .status(StatusCode::from_u16(code).unwrap())
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                );
            }
        });
        (Client::new(service, "default"), seen)
    }

    /// The `Status` the apiserver answers a refused write with.
    fn refusal(code: u16) -> Value {
        let reason = match code {
            409 => "Conflict",
            404 => "NotFound",
            _ => "InternalError",
        };
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": format!("answered {code}"), "reason": reason, "code": code})
    }

    fn status() -> ScimWebhookStatus {
        ScimWebhookStatus {
            observed_generation: Some(3),
            backlog: Some(0),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_status_is_applied_forced_as_the_controllers_field_manager() {
        let (client, seen) = apiserver(200);
        let api: Api<ScimWebhook> = Api::namespaced(client, "ns");
        apply(&api, "h", manager::WEBHOOK, &status()).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let call = &seen[0];
        assert_eq!(call.method, "PATCH");
        assert_eq!(
            call.path,
            "/apis/kubescim.io/v1alpha1/namespaces/ns/scimwebhooks/h/status"
        );
        assert_eq!(call.content_type, "application/apply-patch+yaml");
        assert!(
            call.query
                .contains("fieldManager=kube-scim-operator-webhooks")
                && call.query.contains("force=true"),
            "{}",
            call.query
        );
        assert_eq!(call.body["apiVersion"], "kubescim.io/v1alpha1");
        assert_eq!(call.body["kind"], "ScimWebhook");
        assert_eq!(call.body["status"]["observedGeneration"], 3);
        // Fields not set are left out: the apply removes them (no nulls by hand).
        let fields = call.body["status"].as_object().unwrap();
        assert!(!fields.contains_key("lastError"), "{fields:?}");
        assert!(fields.values().all(|v| !v.is_null()), "{fields:?}");
    }

    #[tokio::test]
    async fn a_refused_write_is_an_api_error_the_reconcile_can_tell_apart() {
        for (code, label) in [(409, "api_409"), (500, "api_500"), (404, "api_404")] {
            let (client, seen) = apiserver(code);
            let api: Api<ScimWebhook> = Api::namespaced(client, "ns");
            let e = apply(&api, "h", manager::WEBHOOK, &status())
                .await
                .expect_err("the apiserver refused");
            assert_eq!(is_not_found(&e), code == 404);
            assert!(matches!(&e, kube::Error::Api(s) if s.code == code), "{e}");
            assert_eq!(Error::from(e).metric_label(), label);
            assert_eq!(seen.lock().unwrap().len(), 1, "one request, no retry");
        }
    }
}

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
    use std::collections::HashMap;

    use axum::http::Method;
    use kube::Client;
    use kube_scim_crds::{ScimWebhook, ScimWebhookStatus};

    use super::*;
    use crate::reconcile::fake_apiserver::{self, Calls, Failure, Fault};
    use crate::reconcile::{Error, is_not_found};

    const WEBHOOK: &str = "/apis/kubescim.io/v1alpha1/namespaces/ns/scimwebhooks/h";
    const STATUS: &str = "/apis/kubescim.io/v1alpha1/namespaces/ns/scimwebhooks/h/status";

    /// A client whose apiserver holds webhook `ns/h` and answers its status write with
    /// `failure`, if any.
    fn apiserver(failure: Option<Failure>) -> (Client, Calls) {
        let webhook = json!({"apiVersion": "kubescim.io/v1alpha1", "kind": "ScimWebhook",
            "metadata": {"name": "h", "namespace": "ns"},
            "spec": {"directoryRef": {"name": "d"}, "url": "https://r.example.com",
                     "signingKeySecretRef": {"name": "k"}}});
        let faults = failure
            .map(|f| Fault::new(Method::PATCH, STATUS, f))
            .into_iter()
            .collect();
        fake_apiserver::client_failing(HashMap::from([(WEBHOOK.to_string(), webhook)]), faults)
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
        let (client, calls) = apiserver(None);
        let api: Api<ScimWebhook> = Api::namespaced(client, "ns");
        apply(&api, "h", manager::WEBHOOK, &status()).await.unwrap();
        let seen = calls.all();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let call = &seen[0];
        assert_eq!(call.method, Method::PATCH);
        assert_eq!(call.path, STATUS);
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
        for (failure, code, label) in [
            (Failure::Conflict, 409, "api_409"),
            (Failure::Internal, 500, "api_500"),
            (Failure::NotFound, 404, "api_404"),
        ] {
            let (client, calls) = apiserver(Some(failure));
            let api: Api<ScimWebhook> = Api::namespaced(client, "ns");
            let e = apply(&api, "h", manager::WEBHOOK, &status())
                .await
                .expect_err("the apiserver refused");
            assert_eq!(is_not_found(&e), code == 404);
            assert!(matches!(&e, kube::Error::Api(s) if s.code == code), "{e}");
            assert_eq!(Error::from(e).metric_label(), label);
            assert_eq!(calls.all().len(), 1, "one request, no retry");
        }
    }
}

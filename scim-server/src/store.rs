//! Writes to (and, on the rare conflict path, reads from) the apiserver, with metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use scim_protocol::{ResourceKind, ScimError};
use serde_json::Value;

use crate::http::ApiError;
use crate::metrics::{ApiLabels, Metrics};
use crate::watch::api_resource;

/// apiserver access.
#[derive(Clone)]
pub struct Store {
    client: Client,
    metrics: Arc<Metrics>,
}

/// Status code of a kube API error, if it is one.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Whether the error is an AlreadyExists (409 with reason AlreadyExists).
pub fn already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// Whether the error is an optimistic-concurrency conflict.
pub fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason != "AlreadyExists")
}

/// Maps an apiserver failure to a SCIM error.
pub fn to_api_error(e: &kube::Error) -> ApiError {
    match e {
        kube::Error::Api(s) if s.code == 404 => {
            ApiError::from(ScimError::NotFound("the resource does not exist".into()))
        }
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
            ApiError::from(ScimError::InvalidValue(format!(
                "the resource was rejected by the cluster: {}",
                s.message
            )))
        }
        kube::Error::Api(s) if s.code == 403 => {
            tracing::error!(message = %s.message, "the server is not allowed to write");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                "the server is not permitted to store this resource",
            )
        }
        e => {
            tracing::warn!(error = %e, "apiserver call failed");
            ApiError::unavailable("the storage backend is unavailable; retry later", 5)
        }
    }
}

impl Store {
    /// New store.
    pub fn new(client: Client, metrics: Arc<Metrics>) -> Store {
        Store { client, metrics }
    }

    fn api(&self, kind: ResourceKind, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &api_resource(kind))
    }

    fn observe(&self, verb: &str, kind: ResourceKind, start: Instant) {
        let l = ApiLabels {
            verb: verb.into(),
            kind: kind.name().into(),
        };
        self.metrics.api_calls.get_or_create(&l).inc();
        self.metrics
            .api_latency
            .get_or_create(&l)
            .observe(start.elapsed().as_secs_f64());
    }

    /// Creates an object.
    pub async fn create(
        &self,
        kind: ResourceKind,
        ns: &str,
        obj: &DynamicObject,
    ) -> Result<DynamicObject, kube::Error> {
        let t = Instant::now();
        let r = self.api(kind, ns).create(&PostParams::default(), obj).await;
        self.observe("create", kind, t);
        r
    }

    /// JSON merge patch.
    pub async fn patch(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
        body: &Value,
    ) -> Result<DynamicObject, kube::Error> {
        let t = Instant::now();
        let r = self
            .api(kind, ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(body))
            .await;
        self.observe("patch", kind, t);
        if r.as_ref().err().is_some_and(conflict) {
            self.metrics.conflicts.inc();
        }
        r
    }

    /// Reads an object (only after a conflict or AlreadyExists).
    pub async fn get(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, kube::Error> {
        let t = Instant::now();
        let r = self.api(kind, ns).get_opt(name).await;
        self.observe("get", kind, t);
        r
    }

    /// Deletes an object; returns the last resourceVersion if the apiserver reports it.
    pub async fn delete(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
    ) -> Result<Option<String>, kube::Error> {
        let t = Instant::now();
        let r = self
            .api(kind, ns)
            .delete(name, &DeleteParams::default())
            .await;
        self.observe("delete", kind, t);
        Ok(r?.left().and_then(|o| o.metadata.resource_version))
    }
}

//! [`Storage`] on the apiserver, with metrics. kube errors become [`StoreError`]s here, once.

use std::sync::Arc;
use std::time::Instant;

use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use scim_protocol::ResourceKind;
use serde_json::Value;

use crate::metrics::{ApiLabels, Metrics};
use crate::storage::{Storage, StoreError};
use crate::stored_object::StoredObject;
use crate::watch::api_resource;

/// ScimUsers and ScimGroups on the apiserver.
#[derive(Clone)]
pub struct KubeStore {
    client: Client,
    metrics: Arc<Metrics>,
}

impl From<kube::Error> for StoreError {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(s) if s.is_not_found() => StoreError::NotFound,
            kube::Error::Api(s) if s.is_already_exists() => StoreError::AlreadyExists,
            kube::Error::Api(s) if s.is_conflict() => StoreError::Conflict,
            kube::Error::Api(s) if s.is_invalid() || s.code == 400 => {
                StoreError::Rejected(s.message.clone())
            }
            kube::Error::Api(s) if s.is_forbidden() => StoreError::Forbidden(s.message.clone()),
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

impl KubeStore {
    /// A store writing through `client`.
    pub fn new(client: Client, metrics: Arc<Metrics>) -> KubeStore {
        KubeStore { client, metrics }
    }

    fn api(&self, kind: ResourceKind, ns: &str) -> Api<StoredObject> {
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
}

impl Storage for KubeStore {
    async fn create(
        &self,
        kind: ResourceKind,
        ns: &str,
        obj: DynamicObject,
    ) -> Result<DynamicObject, StoreError> {
        let t = Instant::now();
        let body = StoredObject::new(obj);
        let r = self
            .api(kind, ns)
            .create(&PostParams::default(), &body)
            .await;
        self.observe("create", kind, t);
        Ok(r?.into_inner())
    }

    async fn patch(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
        body: &Value,
    ) -> Result<DynamicObject, StoreError> {
        let t = Instant::now();
        let r = self
            .api(kind, ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(body))
            .await;
        self.observe("patch", kind, t);
        let r = r.map(StoredObject::into_inner).map_err(StoreError::from);
        if r.as_ref().err() == Some(&StoreError::Conflict) {
            self.metrics.conflicts.inc();
        }
        r
    }

    async fn get(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, StoreError> {
        let t = Instant::now();
        let r = self.api(kind, ns).get_opt(name).await;
        self.observe("get", kind, t);
        Ok(r?.map(StoredObject::into_inner))
    }

    async fn list_labelled(
        &self,
        kind: ResourceKind,
        ns: &str,
        key: &str,
    ) -> Result<Vec<DynamicObject>, StoreError> {
        let t = Instant::now();
        let r = self
            .api(kind, ns)
            .list(&ListParams::default().labels(&format!("{key}=true")))
            .await;
        self.observe("list", kind, t);
        Ok(r?.items.into_iter().map(StoredObject::into_inner).collect())
    }

    async fn names_labelled(
        &self,
        kind: ResourceKind,
        ns: &str,
        key: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let t = Instant::now();
        let limit = u32::try_from(limit.max(1)).unwrap_or(u32::MAX);
        let r = self
            .api(kind, ns)
            .list_metadata(&ListParams::default().labels(key).limit(limit))
            .await;
        self.observe("list", kind, t);
        Ok(r?
            .items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect())
    }

    async fn delete(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        let t = Instant::now();
        let r = self
            .api(kind, ns)
            .delete(name, &DeleteParams::default())
            .await;
        self.observe("delete", kind, t);
        Ok(r?
            .left()
            .and_then(|o| o.into_inner().metadata.resource_version))
    }
}

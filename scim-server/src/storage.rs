//! The storage seam: what the directory service needs from wherever users and groups live.
//!
//! [`crate::kube_store::KubeStore`] implements it on the apiserver; unit tests use the
//! in-memory store in `memory_store.rs`. Objects travel as the ScimUser / ScimGroup objects
//! the apiserver stores, so the cache applies write results and watch events alike. They are
//! `DynamicObject`s because the cache reads `.status` as the SCIM resource's JSON: the typed
//! status would add a conversion to every watch event for nothing. New objects are built typed
//! (`directory/objects.rs`).

use std::future::Future;
use std::time::Duration;

use kube::api::DynamicObject;
use scim_protocol::ResourceKind;
use serde_json::Value;

/// Why a storage call failed, in the terms the directory service decides on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No object with that name.
    #[error("not found")]
    NotFound,
    /// A create found the name taken.
    #[error("already exists")]
    AlreadyExists,
    /// The resourceVersion precondition of a write did not hold.
    #[error("changed concurrently")]
    Conflict,
    /// The object is invalid (e.g. a schema violation).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The server is not allowed to do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Anything else: the backend could not be reached or failed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

tokio::task_local! {
    /// When the SCIM request being served must be answered: a store retries a failed call
    /// only while another attempt fits before it.
    static DEADLINE: tokio::time::Instant;
}

/// Runs `f` (a request's processing) with `deadline` visible to the store's retries.
pub async fn with_deadline<F: Future>(deadline: tokio::time::Instant, f: F) -> F::Output {
    DEADLINE.scope(deadline, f).await
}

/// The current request's deadline, or `now + budget` outside a request (background work).
pub fn deadline_or(budget: Duration) -> tokio::time::Instant {
    DEADLINE
        .try_with(|d| *d)
        .unwrap_or_else(|_| tokio::time::Instant::now() + budget)
}

/// Reads and writes of ScimUser / ScimGroup objects in one namespace at a time.
pub trait Storage: Send + Sync + 'static {
    /// Creates an object; [`StoreError::AlreadyExists`] if its name is taken.
    fn create(
        &self,
        kind: ResourceKind,
        ns: &str,
        obj: DynamicObject,
    ) -> impl Future<Output = Result<DynamicObject, StoreError>> + Send;

    /// Applies a JSON merge patch (RFC 7386). A `metadata.resourceVersion` in the patch is a
    /// precondition ([`StoreError::Conflict`] when it does not hold). A patch that changes
    /// nothing stores nothing and keeps the resourceVersion (as the apiserver does), so a
    /// patch of only `metadata.resourceVersion` proves that version current at no write.
    fn patch(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
        body: &Value,
    ) -> impl Future<Output = Result<DynamicObject, StoreError>> + Send;

    /// Reads an object; `None` if there is none.
    fn get(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<DynamicObject>, StoreError>> + Send;

    /// The objects of `kind` in `ns` that carry label `key` with value `true`, read from the
    /// backend (not a cache): a group's members as every replica has written them.
    fn list_labelled(
        &self,
        kind: ResourceKind,
        ns: &str,
        key: &str,
    ) -> impl Future<Output = Result<Vec<DynamicObject>, StoreError>> + Send;

    /// Names of at most `limit` objects of `kind` in `ns` that carry label `key` (any value),
    /// read from the backend: the next batch of the membership cleanup.
    fn names_labelled(
        &self,
        kind: ResourceKind,
        ns: &str,
        key: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Deletes an object; returns its last resourceVersion where the backend reports it. An
    /// object with finalizers is only marked (`deletionTimestamp`) and stays until they are
    /// removed; the resourceVersion is then that of the marked object.
    fn delete(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}

/// One store shared by several services (the unit tests' replicas over one backend).
impl<T: Storage> Storage for std::sync::Arc<T> {
    fn create(
        &self,
        kind: ResourceKind,
        ns: &str,
        obj: DynamicObject,
    ) -> impl Future<Output = Result<DynamicObject, StoreError>> + Send {
        (**self).create(kind, ns, obj)
    }

    fn patch(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
        body: &Value,
    ) -> impl Future<Output = Result<DynamicObject, StoreError>> + Send {
        (**self).patch(kind, ns, name, body)
    }

    fn get(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<DynamicObject>, StoreError>> + Send {
        (**self).get(kind, ns, name)
    }

    fn list_labelled(
        &self,
        kind: ResourceKind,
        ns: &str,
        key: &str,
    ) -> impl Future<Output = Result<Vec<DynamicObject>, StoreError>> + Send {
        (**self).list_labelled(kind, ns, key)
    }

    fn names_labelled(
        &self,
        kind: ResourceKind,
        ns: &str,
        key: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        (**self).names_labelled(kind, ns, key, limit)
    }

    fn delete(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        (**self).delete(kind, ns, name)
    }
}

/// A claim on a one-time id (a client assertion's) in the backend every replica shares, so
/// that the id is used once across replicas, not once per replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceClaim {
    /// The claim's object name, derived from the id (see `auth::federation::claim_name`).
    pub name: String,
    /// The directory whose token endpoint accepted the id.
    pub directory: String,
    /// Unix second after which the id can no longer be accepted, so the claim may go.
    pub expires: i64,
}

/// One-time claims in a namespace: the apiserver's `coordination.k8s.io` Leases
/// ([`crate::kube_store::KubeStore`]), or a map in unit tests. Object-safe (boxed futures),
/// since the token endpoint is not generic over the store.
pub trait ClaimStore: Send + Sync + 'static {
    /// Creates the claim atomically: [`StoreError::AlreadyExists`] if it is held already (the
    /// id was used), `Ok` only when the backend confirmed the create.
    fn claim<'a>(
        &'a self,
        ns: &'a str,
        claim: &'a OnceClaim,
    ) -> futures::future::BoxFuture<'a, Result<(), StoreError>>;

    /// Deletes claims in `ns` that expired before `now`, looking at no more than `limit` of
    /// them; returns how many it deleted.
    fn sweep<'a>(
        &'a self,
        ns: &'a str,
        now: i64,
        limit: usize,
    ) -> futures::future::BoxFuture<'a, Result<usize, StoreError>>;
}

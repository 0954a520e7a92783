//! The directory service: what SCIM means for one directory's users and groups, with no HTTP.
//!
//! It keeps the server-unique attribute unique, picks deterministic ids (so a POST re-sent
//! after a late answer finds its own object), retries on write conflicts, fans group
//! membership out to the members' labels, and applies its own write results to the cache so a
//! client reads its writes at once. Storage is reached through [`Storage`]; the unit tests
//! (`tests.rs`) run it on the in-memory store.
//!
//! This file: the service, its reads and its delegates to `crate::auth`; `write.rs`: POST,
//! PATCH/PUT, DELETE and the deletion guard's hold; `unique.rs`: the unique name;
//! `members.rs`: membership labels; `cleanup/`: the background label worker; `objects.rs`:
//! object and patch bodies; `list.rs`: queries.

mod cleanup;
mod list;
mod members;
mod objects;
mod unique;
mod write;

use std::sync::Arc;

use kube_scim_runtime::verifier::SharedKeyRing;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use scim_protocol::{ListQuery, PatchRequest, Resource, ResourceKind, ScimError};
use serde_json::Value;

use crate::auth::entra::EntraVerifier;
use crate::auth::federation::FederationVerifier;
use crate::auth::{Authenticator, oauth};
pub use crate::cache::DirRef;
use crate::cache::{Cache, DirInfo, Entry, directory_of};
use crate::error::Error;
use crate::metrics::LabelWriteLabels;
use crate::render::{self, Locations};
use crate::storage::Storage;

pub use cleanup::CleanupSettings;
pub use objects::candidate_id;

/// Limits the service works within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest page of a list.
    pub max_results: usize,
    /// Membership label writes in flight per group change.
    pub member_write_concurrency: usize,
    /// Retries of an update after a resourceVersion conflict.
    pub conflict_retries: usize,
    /// A member-list replacement (or a new group) that would write more membership labels than
    /// this is recorded on the group and written in the background (see `cleanup/`).
    pub inline_member_writes: usize,
}

/// A change to an existing resource.
pub enum Change {
    /// PATCH operations.
    Patch(PatchRequest),
    /// PUT: the new resource.
    Replace(Value),
}

/// What the caller wants back after a write.
pub enum Reply<'a> {
    /// Nothing (the caller answers 204).
    Nothing,
    /// The resource, rendered at these locations, with a group's members if asked.
    Resource {
        /// Where resources live.
        at: &'a Locations,
        /// Compute a group's `members`.
        with_members: bool,
    },
}

/// The directory service over storage `S`.
pub struct DirectoryService<S> {
    cache: Arc<Cache>,
    store: S,
    limits: Limits,
    /// Who may use which directory.
    auth: Authenticator,
    /// Labels the cleanup worker writes, counted (unregistered unless `with_label_writes`).
    label_writes: Family<LabelWriteLabels, Counter>,
}

fn not_found(kind: ResourceKind, id: &str) -> Error {
    ScimError::NotFound(format!("no {} with id {id}", kind.name())).into()
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

impl<S: Storage> DirectoryService<S> {
    /// A service over `cache` (fed by watchers and by this service's writes) and `store`,
    /// checking bearer tokens with the verifier keys in force in `keys`.
    pub fn new(cache: Arc<Cache>, store: S, limits: Limits, keys: SharedKeyRing) -> Self {
        DirectoryService {
            auth: Authenticator::new(cache.clone(), keys),
            cache,
            store,
            limits,
            label_writes: Family::default(),
        }
    }

    /// Counts the membership labels the cleanup worker writes in `family` (a metric).
    pub fn with_label_writes(mut self, family: Family<LabelWriteLabels, Counter>) -> Self {
        self.label_writes = family;
        self
    }

    /// Also accepts Entra-issued tokens (for directories with method `EntraToken`), checked by
    /// `entra`.
    pub fn with_entra(mut self, entra: Arc<EntraVerifier>) -> Self {
        self.auth.set_entra(entra);
        self
    }

    /// Also exchanges Entra-signed client assertions for access tokens (for directories with
    /// method `WorkloadIdentityFederation`), checked by `federation`.
    pub fn with_federation(mut self, federation: Arc<FederationVerifier>) -> Self {
        self.auth.set_federation(federation);
        self
    }

    /// The cache the service reads.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The directory, if it exists, is ready and `token` opens it (see
    /// [`Authenticator::authorize`]).
    pub async fn authorize(
        &self,
        dir: DirRef<'_>,
        token: Option<&str>,
    ) -> Result<Arc<DirInfo>, Error> {
        self.auth.authorize(dir, token).await
    }

    /// Answers a token request to the directory's OAuth 2.0 token endpoint (see
    /// `auth/endpoint.rs`).
    pub async fn issue_access_token(
        &self,
        dir: DirRef<'_>,
        request: &oauth::TokenRequest,
    ) -> Result<oauth::TokenAnswer, oauth::TokenError> {
        self.auth.issue_access_token(dir, request).await
    }

    /// Like [`Self::authorize`], for a write: a suspended directory (`spec.suspend`) refuses it
    /// with 503, which the identity provider retries later (see docs/operations.md).
    pub async fn authorize_write(
        &self,
        dir: DirRef<'_>,
        token: Option<&str>,
    ) -> Result<Arc<DirInfo>, Error> {
        let info = self.authorize(dir, token).await?;
        if info.suspended {
            return Err(Error::Suspended(dir.label()));
        }
        Ok(info)
    }

    /// One resource, read from the store first: another replica may have written or deleted it
    /// a moment ago, before this replica's watch heard (a client that deleted a user through
    /// one replica must not read it back through another).
    pub async fn get(
        &self,
        dir: DirRef<'_>,
        kind: ResourceKind,
        id: &str,
        at: &Locations,
        with_members: bool,
    ) -> Result<Resource, Error> {
        self.refresh(dir, kind, id).await?;
        self.cached(dir, kind, id, at, with_members)
    }

    /// One resource as this replica's cache holds it.
    fn cached(
        &self,
        dir: DirRef<'_>,
        kind: ResourceKind,
        id: &str,
        at: &Locations,
        with_members: bool,
    ) -> Result<Resource, Error> {
        self.cache
            .read(dir.ns, dir.name, |d| {
                d.get(kind, id)
                    .map(|e| render::resource(d, e, at, with_members))
            })
            .ok_or_else(|| not_found(kind, id))?
            .map_err(Error::from)
    }

    /// Brings the cache's copy of one object up to the store's current version (a newer copy
    /// the watch has not delivered yet, or its deletion).
    async fn refresh(&self, dir: DirRef<'_>, kind: ResourceKind, id: &str) -> Result<(), Error> {
        match self.store.get(kind, dir.ns, id).await? {
            Some(obj) if directory_of(&obj).as_deref() == Some(dir.name) => {
                self.cache.apply_object(kind, &obj);
            }
            // Another directory's object: this directory's reads answer 404, as for none.
            Some(_) => {}
            None => {
                if let Some(held) = self.entry(dir, kind, id) {
                    self.cache
                        .delete_object(kind, dir.ns, dir.name, id, held.rv);
                }
            }
        }
        Ok(())
    }

    /// The cached entry, or, when the cache does not hold it, the store's (another replica may
    /// have created it a moment ago).
    async fn entry_or_fresh(
        &self,
        dir: DirRef<'_>,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<Arc<Entry>>, Error> {
        if let Some(entry) = self.entry(dir, kind, id) {
            return Ok(Some(entry));
        }
        self.refresh(dir, kind, id).await?;
        Ok(self.entry(dir, kind, id))
    }

    fn entry(&self, dir: DirRef<'_>, kind: ResourceKind, id: &str) -> Option<Arc<Entry>> {
        self.cache
            .read(dir.ns, dir.name, |d| d.get(kind, id).cloned())
    }

    /// GET/POST .search: the ListResponse of `kinds` for `q`.
    pub fn list(
        &self,
        dir: DirRef<'_>,
        kinds: &[ResourceKind],
        q: &ListQuery,
        at: &Locations,
    ) -> Result<Value, Error> {
        let max = self.limits.max_results;
        Ok(self
            .cache
            .read(dir.ns, dir.name, |d| list::run(d, kinds, q, at, max))?)
    }
}

#[cfg(test)]
mod cleanup_tests;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod list_tests;
#[cfg(test)]
mod members_tests;
#[cfg(test)]
mod unique_tests;
#[cfg(test)]
mod write_tests;

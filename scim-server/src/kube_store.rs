//! [`Storage`] on the apiserver, with metrics. kube errors become [`StoreError`]s here, once.
//!
//! Every call is retried here, at the seam, when the apiserver's answer is worth another
//! attempt (`retry.rs`: 429 from API Priority and Fairness, 503/504, etcd timeouts, lost
//! connections), within the SCIM request's deadline, so no caller sees a transient failure as
//! "the storage backend is unavailable". Every failed answer is logged with its code, reason
//! and message, and every retry is counted (`kube_scim_apiserver_retries_total`).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::client::ClientBuilder;
use kube::{Api, Client};
use scim_protocol::ResourceKind;
use serde_json::Value;
use tokio::sync::Semaphore;
use tower::BoxError;

use crate::metrics::{ApiLabels, Metrics, RetryLabels};
use crate::retry::{self, Backoff, Failure};
use crate::storage::{self, Storage, StoreError};
use crate::stored_object::StoredObject;
use crate::watch::api_resource;

/// ScimUsers and ScimGroups on the apiserver.
#[derive(Clone)]
pub struct KubeStore {
    client: Client,
    metrics: Arc<Metrics>,
    backoff: Backoff,
    /// apiserver calls in flight at once, across every request's fan-out and the background
    /// worker: a burst of group changes queues here rather than at the apiserver, whose
    /// priority level would answer an overflow with 429.
    in_flight: Arc<Semaphore>,
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

/// The store's client on `config`: without kube-rs's own retry layer (the store retries, see
/// `retry.rs`; two layers would multiply the attempts past the request's deadline), and with
/// the Retry-After of a plain-text answer kept (see [`retry_after_status`]).
pub fn client(mut config: kube::Config) -> Result<Client, kube::Error> {
    config.default_retry = false;
    Ok(keep_retry_after(ClientBuilder::try_from(config)?))
}

/// `builder`'s client with [`retry_after_status`] on every response.
pub fn keep_retry_after<S, B>(builder: ClientBuilder<S>) -> Client
where
    S: tower::Service<axum::http::Request<kube::client::Body>, Response = Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    builder
        .with_layer(&tower::util::AndThenLayer::new(retry_after_status::<B>))
        .build()
}

/// API Priority and Fairness answers 429 in plain text with the wait in a `Retry-After`
/// header, which kube-rs drops (it keeps only an error body that parses as a Status). Such an
/// answer's body is rewritten into the Status the apiserver sends elsewhere (the text as the
/// message, the header as `details.retryAfterSeconds`), so the retry can honour it.
async fn retry_after_status<B>(
    res: Response<B>,
) -> Result<Response<UnsyncBoxBody<Bytes, BoxError>>, BoxError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let reason = match res.status().as_u16() {
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "",
    };
    let secs = res
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    let json = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (Some(secs), false, false) = (secs, json, reason.is_empty()) else {
        return Ok(res.map(|b| b.map_err(Into::into).boxed_unsync()));
    };
    let code = res.status().as_u16();
    let (mut parts, body) = res.into_parts();
    let text = Limited::new(body, 64 * 1024).collect().await?.to_bytes();
    let status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": String::from_utf8_lossy(&text).trim(),
        "details": {"retryAfterSeconds": secs},
    });
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = Full::new(Bytes::from(serde_json::to_vec(&status)?))
        .map_err(|never| match never {})
        .boxed_unsync();
    Ok(Response::from_parts(parts, body))
}

/// `code`, `reason` and `message` of a failed call, for the log.
fn describe(e: &kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => {
            // The whole chain: "service error" alone does not say that a connection was reset.
            let mut message = other.to_string();
            let mut cur = std::error::Error::source(other);
            while let Some(s) = cur {
                message.push_str(": ");
                message.push_str(&s.to_string());
                cur = s.source();
            }
            (0, "transport".into(), message)
        }
    }
}

/// An object's content as this server writes it on create: `spec`, `status` (which carries
/// the creating request's timestamps) and labels.
fn same_content(a: &DynamicObject, b: &DynamicObject) -> bool {
    a.data.get("spec") == b.data.get("spec")
        && a.data.get("status") == b.data.get("status")
        && a.metadata.labels == b.metadata.labels
}

/// One call's answer and whether an earlier attempt may have taken effect.
struct Answer<T> {
    result: Result<T, kube::Error>,
    maybe_applied: bool,
}

impl KubeStore {
    /// A store writing through `client` (see [`client`]), at most `max_in_flight` calls at once.
    pub fn new(client: Client, metrics: Arc<Metrics>, max_in_flight: usize) -> KubeStore {
        KubeStore {
            client,
            metrics,
            backoff: Backoff::default(),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    fn api(&self, kind: ResourceKind, ns: &str) -> Api<StoredObject> {
        Api::namespaced_with(self.client.clone(), ns, &api_resource(kind))
    }

    fn observe(&self, verb: &str, kind: &str, start: Instant) {
        let l = ApiLabels {
            verb: verb.into(),
            kind: kind.into(),
        };
        self.metrics.api_calls.get_or_create(&l).inc();
        self.metrics
            .api_latency
            .get_or_create(&l)
            .observe(start.elapsed().as_secs_f64());
    }

    /// Runs `send` until it succeeds, fails for good, or no further attempt fits before the
    /// deadline (the request's, or the background budget outside a request).
    async fn call<T, F, Fut>(
        &self,
        verb: &'static str,
        kind: &str,
        ns: &str,
        name: &str,
        mut send: F,
    ) -> Answer<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let deadline = storage::deadline_or(self.backoff.background_budget);
        let mut maybe_applied = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = {
                // Never closed, so acquiring cannot fail; a failure would only lift the bound.
                let _slot = self.in_flight.acquire().await.ok();
                let t = Instant::now();
                let r = send().await;
                self.observe(verb, kind, t);
                r
            };
            let e = match result {
                Ok(v) => {
                    return Answer {
                        result: Ok(v),
                        maybe_applied,
                    };
                }
                Err(e) => e,
            };
            let failure = retry::classify(&e);
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let delay = self
                .backoff
                .next_delay(failure, attempt, remaining, retry::jitter());
            let (code, reason, message) = describe(&e);
            let retry_in_ms = delay.map(|d| d.as_millis() as u64);
            let expected = matches!(&e, kube::Error::Api(s)
                if s.is_not_found() || s.is_conflict() || s.is_already_exists());
            if expected {
                // Answers the directory service decides on (optimistic concurrency, a create
                // on a taken id): not failures of the backend.
                tracing::debug!(verb, kind, namespace = ns, name, code, %reason, %message, attempt, "apiserver answer");
            } else {
                tracing::warn!(
                    verb,
                    kind,
                    namespace = ns,
                    name,
                    code,
                    %reason,
                    %message,
                    attempt,
                    retry_in_ms,
                    "apiserver call failed"
                );
            }
            let Some(delay) = delay else {
                return Answer {
                    result: Err(e),
                    maybe_applied,
                };
            };
            maybe_applied |= matches!(failure, Failure::MaybeApplied { .. });
            self.metrics
                .api_retries
                .get_or_create(&RetryLabels {
                    verb: verb.into(),
                    kind: kind.into(),
                    cause: Failure::cause(&e).into(),
                })
                .inc();
            tokio::time::sleep(delay).await;
        }
    }
}

impl Storage for KubeStore {
    async fn create(
        &self,
        kind: ResourceKind,
        ns: &str,
        obj: DynamicObject,
    ) -> Result<DynamicObject, StoreError> {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let body = StoredObject::new(obj);
        let (api, pp) = (&self.api(kind, ns), &PostParams::default());
        let body_ref = &body;
        let a = self
            .call("create", kind.name(), ns, &name, move || {
                api.create(pp, body_ref)
            })
            .await;
        match a.result {
            Ok(o) => Ok(o.into_inner()),
            Err(kube::Error::Api(s)) if a.maybe_applied && s.is_already_exists() => {
                // An earlier attempt failed in a way that may have stored the object (a lost
                // answer, an etcd timeout): if what is stored is what was sent (its status
                // carries this request's timestamps), the create succeeded. Anything else is
                // another writer's object: the name is taken.
                match self.get(kind, ns, &name).await? {
                    Some(o) if same_content(&o, body.inner()) => {
                        tracing::info!(
                            kind = kind.name(),
                            namespace = ns,
                            name,
                            "a create retried after a lost answer found its own object"
                        );
                        Ok(o)
                    }
                    _ => Err(StoreError::AlreadyExists),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn patch(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
        body: &Value,
    ) -> Result<DynamicObject, StoreError> {
        // A merge patch is idempotent, or carries a resourceVersion precondition: sent again
        // after a lost answer it stores the same thing, or conflicts and the caller re-reads.
        let (api, pp, patch) = (
            &self.api(kind, ns),
            &PatchParams::default(),
            &Patch::Merge(body),
        );
        let a = self
            .call("patch", kind.name(), ns, name, move || {
                api.patch(name, pp, patch)
            })
            .await;
        let r = a
            .result
            .map(StoredObject::into_inner)
            .map_err(StoreError::from);
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
        let api = &self.api(kind, ns);
        let a = self
            .call("get", kind.name(), ns, name, move || api.get_opt(name))
            .await;
        Ok(a.result?.map(StoredObject::into_inner))
    }

    async fn list_labelled(
        &self,
        kind: ResourceKind,
        ns: &str,
        key: &str,
    ) -> Result<Vec<DynamicObject>, StoreError> {
        let (api, lp) = (
            &self.api(kind, ns),
            &ListParams::default().labels(&format!("{key}=true")),
        );
        let a = self
            .call("list", kind.name(), ns, "", move || api.list(lp))
            .await;
        Ok(a.result?
            .items
            .into_iter()
            .map(StoredObject::into_inner)
            .collect())
    }

    async fn names_labelled(
        &self,
        kind: ResourceKind,
        ns: &str,
        key: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let limit = u32::try_from(limit.max(1)).unwrap_or(u32::MAX);
        let (api, lp) = (
            &self.api(kind, ns),
            &ListParams::default().labels(key).limit(limit),
        );
        let a = self
            .call("list", kind.name(), ns, "", move || api.list_metadata(lp))
            .await;
        Ok(a.result?
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
        let (api, dp) = (&self.api(kind, ns), &DeleteParams::default());
        let a = self
            .call("delete", kind.name(), ns, name, move || {
                api.delete(name, dp)
            })
            .await;
        match a.result {
            Ok(r) => Ok(r
                .left()
                .and_then(|o| o.into_inner().metadata.resource_version)),
            // An earlier attempt may have deleted it and lost the answer: it is gone, as asked.
            Err(kube::Error::Api(s)) if a.maybe_applied && s.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Labels of every one-time claim Lease, to list them for the sweep.
pub const CLAIM_SELECTOR: &str =
    "app.kubernetes.io/managed-by=kube-scim,app.kubernetes.io/component=assertion-claim";
/// Annotation: the Unix second after which the claimed id can no longer be accepted.
pub const CLAIM_EXPIRES: &str = "kubescim.io/expires";
/// Annotation: a random id of the create, to recognise a Lease this replica created when the
/// answer to its create was lost and the retry found the name taken.
const CLAIM_NONCE: &str = "kubescim.io/claim";
/// Lease kind label of the apiserver metrics and logs.
const LEASE: &str = "Lease";

fn claim_lease(claim: &storage::OnceClaim, nonce: &str) -> Lease {
    let labels = CLAIM_SELECTOR
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Lease {
        metadata: ObjectMeta {
            name: Some(claim.name.clone()),
            labels: Some(labels),
            annotations: Some(
                [
                    (CLAIM_EXPIRES.to_string(), claim.expires.to_string()),
                    ("kubescim.io/directory".to_string(), claim.directory.clone()),
                    (CLAIM_NONCE.to_string(), nonce.to_string()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: None,
    }
}

/// Whether a claim Lease expired before `now`. One without a readable expiry is kept: it may
/// be another writer's object, which the sweep must not delete.
pub fn claim_expired(lease: &ObjectMeta, now: i64) -> bool {
    lease
        .annotations
        .as_ref()
        .and_then(|a| a.get(CLAIM_EXPIRES))
        .and_then(|v| v.parse::<i64>().ok())
        .is_some_and(|exp| exp < now)
}

impl storage::ClaimStore for KubeStore {
    fn claim<'a>(
        &'a self,
        ns: &'a str,
        claim: &'a storage::OnceClaim,
    ) -> futures::future::BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let api: Api<Lease> = Api::namespaced(self.client.clone(), ns);
            let nonce = uuid::Uuid::new_v4().to_string();
            let body = claim_lease(claim, &nonce);
            let (api, pp, body) = (&api, &PostParams::default(), &body);
            let a = self
                .call("create", LEASE, ns, &claim.name, move || {
                    api.create(pp, body)
                })
                .await;
            match a.result {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if a.maybe_applied && s.is_already_exists() => {
                    // A lost answer: ours if it carries this create's nonce, else the id was
                    // used by another replica (or the name is taken): refused either way.
                    let own = self
                        .call("get", LEASE, ns, &claim.name, move || {
                            api.get_opt(&claim.name)
                        })
                        .await
                        .result?
                        .and_then(|l| l.metadata.annotations)
                        .and_then(|a| a.get(CLAIM_NONCE).cloned())
                        .is_some_and(|n| n == nonce);
                    if own {
                        Ok(())
                    } else {
                        Err(StoreError::AlreadyExists)
                    }
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    fn sweep<'a>(
        &'a self,
        ns: &'a str,
        now: i64,
        limit: usize,
    ) -> futures::future::BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let api: Api<Lease> = Api::namespaced(self.client.clone(), ns);
            let lp = ListParams::default()
                .labels(CLAIM_SELECTOR)
                .limit(limit.max(1) as u32);
            let (api, lp) = (&api, &lp);
            let leases = self
                .call("list", LEASE, ns, "", move || api.list_metadata(lp))
                .await
                .result?;
            let mut deleted = 0;
            for lease in leases
                .items
                .iter()
                .filter(|l| claim_expired(&l.metadata, now))
            {
                let Some(name) = lease.metadata.name.as_deref() else {
                    continue;
                };
                // Only the Lease that was listed as expired: one re-created since under the
                // same name is not this one.
                let dp = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid: lease.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                let dp = &dp;
                match self
                    .call("delete", LEASE, ns, name, move || api.delete(name, dp))
                    .await
                    .result
                {
                    Ok(_) => deleted += 1,
                    // Another replica's sweep was first, or the Lease was re-created.
                    Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(deleted)
        })
    }
}

#[cfg(test)]
#[path = "kube_store_tests.rs"]
mod tests;

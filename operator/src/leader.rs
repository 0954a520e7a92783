//! Leader election on a `coordination.k8s.io/v1` Lease, following client-go's
//! `leaderelection` algorithm (kube-runtime 5 has no leader election of its own).
//!
//! - A candidate takes the Lease when nobody holds it, when it is released (empty holder), or
//!   when the holder has not renewed it for `leaseDurationSeconds` *as measured by the
//!   candidate's own monotonic clock* since it last saw the record change — so clock skew
//!   between nodes does not matter.
//! - Every write is a compare-and-swap on `resourceVersion`, so two candidates can never both
//!   win the same round.
//! - The leader renews every retry period and gives up when it could not renew within the
//!   renew deadline (which must be shorter than the lease duration); on a clean shutdown it
//!   releases the Lease so a standby takes over at its next retry.
//! - A renew that loses a compare-and-swap (409: something else wrote the Lease, e.g. an
//!   apiserver retry of our own write) is retried until the renew deadline, as client-go does;
//!   only a Lease seen held by another identity ends leadership at once.
//!
//! Kept in-house rather than taking `kube-lease-manager`: it is small, its semantics (the
//! monotonic-clock expiry, the 409 rule above, release on shutdown) are pinned by the unit
//! tests below, and it adds no dependency.

use std::time::Duration;

use tokio::time::Instant;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

/// Timing of the election.
#[derive(Clone, Debug)]
pub struct LeaseTiming {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// One candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
    /// The last Lease spec seen and when (local monotonic clock) it was first seen.
    observed: Option<(LeaseSpec, Instant)>,
}

/// A lost compare-and-swap: the Lease changed since it was read, or was created meanwhile.
fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}

/// The outcome of one acquire-or-renew round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// This candidate holds the Lease (acquired or renewed).
    Leading,
    /// Another identity holds an unexpired Lease.
    HeldByOther,
    /// Our write lost a compare-and-swap (409); the next round reads the Lease again.
    LostRace,
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, timing: LeaseTiming) -> Self {
        Self {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            observed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.timing.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// One round: acquire the Lease or renew it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Round, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.lease_seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observed = created.spec.map(|s| (s, Instant::now()));
                    Ok(Round::Leading)
                }
                Err(e) if is_conflict(&e) => Ok(Round::LostRace),
                Err(e) => Err(e),
            };
        };

        let spec = lease.spec.clone().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|(seen, _)| *seen != spec) {
            self.observed = Some((spec.clone(), Instant::now()));
        }
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_by_other = !holder.is_empty() && holder != self.identity;
        if held_by_other {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(self.timing.lease_duration);
            let seen_at = self
                .observed
                .as_ref()
                .map(|(_, at)| *at)
                .unwrap_or_else(Instant::now);
            if seen_at.elapsed() < duration {
                return Ok(Round::HeldByOther);
            }
        }

        let mut new_spec = spec.clone();
        if holder != self.identity {
            new_spec.acquire_time = Some(now.clone());
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        new_spec.holder_identity = Some(self.identity.clone());
        new_spec.lease_duration_seconds = Some(self.lease_seconds());
        new_spec.renew_time = Some(now);
        let mut updated = lease;
        updated.spec = Some(new_spec);
        // `replace` sends the resourceVersion we read: a compare-and-swap.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &updated)
            .await
        {
            Ok(written) => {
                self.observed = written.spec.map(|s| (s, Instant::now()));
                Ok(Round::Leading)
            }
            Err(e) if is_conflict(&e) => Ok(Round::LostRace),
            Err(e) => Err(e),
        }
    }

    /// Blocks until this candidate leads, retrying every retry period; `None` if `stop`
    /// resolves first.
    pub async fn acquire(
        &mut self,
        stop: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> Option<()> {
        loop {
            // A request that hangs must not stall the candidate forever.
            match tokio::time::timeout(self.timing.renew_deadline, self.try_acquire_or_renew())
                .await
            {
                Ok(Ok(Round::Leading)) => return Some(()),
                Ok(Ok(Round::HeldByOther | Round::LostRace)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not read or write the leader Lease")
                }
                Err(_) => tracing::warn!("reading or writing the leader Lease timed out"),
            }
            tokio::select! {
                _ = &mut *stop => return None,
                _ = tokio::time::sleep(self.timing.retry_period) => {}
            }
        }
    }

    /// Renews every retry period; returns when leadership is lost: not renewed within the
    /// renew deadline (errors, timeouts and lost races are retried until then), or the Lease
    /// is seen held by someone else.
    pub async fn keep_renewing(&mut self) {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            match tokio::time::timeout(self.timing.renew_deadline, self.try_acquire_or_renew())
                .await
            {
                Ok(Ok(Round::Leading)) => last_renewal = Instant::now(),
                Ok(Ok(Round::HeldByOther)) => {
                    tracing::error!("the leader Lease was taken by another replica");
                    return;
                }
                Ok(Ok(Round::LostRace)) => {
                    tracing::warn!("renewing the leader Lease lost a race; retrying")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "could not renew the leader Lease"),
                Err(_) => tracing::warn!("renewing the leader Lease timed out"),
            }
            if last_renewal.elapsed() >= self.timing.renew_deadline {
                tracing::error!(deadline = ?self.timing.renew_deadline, "could not renew the leader Lease in time");
                return;
            }
        }
    }

    /// Gives the Lease up (empty holder) if this candidate still holds it, so a standby can
    /// take over at once.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        self.observed = None;
        Ok(())
    }
}

/// `$POD_NAME`, else the hostname, with a random suffix so two processes on one host differ.
pub fn default_identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "kube-scim-operator".into());
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{base}_{suffix}")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::{Method, Request, Response, StatusCode};
    use kube::Client;
    use kube::client::Body;
    use serde_json::{Value, json};

    use super::*;

    const TIMING: LeaseTiming = LeaseTiming {
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    };

    /// One Lease on a fake apiserver: compare-and-swap on resourceVersion, and PUT answers
    /// that can be forced (to play a lost race).
    #[derive(Default)]
    struct FakeLease {
        lease: Option<Value>,
        revision: u64,
        forced_put_statuses: Vec<u16>,
        puts: usize,
    }

    fn status(code: u16, reason: &str) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason,
               "reason": reason, "code": code})
    }

    impl FakeLease {
        fn store(&mut self, mut lease: Value) -> Value {
            self.revision += 1;
            lease["metadata"]["resourceVersion"] = json!(self.revision.to_string());
            self.lease = Some(lease.clone());
            lease
        }

        fn answer(&mut self, method: &Method, body: Value) -> (u16, Value) {
            match *method {
                Method::GET => match &self.lease {
                    Some(l) => (200, l.clone()),
                    None => (404, status(404, "NotFound")),
                },
                Method::POST if self.lease.is_some() => (409, status(409, "AlreadyExists")),
                Method::POST => (201, self.store(body)),
                Method::PUT => {
                    self.puts += 1;
                    if !self.forced_put_statuses.is_empty() {
                        let code = self.forced_put_statuses.remove(0);
                        return (code, status(code, "Conflict"));
                    }
                    let held = self
                        .lease
                        .as_ref()
                        .map(|l| l["metadata"]["resourceVersion"].clone());
                    if held != Some(body["metadata"]["resourceVersion"].clone()) {
                        return (409, status(409, "Conflict"));
                    }
                    (200, self.store(body))
                }
                _ => (405, status(405, "MethodNotAllowed")),
            }
        }

        /// Another candidate writes the Lease (takes it, or renews it).
        fn written_by(&mut self, holder: &str, renew_time: &str) {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "l", "namespace": "ns"},
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                         "renewTime": renew_time, "leaseTransitions": 3}});
            self.store(lease);
        }

        fn holder(&self) -> Option<String> {
            self.lease.as_ref()?["spec"]["holderIdentity"]
                .as_str()
                .map(str::to_string)
        }
    }

    fn elector(fake: &Arc<Mutex<FakeLease>>) -> LeaderElector {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = fake.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().clone();
                let bytes = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default();
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let (code, answer) = fake.lock().unwrap().answer(&method, body);
                send.send_response(
                    Response::builder()
                        .status(StatusCode::from_u16(code).unwrap())
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                );
            }
        });
        let api = Api::namespaced(Client::new(service, "ns"), "ns");
        LeaderElector::new(api, "l", "me", TIMING)
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_lease_is_created_then_renewed() {
        let fake = Arc::new(Mutex::new(FakeLease::default()));
        let mut me = elector(&fake);
        assert_eq!(me.try_acquire_or_renew().await.unwrap(), Round::Leading);
        assert_eq!(me.try_acquire_or_renew().await.unwrap(), Round::Leading);
        let f = fake.lock().unwrap();
        assert_eq!((f.holder().as_deref(), f.puts), (Some("me"), 1));
    }

    #[tokio::test(start_paused = true)]
    async fn another_holders_lease_is_taken_only_after_it_went_unrenewed_for_its_duration() {
        let fake = Arc::new(Mutex::new(FakeLease::default()));
        fake.lock()
            .unwrap()
            .written_by("other", "2020-01-01T00:00:00.000000Z");
        let mut me = elector(&fake);
        // Its renewTime is old, but expiry is measured on our clock from when we saw it.
        assert_eq!(me.try_acquire_or_renew().await.unwrap(), Round::HeldByOther);
        tokio::time::advance(Duration::from_secs(10)).await;
        // The holder renews: the clock starts again.
        fake.lock()
            .unwrap()
            .written_by("other", "2020-01-01T00:00:10.000000Z");
        assert_eq!(me.try_acquire_or_renew().await.unwrap(), Round::HeldByOther);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(me.try_acquire_or_renew().await.unwrap(), Round::HeldByOther);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(me.try_acquire_or_renew().await.unwrap(), Round::Leading);
        let f = fake.lock().unwrap();
        assert_eq!(f.holder().as_deref(), Some("me"));
        assert_eq!(f.lease.as_ref().unwrap()["spec"]["leaseTransitions"], 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_conflict_on_our_own_renew_is_retried_until_the_deadline() {
        let fake = Arc::new(Mutex::new(FakeLease::default()));
        let mut me = elector(&fake);
        assert_eq!(me.try_acquire_or_renew().await.unwrap(), Round::Leading);
        // Three renewals in a row lose a race (6 s < the 10 s deadline), then one succeeds.
        fake.lock().unwrap().forced_put_statuses = vec![409, 409, 409];
        let still_leading = tokio::time::timeout(Duration::from_secs(30), me.keep_renewing()).await;
        assert!(still_leading.is_err(), "leadership survived the lost races");
        assert!(fake.lock().unwrap().puts > 4);
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_failing_past_the_deadline_end_leadership() {
        let fake = Arc::new(Mutex::new(FakeLease::default()));
        let mut me = elector(&fake);
        assert_eq!(me.try_acquire_or_renew().await.unwrap(), Round::Leading);
        fake.lock().unwrap().forced_put_statuses = vec![409; 100];
        let started = Instant::now();
        me.keep_renewing().await;
        let after = started.elapsed();
        assert!(
            after >= TIMING.renew_deadline && after < TIMING.lease_duration,
            "{after:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_seen_held_by_another_ends_leadership_at_once() {
        let fake = Arc::new(Mutex::new(FakeLease::default()));
        let mut me = elector(&fake);
        assert_eq!(me.try_acquire_or_renew().await.unwrap(), Round::Leading);
        fake.lock()
            .unwrap()
            .written_by("other", "2020-01-01T00:00:00.000000Z");
        let started = Instant::now();
        me.keep_renewing().await;
        assert_eq!(started.elapsed(), TIMING.retry_period);
    }

    #[tokio::test(start_paused = true)]
    async fn release_hands_the_lease_over() {
        let fake = Arc::new(Mutex::new(FakeLease::default()));
        let mut me = elector(&fake);
        assert_eq!(me.try_acquire_or_renew().await.unwrap(), Round::Leading);
        me.release().await.unwrap();
        let f = fake.lock().unwrap();
        assert_eq!(f.holder(), None);
        assert_eq!(f.lease.as_ref().unwrap()["spec"]["leaseDurationSeconds"], 1);
    }
}

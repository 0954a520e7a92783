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

use std::time::{Duration, Instant};

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

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
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

    /// One round: acquire the Lease or renew it. `Ok(true)` while this candidate leads.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
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
                    Ok(true)
                }
                Err(e) if is_conflict(&e) => Ok(false),
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
                return Ok(false);
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
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
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
                Ok(Ok(true)) => return Some(()),
                Ok(Ok(false)) => {}
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

    /// Renews every retry period; returns when leadership is lost (not renewed within the
    /// renew deadline, or someone else holds the Lease).
    pub async fn keep_renewing(&mut self) {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            match tokio::time::timeout(self.timing.renew_deadline, self.try_acquire_or_renew())
                .await
            {
                Ok(Ok(true)) => last_renewal = Instant::now(),
                Ok(Ok(false)) => {
                    tracing::error!("the leader Lease was taken by another replica");
                    return;
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

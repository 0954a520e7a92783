//! The durable delivery state of one webhook (a transactional outbox): what events were derived
//! from (`derived`) and the events not yet acknowledged (`pending`), kept gzip'd in one Secret
//! owned by the ScimWebhook. Written at most once per checkpoint interval, never per SCIM write.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::{Deserialize, Serialize};

use super::events::{Derived, Event};

/// Key of the outbox in the Secret's data.
pub const DATA_KEY: &str = "outbox.json.gz";
/// Secret type of outbox Secrets.
pub const SECRET_TYPE: &str = "kubescim.io/webhook-outbox";
/// Largest compressed outbox written; beyond it the loop stops reading changes (a Secret holds
/// at most 1 MiB).
pub const MAX_COMPRESSED_BYTES: usize = 900 * 1024;
// The limit leaves room in a Secret (1 MiB of data) for the data key and metadata.
const _: () = assert!(MAX_COMPRESSED_BYTES + 64 * 1024 < 1024 * 1024);

/// How full an encoded outbox of `bytes` leaves the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Written; changes keep being read.
    Free,
    /// Written, but above 3/4 of the limit: no more changes are read (they are coalesced from
    /// the next re-list) until delivered events make room, so the next write still fits.
    Tight,
    /// Not written: it would not fit. Nothing is dropped: the last stored outbox stays, only
    /// events in it are sent, no changes are read, and a Warning Event `OutboxFull` is
    /// published; acknowledgements shrink `pending` until it fits again.
    Full,
}

pub fn room(bytes: usize) -> Room {
    if bytes > MAX_COMPRESSED_BYTES {
        Room::Full
    } else if bytes > MAX_COMPRESSED_BYTES * 3 / 4 {
        Room::Tight
    } else {
        Room::Free
    }
}
/// Field manager of the outbox Secret.
const MANAGER: &str = crate::reconcile::manager::WEBHOOK;

#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
pub struct Outbox {
    /// Per resource uid: the state events were last derived from.
    #[serde(default)]
    pub derived: BTreeMap<String, Derived>,
    /// Derived, not yet acknowledged, in delivery order.
    #[serde(default)]
    pub pending: VecDeque<Event>,
    /// Events dropped after `spec.retryFor` (total).
    #[serde(default)]
    pub dropped: u64,
    /// Id of the last acknowledged event.
    #[serde(default)]
    pub last_delivered: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the outbox in Secret {0} cannot be read: {1}")]
    Corrupt(String, String),
    #[error("Secret {0} is not this webhook's outbox")]
    NotOwned(String),
}

/// Whether `secret` is the outbox the operator wrote for the webhook with `webhook_uid`: owned
/// by it and of [`SECRET_TYPE`]. Anything else of the same name (created by someone who may
/// write Secrets in the namespace, perhaps before the webhook) is neither read (its "events"
/// would be signed and sent as the directory's) nor overwritten.
pub fn is_ours(secret: &Secret, webhook_uid: Option<&str>) -> bool {
    let owned = webhook_uid.is_some_and(|uid| {
        secret
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid)
    });
    owned && secret.type_.as_deref() == Some(SECRET_TYPE)
}

/// Name of the outbox Secret of webhook `name`.
pub fn secret_name(name: &str) -> String {
    // Secret names may have 253 characters; webhook names too, so keep the suffix room.
    let base: String = name.chars().take(253 - "-webhook-outbox".len()).collect();
    format!("{base}-webhook-outbox")
}

pub fn encode(outbox: &Outbox) -> Vec<u8> {
    let json = serde_json::to_vec(outbox).expect("the outbox serializes");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&json).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

pub fn decode(bytes: &[u8]) -> Result<Outbox, String> {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut json)
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&json).map_err(|e| e.to_string())
}

/// The stored outbox of the webhook `webhook` with `webhook_uid` (empty when there is none yet).
pub async fn load(
    secrets: &Api<Secret>,
    webhook: &str,
    webhook_uid: Option<&str>,
) -> Result<Outbox, OutboxError> {
    let name = secret_name(webhook);
    let Some(secret) = secrets.get_opt(&name).await? else {
        return Ok(Outbox::default());
    };
    if !is_ours(&secret, webhook_uid) {
        return Err(OutboxError::NotOwned(name));
    }
    match secret.data.as_ref().and_then(|d| d.get(DATA_KEY)) {
        None => Ok(Outbox::default()),
        Some(bytes) => decode(&bytes.0).map_err(|e| OutboxError::Corrupt(name, e)),
    }
}

/// Writes the (already encoded) outbox.
pub async fn store(
    secrets: &Api<Secret>,
    webhook: &str,
    owner: OwnerReference,
    encoded: Vec<u8>,
) -> Result<(), OutboxError> {
    let name = secret_name(webhook);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            owner_references: Some(vec![owner]),
            labels: Some(BTreeMap::from([(
                kube_scim_crds::labels::MANAGED_BY.to_string(),
                kube_scim_crds::labels::MANAGED_BY_OPERATOR.to_string(),
            )])),
            ..Default::default()
        },
        type_: Some(SECRET_TYPE.into()),
        data: Some(BTreeMap::from([(
            DATA_KEY.to_string(),
            ByteString(encoded),
        )])),
        ..Default::default()
    };
    secrets
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_webhooks_own_outbox_is_read() {
        let secret = |uid: Option<&str>, type_: &str| Secret {
            metadata: ObjectMeta {
                owner_references: uid.map(|u| {
                    vec![OwnerReference {
                        uid: u.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            type_: Some(type_.into()),
            ..Default::default()
        };
        assert!(is_ours(
            &secret(Some("uid-hook"), SECRET_TYPE),
            Some("uid-hook")
        ));
        assert!(!is_ours(&secret(None, SECRET_TYPE), Some("uid-hook")));
        assert!(!is_ours(
            &secret(Some("uid-other"), SECRET_TYPE),
            Some("uid-hook")
        ));
        assert!(!is_ours(
            &secret(Some("uid-hook"), "Opaque"),
            Some("uid-hook")
        ));
        assert!(!is_ours(&secret(Some("uid-hook"), SECRET_TYPE), None));
    }

    #[test]
    fn the_secret_size_limit_stops_reading_before_it_is_reached() {
        assert_eq!(room(0), Room::Free);
        assert_eq!(room(MAX_COMPRESSED_BYTES * 3 / 4), Room::Free);
        assert_eq!(room(MAX_COMPRESSED_BYTES * 3 / 4 + 1), Room::Tight);
        assert_eq!(room(MAX_COMPRESSED_BYTES), Room::Tight);
        assert_eq!(room(MAX_COMPRESSED_BYTES + 1), Room::Full);
    }

    /// An outbox of incompressible attributes crosses the limit: what `checkpoint` sees.
    #[test]
    fn a_backlog_of_large_events_is_full() {
        let mut outbox = Outbox::default();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut noise = || {
            (0..64)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    char::from(b'a' + (seed % 26) as u8)
                })
                .collect::<String>()
        };
        let mut i = 0;
        while room(encode(&outbox).len()) != Room::Full {
            for _ in 0..500 {
                outbox.pending.push_back(Event {
                    id: format!("evt_{i}"),
                    event: "dsync.user.updated".into(),
                    data: serde_json::json!({"job_title": noise()}),
                    created_at: "2026-01-01T00:00:00Z".into(),
                    transition: None,
                    resource: format!("uid-{i}"),
                });
                i += 1;
            }
            assert!(i < 200_000, "never full");
        }
        // Draining the oldest half makes it fit again.
        let half = outbox.pending.len() / 2;
        outbox.pending.drain(..half);
        assert_ne!(room(encode(&outbox).len()), Room::Full);
    }

    #[test]
    fn round_trips_and_compresses() {
        let mut outbox = Outbox::default();
        for i in 0..200 {
            outbox.pending.push_back(Event {
                id: format!("evt_{i}"),
                event: "dsync.user.created".into(),
                data: serde_json::json!({"username": format!("user{i}@contoso.example"), "state": "active"}),
                created_at: "2026-01-01T00:00:00Z".into(),
                transition: None,
                resource: format!("uid-{i}"),
            });
        }
        let bytes = encode(&outbox);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.pending.len(), 200);
        assert_eq!(back.pending[7].resource, "uid-7");
        assert!(bytes.len() < serde_json::to_vec(&outbox).unwrap().len() / 3);
        assert!(decode(b"not gzip").is_err());
    }
}

//! `ScimWebhook`: signed, at-least-once delivery of a directory's user and group changes to an
//! HTTP(S) receiver, as WorkOS Directory Sync compatible events (see docs/webhooks.md).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Every event type a ScimWebhook can deliver (WorkOS Directory Sync names).
pub const EVENT_TYPES: [&str; 10] = [
    "dsync.user.created",
    "dsync.user.updated",
    "dsync.user.deleted",
    "dsync.group.created",
    "dsync.group.updated",
    "dsync.group.deleted",
    "dsync.group.user_added",
    "dsync.group.user_removed",
    "dsync.activated",
    "dsync.deleted",
];

/// Sends the changes of one directory's users and groups to an HTTP(S) receiver, signed per the
/// Standard Webhooks specification, at least once and in order per resource.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubescim.io",
    version = "v1alpha1",
    kind = "ScimWebhook",
    doc = "Signed, at-least-once delivery of a directory's user and group changes (WorkOS Directory Sync events, Standard Webhooks signatures) to an HTTP(S) receiver.",
    namespaced,
    status = "ScimWebhookStatus",
    shortname = "scimhook",
    category = "scim",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Directory","type":"string","jsonPath":".spec.directoryRef.name"}"#,
    printcolumn = r#"{"name":"Backlog","type":"integer","jsonPath":".status.backlog"}"#,
    printcolumn = r#"{"name":"Failures","type":"integer","jsonPath":".status.consecutiveFailures"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ScimWebhookSpec {
    /// The ScimDirectory (same namespace) whose users and groups are sent.
    pub directory_ref: crate::DirectoryRef,

    /// Receiver URL, `https://` (or `http://`). Addresses in loopback, link-local (cloud
    /// metadata), private or other special ranges are refused unless the operator's
    /// `--webhook-allowed-cidrs` allows them; redirects are not followed.
    #[schemars(length(min = 8, max = 2048), regex(pattern = r"^https?://"))]
    pub url: String,

    /// Secret (same namespace) holding the signing key `whsec_<base64>` under `key` (default
    /// `key`). During a rotation put the old key under `previous`: both signatures are sent.
    /// The Secret must be labelled `kubescim.io/webhook-signing-key: "true"` (or be owned by
    /// this ScimWebhook): the operator signs with no other Secret (reason
    /// `SigningKeyUnavailable`).
    pub signing_key_secret_ref: WebhookKeyRef,

    /// Event types to send (default: all). See docs/webhooks.md for the payloads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 10),
        inner(regex(
            pattern = r"^dsync\.(user\.(created|updated|deleted)|group\.(created|updated|deleted|user_added|user_removed)|activated|deleted)$"
        ))
    )]
    pub events: Vec<String>,

    /// Several events per request: the body is then `{"object":"list","data":[events]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,

    /// How long an event is retried before it is dropped (Go duration, default `72h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub retry_for: Option<String>,

    /// Stop reading changes while this many events wait for the receiver (default 20000); later
    /// changes are then coalesced from the next re-list instead of queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_backlog: Option<i64>,

    /// Per-request timeout (Go duration, default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub timeout: Option<String>,

    /// After failing for this long, a Warning Event `ReceiverFailing` is published (Go
    /// duration, default `15m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub warn_after: Option<String>,
}

/// The Secret with the signing key(s).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the current signing key (default `key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
    /// Key of the previous signing key, used as well during a rotation (default `previous`;
    /// absent or empty: one signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub previous_key: Option<String>,
}

/// Several events per request.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Batching {
    /// Most events in one request (1: one event per request, the WorkOS shape).
    #[schemars(range(min = 1, max = 1000))]
    pub max_events: i64,
    /// Longest wait for a batch to fill before it is sent (Go duration, default `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub max_wait: Option<String>,
}

/// Observed state of a ScimWebhook, written by the operator's delivery loop.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimWebhookStatus {
    /// `metadata.generation` the delivery loop runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the last request succeeded (or nothing was sent yet) and the configuration is
    /// usable; reason and message say what to fix otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub conditions: Vec<Condition>,
    /// Id of the last event the receiver acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered_event_id: Option<String>,
    /// When the last event was acknowledged (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered_time: Option<String>,
    /// Events waiting for the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i64>,
    /// Failed requests since the last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i64>,
    /// Since when requests fail (RFC 3339); empty while they succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    /// The last failure (HTTP status or connection error), for the administrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Events dropped after `spec.retryFor` (total).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_events: Option<i64>,
}

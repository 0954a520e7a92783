//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): `webhook-signature` is
//! `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, one per key, space separated.
//!
//! Hand-assembled from RustCrypto's `hmac`/`sha2` (audited, already used for token verifiers)
//! rather than the `standardwebhooks` crate: that crate (1.0.1) pins base64 0.21 and a second
//! SHA-256 implementation and signs with one key only; the unit tests below check our output
//! against it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::Sha256;

/// Label (value `"true"`) by which whoever may write a Secret lets ScimWebhooks of its namespace
/// sign with it.
pub const SIGNING_KEY_LABEL: &str = "kubescim.io/webhook-signing-key";

/// Whether the Secret with `meta` may serve as the signing key of the ScimWebhook with
/// `webhook_uid`: it is owned by that webhook, or labelled [`SIGNING_KEY_LABEL`]`=true`. Whoever
/// may create a ScimWebhook but not write Secrets must not make the operator sign (and so answer
/// for) messages with an arbitrary Secret of the namespace, e.g. a directory's bearer token.
pub fn may_sign_with(meta: &ObjectMeta, webhook_uid: Option<&str>) -> bool {
    let owned = webhook_uid.is_some_and(|uid| {
        meta.owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid && o.kind == "ScimWebhook")
    });
    let labelled = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(SIGNING_KEY_LABEL))
        .is_some_and(|v| v == "true");
    owned || labelled
}

/// A signing key as Standard Webhooks writes it: `whsec_` followed by base64 of the key bytes.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the signing key must be `whsec_` followed by base64")]
    Format,
    // The key's length is not told: the message goes to the webhook's status.
    #[error("the signing key must have between 24 and 64 bytes")]
    Length(usize),
}

impl SigningKey {
    pub fn parse(text: &str) -> Result<SigningKey, KeyError> {
        let encoded = text.trim().strip_prefix("whsec_").ok_or(KeyError::Format)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| KeyError::Format)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(KeyError::Length(bytes.len()));
        }
        Ok(SigningKey(bytes))
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header value: one signature per key (current first), so a receiver
/// that has only the old or only the new key accepts the message during a rotation.
pub fn signature_header(keys: &[SigningKey], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| k.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn matches_the_reference_implementation() {
        let key = SigningKey::parse(KEY).unwrap();
        let reference = standardwebhooks::Webhook::new(KEY).unwrap();
        let body = br#"{"event":"dsync.user.created"}"#;
        let now = jiff::Timestamp::now().as_second();
        let ours = key.sign("evt_1", now, body);
        assert_eq!(ours, reference.sign("evt_1", now, body).unwrap());
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", "evt_1".parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert("webhook-signature", ours.parse().unwrap());
        assert!(reference.verify(body, &headers).is_ok());
        headers.insert("webhook-id", "evt_2".parse().unwrap());
        assert!(reference.verify(body, &headers).is_err());
    }

    #[test]
    fn rotation_sends_both_signatures_and_either_key_verifies() {
        let old = SigningKey::parse(KEY).unwrap();
        let new = SigningKey::parse("whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=").unwrap();
        let header = signature_header(&[new.clone(), old.clone()], "evt_2", 1, b"{}");
        let parts: Vec<_> = header.split(' ').collect();
        assert_eq!(
            parts,
            [new.sign("evt_2", 1, b"{}"), old.sign("evt_2", 1, b"{}")]
        );
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn refuses_malformed_keys() {
        assert_eq!(SigningKey::parse("MfKQ9r8G").unwrap_err(), KeyError::Format);
        assert_eq!(SigningKey::parse("whsec_!!").unwrap_err(), KeyError::Format);
        assert_eq!(
            SigningKey::parse("whsec_AAAA").unwrap_err(),
            KeyError::Length(3)
        );
        assert!(!KeyError::Length(3).to_string().contains('3'));
    }

    #[test]
    fn only_an_owned_or_labelled_secret_signs() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let plain = ObjectMeta::default();
        assert!(!may_sign_with(&plain, Some("uid-hook")));
        let labelled = ObjectMeta {
            labels: Some([(SIGNING_KEY_LABEL.to_string(), "true".to_string())].into()),
            ..Default::default()
        };
        assert!(may_sign_with(&labelled, Some("uid-hook")));
        let other_value = ObjectMeta {
            labels: Some([(SIGNING_KEY_LABEL.to_string(), "yes".to_string())].into()),
            ..Default::default()
        };
        assert!(!may_sign_with(&other_value, Some("uid-hook")));
        let owned = |uid: &str, kind: &str| ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                uid: uid.into(),
                kind: kind.into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(may_sign_with(
            &owned("uid-hook", "ScimWebhook"),
            Some("uid-hook")
        ));
        assert!(!may_sign_with(
            &owned("uid-other", "ScimWebhook"),
            Some("uid-hook")
        ));
        // A directory's token Secret (owned by the ScimDirectory) is not a signing key.
        assert!(!may_sign_with(
            &owned("uid-hook", "ScimDirectory"),
            Some("uid-hook")
        ));
    }
}

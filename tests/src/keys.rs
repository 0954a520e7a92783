//! Verifier keys for the operator and SCIM server processes the harness starts (`make dev` and
//! the integration tests), as the Helm chart's mounted Secret gives them to the pods: a
//! directory with one file per key. [`VerifierKeys::verifiers`] computes what the operator
//! should publish for a token, with the `hmac` crate rather than kube-scim's code, so tests check
//! the format independently.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Id of the key a fresh directory holds.
pub const FIRST_KEY_ID: &str = "k1";

/// A directory of verifier keys.
#[derive(Debug, Clone)]
pub struct VerifierKeys {
    dir: PathBuf,
}

/// A Secret `name` holding the webhook signing `key` (`whsec_...`), with the label that marks it
/// as one: without it a ScimWebhook refuses the Secret (issue 27).
pub fn webhook_signing_key_secret(name: &str, key: &str) -> k8s_openapi::api::core::v1::Secret {
    use std::collections::BTreeMap;
    k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "kubescim.io/webhook-signing-key".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([("key".to_string(), key.to_string())])),
        ..Default::default()
    }
}

/// Creates the signing-key Secret `name` holding `key` in `ns` (see
/// [`webhook_signing_key_secret`]).
pub async fn create_webhook_signing_key(kube: &kube::Client, ns: &str, name: &str, key: &str) {
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(kube.clone(), ns)
        .create(
            &kube::api::PostParams::default(),
            &webhook_signing_key_secret(name, key),
        )
        .await
        .expect("the webhook signing key Secret is created");
}

/// A ScimWebhook `name` of directory `directory` that posts to `url`, signed with the key in
/// Secret `key_secret`; every other field takes its default, for the caller to change.
pub fn webhook(
    name: &str,
    directory: &str,
    url: &str,
    key_secret: &str,
) -> kube_scim_crds::ScimWebhook {
    kube_scim_crds::ScimWebhook::new(
        name,
        kube_scim_crds::ScimWebhookSpec {
            directory_ref: kube_scim_crds::DirectoryRef {
                name: directory.into(),
            },
            url: url.into(),
            signing_key_secret_ref: kube_scim_crds::WebhookKeyRef {
                name: key_secret.into(),
                ..Default::default()
            },
            ..Default::default()
        },
    )
}

/// 32 random bytes from the kernel as 64 hex digits: a key as strong as the chart's.
pub fn random_key() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `hmac-sha256:<id>:<hex>` of `token` under `key`: the unbound verifier of earlier builds.
pub fn hmac_verifier(id: &str, key: &[u8], token: &[u8]) -> String {
    format!("hmac-sha256:{id}:{}", hmac_hex(key, token))
}

/// The directory a verifier is bound to.
#[derive(Debug, Clone, Copy)]
pub struct Dir<'a> {
    pub uid: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl<'a> Dir<'a> {
    /// The identity of a directory read from (or created in) the apiserver.
    pub fn of(dir: &'a kube_scim_crds::ScimDirectory) -> Dir<'a> {
        Dir {
            uid: dir
                .metadata
                .uid
                .as_deref()
                .expect("a directory from the apiserver"),
            namespace: dir.metadata.namespace.as_deref().expect("namespaced"),
            name: dir.metadata.name.as_deref().expect("named"),
        }
    }
}

/// `hmac-sha256-dir:<id>:<hex>`: HMAC-SHA256 under HKDF-SHA256(key, info
/// `kube-scim/token-verifier/v2`) of the directory's uid, namespace, name and the token, each
/// preceded by its length as 8 big-endian bytes.
pub fn bound_verifier(id: &str, key: &[u8], dir: Dir<'_>, token: &[u8]) -> String {
    let mut derived = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(None, key)
        .expand(b"kube-scim/token-verifier/v2", &mut derived)
        .expect("32 bytes");
    let mut message = Vec::new();
    for field in [
        dir.uid.as_bytes(),
        dir.namespace.as_bytes(),
        dir.name.as_bytes(),
        token,
    ] {
        message.extend_from_slice(&(field.len() as u64).to_be_bytes());
        message.extend_from_slice(field);
    }
    format!("hmac-sha256-dir:{id}:{}", hmac_hex(&derived, &message))
}

impl VerifierKeys {
    /// Creates `dir` (removing what was there) with one random key, [`FIRST_KEY_ID`].
    pub fn create(dir: &Path) -> anyhow::Result<VerifierKeys> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let keys = VerifierKeys {
            dir: dir.to_path_buf(),
        };
        keys.write(FIRST_KEY_ID, &random_key()?)?;
        Ok(keys)
    }

    /// The keys in `dir` if it holds any, else [`VerifierKeys::create`]: for processes that must
    /// share keys (replicas of one operator).
    pub fn open_or_create(dir: &Path) -> anyhow::Result<VerifierKeys> {
        let keys = VerifierKeys {
            dir: dir.to_path_buf(),
        };
        match keys.read() {
            Ok(found) if !found.is_empty() => Ok(keys),
            _ => VerifierKeys::create(dir),
        }
    }

    /// A copy of these keys in `dir` (replacing what was there): another component's mount of
    /// the same Secret, which can then change on its own.
    pub fn copy_to(&self, dir: &Path) -> anyhow::Result<VerifierKeys> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let copy = VerifierKeys {
            dir: dir.to_path_buf(),
        };
        for (id, key) in self.read()? {
            copy.write(&id, &key)?;
        }
        Ok(copy)
    }

    /// Path to pass as `--verifier-key-dir`.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Adds (or replaces) the key `id`.
    pub fn write(&self, id: &str, key: &str) -> anyhow::Result<()> {
        // Written aside and renamed, so a process re-reading the directory never sees half a key.
        let tmp = self.dir.join(format!(".{id}.tmp"));
        std::fs::write(&tmp, key)?;
        std::fs::rename(&tmp, self.dir.join(id))?;
        Ok(())
    }

    /// Removes the key `id`.
    pub fn remove(&self, id: &str) -> anyhow::Result<()> {
        Ok(std::fs::remove_file(self.dir.join(id))?)
    }

    /// The keys here, `(id, key)`, newest id first as kube-scim orders them.
    pub fn read(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let id = entry.file_name().to_string_lossy().into_owned();
            if id.starts_with('.') {
                continue;
            }
            let key = std::fs::read_to_string(entry.path())?;
            out.push((id, key.trim().to_string()));
        }
        out.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(out)
    }

    /// The verifiers of `token` at `dir` under every key here, the primary key's first.
    pub fn verifiers(&self, dir: Dir<'_>, token: &[u8]) -> Vec<String> {
        self.read()
            .expect("verifier keys readable")
            .iter()
            .map(|(id, key)| bound_verifier(id, key.as_bytes(), dir, token))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_verifier_matches_rfc_4231_case_2() {
        assert_eq!(
            hmac_verifier("x", b"Jefe", b"what do ya want for nothing?"),
            "hmac-sha256:x:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

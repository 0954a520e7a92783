//! Keyed token verifiers, shared by the operator (which publishes them in
//! `status.tokenVerifiers`) and the SCIM server (which checks bearer tokens against them).
//!
//! A verifier is `hmac-sha256-dir:<key id>:<64 lowercase hex digits>`: HMAC-SHA256, under a key
//! derived (HKDF, label [`BOUND_LABEL`]) from the verifier key named `<key id>`, of the
//! directory's uid, namespace and name and the token, each length-prefixed ([`Binding`]). The
//! keys are files in a directory (`--verifier-key-dir`; the Helm chart mounts a Secret there)
//! that only the operator and the server read, so whoever may read a ScimDirectory sees its
//! verifiers but cannot test guesses of the token against them offline, however weak the token
//! is; and since the directory is in the MAC, a verifier copied from one directory (or from a
//! deleted directory of the same name) to another matches no token there.
//!
//! Earlier (unreleased) builds published `hmac-sha256:<key id>:<hex>`, the HMAC of the token
//! alone ([`Kind::Unbound`]). Such a verifier names no directory, so a planted one cannot be told
//! from a real one: the server never accepts it; the operator only recognises it as the same
//! token (no `TokenChanged` event) and replaces it at its first reconcile, as it does 0.1.0's
//! unkeyed `sha256:` hashes (see `operator/src/token.rs`).
//!
//! Rotation: the operator publishes every current token under every key it holds and the server
//! accepts a verifier under any key it holds. Adding a key, waiting until both have it, then
//! removing the old one never leaves a moment where the current token has no verifier the server
//! can check. Both re-read the directory every few seconds ([`reload_every`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

/// Prefix of a verifier bound to its directory (the only kind published).
pub const PREFIX: &str = "hmac-sha256-dir:";

/// Prefix of the keyed verifiers of earlier builds, bound to no directory.
pub const UNBOUND_PREFIX: &str = "hmac-sha256:";

/// HKDF label of the key that bound verifiers are computed under: a purpose of its own, so no
/// bound verifier is an unbound one, an OAuth signing key or anything else under the same key.
pub const BOUND_LABEL: &[u8] = b"kube-scim/token-verifier/v2";

/// The directory a verifier is bound to: its uid (so a deleted and re-created directory of the
/// same name is another directory), namespace and name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding<'a> {
    pub uid: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Binding<'_> {
    /// What the MAC covers: every field and the token, each preceded by its length (8 bytes,
    /// big-endian), so no two (directory, token) pairs give the same bytes.
    fn message(&self, token: &str) -> Vec<u8> {
        let fields = [self.uid, self.namespace, self.name, token];
        let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 8).sum());
        for field in fields {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }
}

/// Which kind of keyed verifier a hash is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `hmac-sha256-dir:`: bound to a directory.
    Bound,
    /// `hmac-sha256:`: of earlier builds, the token alone.
    Unbound,
}

/// A key needs at least this many bytes (after surrounding whitespace is trimmed):
/// `openssl rand -base64 32` gives 44.
pub const MIN_KEY_BYTES: usize = 32;

/// At most this many keys at once (the current one and those being rotated in or out); the
/// operator publishes one verifier per token and key.
pub const MAX_KEYS: usize = 4;

/// Longest key id (a file name, so also a Secret data key).
pub const MAX_KEY_ID_LEN: usize = 63;

/// One HMAC key and its id (its file name). `Debug` shows the id only.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    id: String,
    secret: Vec<u8>,
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl VerifierKey {
    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Why keys could not be loaded: a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

/// How to make a key, for error messages.
const HOW_TO_MAKE_ONE: &str = "create one with `openssl rand -base64 32 > DIR/<key id>` (the Helm chart mounts its verifier-key Secret there)";

/// Whether `id` may name a key: letters, digits, `-`, `_`, `.`, starting with a letter or digit,
/// at most 63 characters (a Secret data key, and never a `:`).
pub fn valid_key_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.len() <= MAX_KEY_ID_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The verifier keys in force, the primary one first (the one whose id sorts last, so name keys
/// such that a newer one sorts after an older one, e.g. `2026-01`, `2026-07`). Never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<VerifierKey>,
}

impl KeyRing {
    /// A ring of `(id, secret)` pairs; the secret is used as given (callers trim).
    pub fn from_keys<I, S>(keys: I) -> Result<KeyRing, KeyError>
    where
        I: IntoIterator<Item = (S, Vec<u8>)>,
        S: Into<String>,
    {
        let mut out: Vec<VerifierKey> = Vec::new();
        for (id, secret) in keys {
            let id = id.into();
            if !valid_key_id(&id) {
                return Err(KeyError(format!(
                    "verifier key {id:?}: not a valid key id (letters, digits, '-', '_', '.', starting with a letter or digit, at most {MAX_KEY_ID_LEN} characters); rename the file (the Secret's data key)"
                )));
            }
            if secret.len() < MIN_KEY_BYTES {
                return Err(KeyError(format!(
                    "verifier key {id:?} has {} bytes; a verifier key needs at least {MIN_KEY_BYTES}: {HOW_TO_MAKE_ONE}",
                    secret.len()
                )));
            }
            if out.iter().any(|k| k.id == id) {
                return Err(KeyError(format!("verifier key {id:?} is given twice")));
            }
            out.push(VerifierKey { id, secret });
        }
        if out.is_empty() {
            return Err(KeyError(format!("no verifier key: {HOW_TO_MAKE_ONE}")));
        }
        if out.len() > MAX_KEYS {
            return Err(KeyError(format!(
                "{} verifier keys; at most {MAX_KEYS} are used at once: remove keys that were rotated out",
                out.len()
            )));
        }
        out.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(KeyRing { keys: out })
    }

    /// The keys in `dir`: every regular file (or symlink to one) whose name does not start with
    /// `.` (a mounted Secret's own `..data` entries), named by its key id, holding the key;
    /// whitespace around the key is ignored (so `openssl rand -base64 32 > k` works).
    pub fn load(dir: &Path) -> Result<KeyRing, KeyError> {
        let shown = dir.display();
        let entries = std::fs::read_dir(dir).map_err(|e| {
            KeyError(format!(
                "verifier key directory {shown}: {e}; point --verifier-key-dir at a directory of key files: {HOW_TO_MAKE_ONE}"
            ))
        })?;
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| KeyError(format!("reading {shown}: {e}")))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(KeyError(format!(
                    "{shown} holds a file whose name is not UTF-8: {:?}; key ids are ASCII",
                    entry.file_name()
                )));
            };
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => {}
                Ok(_) => continue,
                Err(e) => return Err(KeyError(format!("{}: {e}", path.display()))),
            }
            let bytes =
                std::fs::read(&path).map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
            keys.push((name.to_string(), bytes.trim_ascii().to_vec()));
        }
        KeyRing::from_keys(keys).map_err(|KeyError(m)| KeyError(format!("{shown}: {m}")))
    }

    /// The keys, primary first.
    pub fn keys(&self) -> &[VerifierKey] {
        &self.keys
    }

    /// The key ids, primary first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// The bound digest of `token` at the directory `binding` under the key `id`, if this ring
    /// holds it.
    pub fn digest(&self, id: &str, binding: &Binding<'_>, token: &str) -> Option<[u8; 32]> {
        let key = self.derive(id, BOUND_LABEL)?;
        Some(hmac_sha256(&key, &binding.message(token)))
    }

    /// The unbound digest (earlier builds) of `token` under the key `id`: HMAC-SHA256 of
    /// the token alone under the verifier key itself.
    pub fn unbound_digest(&self, id: &str, token: &str) -> Option<[u8; 32]> {
        let key = self.keys.iter().find(|k| k.id == id)?;
        Some(hmac_sha256(&key.secret, token.as_bytes()))
    }

    /// A 32-byte key for another purpose than verifiers, derived from the key `id` with
    /// HKDF-SHA256 (RFC 5869) and `label` as the `info` (one label per purpose, e.g. signing
    /// OAuth access tokens). HKDF first extracts a pseudorandom key from the verifier key, so a
    /// derived key is never the HMAC of anything under the verifier key itself: no verifier the
    /// operator publishes (an HMAC of a token the user may choose, possibly equal to a label) can
    /// be a derived key. `None` if this ring does not hold `id`.
    pub fn derive(&self, id: &str, label: &[u8]) -> Option<[u8; 32]> {
        let key = self.keys.iter().find(|k| k.id == id)?;
        let mut out = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(None, &key.secret)
            .expand(label, &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Some(out)
    }

    /// The id of the primary key: the one new things are signed or published under first.
    pub fn primary_id(&self) -> &str {
        &self.keys[0].id
    }

    /// The verifier hashes of `token` at the directory `binding`, one per key, the primary key's
    /// first.
    pub fn hashes(&self, binding: &Binding<'_>, token: &str) -> Vec<String> {
        self.keys
            .iter()
            .filter_map(|k| Some(format(&k.id, &self.digest(&k.id, binding, token)?)))
            .collect()
    }

    /// Whether `hash` is a bound verifier of `token` at the directory `binding` under a key of
    /// this ring (constant time in the digest). Anything else, an unbound or unkeyed hash
    /// included, is not.
    pub fn verifies(&self, binding: &Binding<'_>, token: &str, hash: &str) -> bool {
        let Some((Kind::Bound, id, expected)) = parse(hash) else {
            return false;
        };
        self.digest(id, binding, token)
            .is_some_and(|d| bool::from(d.ct_eq(&expected)))
    }

    /// Whether `hash` is an unbound verifier (earlier builds) of `token` under a key of this
    /// ring: only to recognise, across an upgrade, that a token is the one published before.
    pub fn verifies_unbound(&self, token: &str, hash: &str) -> bool {
        let Some((Kind::Unbound, id, expected)) = parse(hash) else {
            return false;
        };
        self.unbound_digest(id, token)
            .is_some_and(|d| bool::from(d.ct_eq(&expected)))
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// `hmac-sha256-dir:<id>:<lowercase hex of digest>`, a bound verifier.
pub fn format(id: &str, digest: &[u8; 32]) -> String {
    format_with(PREFIX, id, digest)
}

/// `hmac-sha256:<id>:<lowercase hex of digest>`, an unbound verifier (earlier builds).
pub fn format_unbound(id: &str, digest: &[u8; 32]) -> String {
    format_with(UNBOUND_PREFIX, id, digest)
}

fn format_with(prefix: &str, id: &str, digest: &[u8; 32]) -> String {
    let mut out = String::with_capacity(prefix.len() + id.len() + 1 + 64);
    out.push_str(prefix);
    out.push_str(id);
    out.push(':');
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The kind, key id and digest of a keyed verifier; `None` for anything else.
pub fn parse(hash: &str) -> Option<(Kind, &str, [u8; 32])> {
    let (kind, rest) = match hash.strip_prefix(PREFIX) {
        Some(rest) => (Kind::Bound, rest),
        None => (Kind::Unbound, hash.strip_prefix(UNBOUND_PREFIX)?),
    };
    let (id, hex) = rest.split_once(':')?;
    if !valid_key_id(id) || hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        let pair = hex.get(2 * i..2 * i + 2)?;
        if pair.bytes().any(|c| c.is_ascii_uppercase()) {
            return None;
        }
        *b = u8::from_str_radix(pair, 16).ok()?;
    }
    Some((kind, id, out))
}

/// The digest part of a verifier hash (after the last `:`), e.g. for a fingerprint.
pub fn digest_hex(hash: &str) -> &str {
    hash.rsplit_once(':').map_or(hash, |(_, hex)| hex)
}

/// The key ring in force, shared by every task of a process and replaced when the key directory
/// changes; [`SharedKeyRing::changes`] tells who needs to know (the operator re-publishes every
/// directory's verifiers).
#[derive(Clone, Debug)]
pub struct SharedKeyRing {
    tx: Arc<watch::Sender<Arc<KeyRing>>>,
}

impl SharedKeyRing {
    /// A shared ring starting with `ring`.
    pub fn new(ring: KeyRing) -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(Arc::new(ring))),
        }
    }

    /// The ring in force now.
    pub fn current(&self) -> Arc<KeyRing> {
        self.tx.borrow().clone()
    }

    /// Puts `ring` in force; whether it differs from the one before.
    pub fn replace(&self, ring: KeyRing) -> bool {
        self.tx.send_if_modified(|current| {
            if **current == ring {
                false
            } else {
                *current = Arc::new(ring);
                true
            }
        })
    }

    /// A receiver that is notified on every change.
    pub fn changes(&self) -> watch::Receiver<Arc<KeyRing>> {
        self.tx.subscribe()
    }
}

/// The key ring of `dir`, loaded now and then kept fresh by a task that re-reads `dir` every
/// `every` (at least a second apart) for the life of the process: how the operator and the
/// SCIM server both start, so that both follow a rotation the same way.
pub fn load_and_reload(dir: PathBuf, every: Duration) -> Result<SharedKeyRing, KeyError> {
    let keys = SharedKeyRing::new(KeyRing::load(&dir)?);
    tracing::info!(dir = %dir.display(), keys = ?keys.current().ids(), "verifier keys loaded");
    tokio::spawn(reload_every(
        dir,
        keys.clone(),
        every.max(Duration::from_secs(1)),
    ));
    Ok(keys)
}

/// Re-reads `dir` every `every` (forever) and puts a changed ring in force. A directory that
/// cannot be read or holds no valid key keeps the ring in force (logged once per distinct
/// problem): a half-written Secret never revokes every token.
pub async fn reload_every(dir: PathBuf, ring: SharedKeyRing, every: Duration) {
    let mut last_problem: Option<KeyError> = None;
    loop {
        tokio::time::sleep(every).await;
        match KeyRing::load(&dir) {
            Ok(loaded) => {
                last_problem = None;
                let ids: Vec<String> = loaded.ids().iter().map(|s| s.to_string()).collect();
                if ring.replace(loaded) {
                    tracing::info!(keys = ?ids, "verifier keys changed");
                }
            }
            Err(e) => {
                if last_problem.as_ref() != Some(&e) {
                    tracing::error!(error = %e, keys = ?ring.current().ids(), "cannot reload the verifier keys; keeping the keys in force");
                }
                last_problem = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[(&str, &str)]) -> KeyRing {
        KeyRing::from_keys(keys.iter().map(|(id, k)| (*id, k.as_bytes().to_vec()))).unwrap()
    }

    const K1: &str = "0123456789abcdef0123456789abcdef-one";
    const K2: &str = "0123456789abcdef0123456789abcdef-two";

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2 (a short key) and test case 6 (a key longer than the block).
        let digest = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            format_unbound("x", &digest),
            "hmac-sha256:x:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let digest = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            digest_hex(&format("x", &digest)),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    const A: Binding<'static> = Binding {
        uid: "6f1e2d3c-0000-4000-8000-00000000000a",
        namespace: "team-a",
        name: "contoso",
    };

    #[test]
    fn every_key_gives_a_verifier_and_any_held_key_verifies() {
        let both = ring(&[("2026-01", K1), ("2026-07", K2)]);
        assert_eq!(both.ids(), vec!["2026-07", "2026-01"], "newest id first");
        let hashes = both.hashes(&A, "token");
        assert_eq!(hashes.len(), 2);
        assert!(hashes[0].starts_with("hmac-sha256-dir:2026-07:"));
        assert!(hashes[1].starts_with("hmac-sha256-dir:2026-01:"));
        assert!(hashes.iter().all(|h| both.verifies(&A, "token", h)));
        assert!(!both.verifies(&A, "other", &hashes[0]));
        // A ring without the old key still checks the new key's verifier, not the old one's.
        let new_only = ring(&[("2026-07", K2)]);
        assert!(new_only.verifies(&A, "token", &hashes[0]));
        assert!(!new_only.verifies(&A, "token", &hashes[1]));
        // The same id with another secret is another key.
        let replaced = ring(&[("2026-07", K1)]);
        assert!(!replaced.verifies(&A, "token", &hashes[0]));
        // Unkeyed hashes never verify.
        assert!(!both.verifies(
            &A,
            "abc",
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        ));
    }

    /// Issue 27, defect 3: a verifier of directory A's token, planted at directory B (another
    /// uid, namespace or name, or A deleted and re-created), opens nothing there.
    #[test]
    fn a_verifier_is_bound_to_its_directory() {
        let keys = ring(&[("k1", K1)]);
        let at_a = keys.hashes(&A, "token").remove(0);
        let others = [
            Binding {
                uid: "6f1e2d3c-0000-4000-8000-00000000000b",
                ..A
            },
            Binding {
                namespace: "team-b",
                ..A
            },
            Binding {
                name: "fabrikam",
                ..A
            },
            // Length prefixes: moving bytes between fields gives another message.
            Binding {
                namespace: "team-ac",
                name: "ontoso",
                ..A
            },
        ];
        for b in others {
            assert!(!keys.verifies(&b, "token", &at_a), "{b:?}");
            assert_ne!(keys.hashes(&b, "token")[0], at_a);
        }
        assert!(keys.verifies(&A, "token", &at_a));
        // The unbound verifier of the same token (earlier builds) is another value, and is
        // recognised only as unbound.
        let unbound = format_unbound("k1", &keys.unbound_digest("k1", "token").unwrap());
        assert!(unbound.starts_with("hmac-sha256:k1:"));
        assert!(!keys.verifies(&A, "token", &unbound));
        assert!(keys.verifies_unbound("token", &unbound));
        assert!(!keys.verifies_unbound("token", &at_a));
        assert_ne!(digest_hex(&unbound), digest_hex(&at_a));
    }

    #[test]
    fn derived_keys_follow_rfc_5869_and_differ_by_label_and_from_verifiers() {
        // RFC 5869 test case 3 (SHA-256, no salt, no info): the first 32 bytes of its OKM.
        let ikm = vec![0x0b; 22];
        let okm = hkdf::Hkdf::<Sha256>::new(None, &ikm);
        let mut first = [0u8; 32];
        okm.expand(b"", &mut first).unwrap();
        assert_eq!(
            digest_hex(&format("x", &first)),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
        );
        let keys = ring(&[("k1", K1), ("k2", K2)]);
        assert_eq!(keys.primary_id(), "k2");
        let a = keys.derive("k1", b"purpose a").unwrap();
        assert_ne!(a, keys.derive("k1", b"purpose b").unwrap());
        assert_ne!(a, keys.derive("k2", b"purpose a").unwrap());
        assert_eq!(Some(a), keys.derive("k1", b"purpose a"));
        assert_eq!(keys.derive("k3", b"purpose a"), None);
        // A user who picks the label as their token finds its verifier is not the derived key.
        assert_ne!(keys.unbound_digest("k1", "purpose a").unwrap(), a);
        assert_ne!(keys.digest("k1", &A, "purpose a").unwrap(), a);
    }

    #[test]
    fn verifiers_parse_strictly() {
        let h = ring(&[("k", K1)]).hashes(&A, "t").remove(0);
        let (kind, id, digest) = parse(&h).unwrap();
        assert_eq!((kind, id), (Kind::Bound, "k"));
        assert_eq!(format(id, &digest), h);
        let unbound = format_unbound(id, &digest);
        assert_eq!(parse(&unbound), Some((Kind::Unbound, "k", digest)));
        assert!(parse(&h.to_uppercase()).is_none());
        assert!(parse(&h[..h.len() - 1]).is_none());
        assert!(parse(&format!("hmac-sha256:a:b:{}", "0".repeat(64))).is_none());
        assert!(parse(&format!("hmac-sha256::{}", "0".repeat(64))).is_none());
        assert!(parse(&format!("sha256:{}", "0".repeat(64))).is_none());
        assert!(parse(&format!("hmac-sha256-dir:a:b:{}", "0".repeat(64))).is_none());
        assert_eq!(digest_hex("hmac-sha256:k:abcd"), "abcd");
        assert_eq!(digest_hex("sha256:abcd"), "abcd");
    }

    #[test]
    fn bad_key_sets_are_refused_with_the_fix() {
        let err = |keys: Vec<(&str, &str)>| {
            KeyRing::from_keys(keys.into_iter().map(|(i, k)| (i, k.as_bytes().to_vec())))
                .unwrap_err()
                .to_string()
        };
        assert!(err(vec![]).contains("openssl rand -base64 32"));
        assert!(err(vec![("k", "short")]).contains("at least 32"));
        assert!(err(vec![("a:b", K1)]).contains("not a valid key id"));
        assert!(err(vec![(".hidden", K1)]).contains("not a valid key id"));
        assert!(err(vec![("k", K1), ("k", K2)]).contains("twice"));
        let five: Vec<(String, Vec<u8>)> = (0..5)
            .map(|i| (format!("k{i}"), K1.as_bytes().to_vec()))
            .collect();
        assert!(
            KeyRing::from_keys(five)
                .unwrap_err()
                .to_string()
                .contains("at most 4")
        );
    }

    #[test]
    fn a_key_directory_loads_like_a_mounted_secret() {
        let dir = std::env::temp_dir().join(format!(
            "kube-scim-verifier-keys-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        // A Secret volume: ..data -> ..<timestamp>/, and each key a symlink into ..data.
        let data = dir.join("..2026_01_01_00_00_00.000000001");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("2026-01"), format!("{K1}\n")).unwrap();
        std::os::unix::fs::symlink("..2026_01_01_00_00_00.000000001", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/2026-01", dir.join("2026-01")).unwrap();
        let loaded = KeyRing::load(&dir).unwrap();
        assert_eq!(loaded, ring(&[("2026-01", K1)]), "trailing newline trimmed");
        std::fs::write(dir.join("short"), "x").unwrap();
        assert!(
            KeyRing::load(&dir)
                .unwrap_err()
                .to_string()
                .contains("\"short\" has 1 bytes")
        );
        std::fs::remove_file(dir.join("short")).unwrap();
        let missing = KeyRing::load(&dir.join("nope")).unwrap_err().to_string();
        assert!(missing.contains("--verifier-key-dir"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_changed_directory_is_put_in_force_and_a_broken_one_is_not() {
        let dir = std::env::temp_dir().join(format!("kube-scim-reload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a"), K1).unwrap();
        let shared = SharedKeyRing::new(KeyRing::load(&dir).unwrap());
        let mut changes = shared.changes();
        let task = tokio::spawn(reload_every(
            dir.clone(),
            shared.clone(),
            Duration::from_millis(20),
        ));
        std::fs::write(dir.join("b"), K2).unwrap();
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(shared.current().ids(), vec!["b", "a"]);
        // A broken key keeps the ring in force.
        std::fs::write(dir.join("c"), "short").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(shared.current().ids(), vec!["b", "a"]);
        assert!(!changes.has_changed().unwrap());
        task.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! A stand-in for Microsoft Entra ID's token issuer on 127.0.0.1: serves each tenant's OpenID
//! metadata (`/<tenant>/.well-known/openid-configuration`) and JWK set (`/<tenant>/discovery/keys`)
//! and mints RS256 tokens as Entra issues them to its provisioning service. Its RSA keys are the
//! test-only fixtures in `tests/fixtures/jwt-test-keys.json`; which of them are published can be
//! changed while it runs (a key rollover).

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Audience of Entra-issued SCIM tokens.
pub const SCIM_AUDIENCE: &str = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621";

/// The `appid` the test issuer puts in its tokens (a stand-in for the calling application).
pub const PROVISIONING_APP_ID: &str = "1b730954-1685-4b74-9bfd-dac224a7b894";

const KEYS: &str = include_str!("../fixtures/jwt-test-keys.json");

/// One fixture key.
#[derive(Clone)]
pub struct TestKey {
    /// The `kid` it is published and used under.
    pub kid: String,
    der: Vec<u8>,
    /// The public key as PEM (what an algorithm-confusion attacker uses as an HMAC secret).
    pub public_pem: String,
    n: String,
    e: String,
}

/// The fixture keys: 0 and 1 are the issuer's (1 for rollovers), 2 an attacker's.
pub fn test_keys() -> Vec<TestKey> {
    let v: Value = serde_json::from_str(KEYS).expect("fixture keys");
    v["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .enumerate()
        .map(|(i, k)| TestKey {
            kid: format!("test-key-{i}"),
            der: STANDARD
                .decode(k["private_pkcs1_der"].as_str().unwrap())
                .unwrap(),
            public_pem: k["public_pem"].as_str().unwrap().to_string(),
            n: k["n"].as_str().unwrap().to_string(),
            e: k["e"].as_str().unwrap().to_string(),
        })
        .collect()
}

/// The issuer Entra puts in a tenant's tokens.
pub fn issuer_of(tenant: &str) -> String {
    format!("https://sts.windows.net/{tenant}/")
}

/// The claims of a valid token of `tenant`, valid from a minute ago for an hour.
pub fn valid_claims(tenant: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    json!({
        "aud": SCIM_AUDIENCE,
        "iss": issuer_of(tenant),
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3600,
        "appid": PROVISIONING_APP_ID,
        "appidacr": "2",
        "idp": issuer_of(tenant),
        "oid": "66a5e40d-4a46-4e0f-a0f4-1e5d8a1f4d1b",
        "sub": "66a5e40d-4a46-4e0f-a0f4-1e5d8a1f4d1b",
        "tid": tenant,
        "ver": "1.0",
    })
}

/// The issuer of a tenant's Entra v2.0 tokens: what workload identity federation assertions
/// carry.
pub fn v2_issuer_of(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/v2.0")
}

/// The claims of the v2.0 access token Entra issues to application `app_id` for itself
/// (`scope=api://<app_id>/.default`, client credentials), as Microsoft's gallery validation
/// presents it as a federation assertion: `aud` the application id, `sub` the object id of its
/// service principal, a unique `uti` (Entra's `jti`), valid from a minute ago for an hour.
pub fn app_token_claims(tenant: &str, app_id: &str, object_id: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    let uti = URL_SAFE_NO_PAD.encode(format!("{}-{}", now.as_nanos(), next_serial()));
    let now = now.as_secs() as i64;
    json!({
        "aud": app_id,
        "iss": v2_issuer_of(tenant),
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3600,
        "azp": app_id,
        "azpacr": "1",
        "idtyp": "app",
        "oid": object_id,
        "sub": object_id,
        "tid": tenant,
        "uti": uti,
        "ver": "2.0",
    })
}

fn next_serial() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

struct State {
    published: Vec<usize>,
    fetches: usize,
}

/// The running issuer; stops when dropped.
pub struct JwtIssuer {
    port: u16,
    keys: Vec<TestKey>,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwtIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwtIssuer {
    /// Starts on a free port of 127.0.0.1, publishing key 0.
    pub async fn start() -> anyhow::Result<JwtIssuer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let keys = test_keys();
        let state = Arc::new(Mutex::new(State {
            published: vec![0],
            fetches: 0,
        }));
        let (st, ks) = (state.clone(), keys.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (st, ks) = (st.clone(), ks.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut n = 0;
                    while n < buf.len() {
                        match conn.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => n += k,
                        }
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (code, body) = answer(&path, port, &ks, &st);
                    let reply = format!(
                        "HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Ok(JwtIssuer {
            port,
            keys,
            state,
            task,
        })
    }

    /// The server's `--entra-metadata-url` for this issuer.
    pub fn metadata_url_template(&self) -> String {
        format!(
            "http://127.0.0.1:{}/{{tenant}}/.well-known/openid-configuration",
            self.port
        )
    }

    /// Publishes exactly the keys `indexes` from now on (a rollover replaces the list).
    pub fn publish(&self, indexes: &[usize]) {
        self.state.lock().unwrap().published = indexes.to_vec();
    }

    /// How many JWK sets were served.
    pub fn key_fetches(&self) -> usize {
        self.state.lock().unwrap().fetches
    }

    /// The fixture keys.
    pub fn keys(&self) -> &[TestKey] {
        &self.keys
    }

    /// An RS256 token with `claims`, signed with key `index` and naming `kid`.
    pub fn mint_with_kid(&self, index: usize, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_string());
        header.typ = Some("JWT".into());
        let key = EncodingKey::from_rsa_der(&self.keys[index].der);
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }

    /// An RS256 token with `claims`, signed with key `index` under its own kid.
    pub fn mint(&self, index: usize, claims: &Value) -> String {
        let kid = self.keys[index].kid.clone();
        self.mint_with_kid(index, &kid, claims)
    }

    /// An unsigned token (`alg: none`) naming key 0.
    pub fn unsigned(&self, claims: &Value) -> String {
        let header = json!({"alg": "none", "typ": "JWT", "kid": self.keys[0].kid});
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    /// HS256 with key 0's public key (PEM) as the HMAC secret: the algorithm-confusion attack.
    pub fn hs256_with_public_key(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.keys[0].kid.clone());
        let key = EncodingKey::from_secret(self.keys[0].public_pem.as_bytes()).expect("secret");
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }
}

fn answer(path: &str, port: u16, keys: &[TestKey], state: &Mutex<State>) -> (&'static str, String) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        [tenant, ".well-known", "openid-configuration"] => (
            "200 OK",
            json!({
                "issuer": issuer_of(tenant),
                "jwks_uri": format!("http://127.0.0.1:{port}/{tenant}/discovery/keys"),
                "token_endpoint": format!("http://127.0.0.1:{port}/{tenant}/oauth2/token"),
            })
            .to_string(),
        ),
        [_tenant, "discovery", "keys"] => {
            let mut st = state.lock().unwrap();
            st.fetches += 1;
            let published: Vec<Value> = st
                .published
                .iter()
                .map(|&i| {
                    let k = &keys[i];
                    json!({"kty": "RSA", "use": "sig", "kid": k.kid, "x5t": k.kid, "n": k.n, "e": k.e})
                })
                .collect();
            ("200 OK", json!({ "keys": published }).to_string())
        }
        _ => ("404 Not Found", "{}".into()),
    }
}

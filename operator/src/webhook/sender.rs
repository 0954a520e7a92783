//! One request to the receiver (signed body, verdict) and the retry policy.

use std::sync::Arc;
use std::time::Duration;

use super::events::Event;
use super::signing::{SigningKey, signature_header};
use super::target::{Policy, SafeResolver};

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Retry; `retry_after` when the receiver said when.
    Failed {
        error: String,
        retry_after: Option<Duration>,
    },
}

/// The HTTP client of every webhook: no redirects, verified TLS, forbidden addresses never
/// resolved, and no proxy: `HTTP(S)_PROXY` in the operator's environment would send the request
/// to the proxy, which resolves and connects to the receiver itself, past the address policy.
/// Only the Mozilla roots are trusted (not the image's or the node's CA files).
pub fn client(policy: Arc<Policy>, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    kube_scim_runtime::tls::install_crypto_provider();
    let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| reqwest::Certificate::from_der(der))
        .collect::<reqwest::Result<Vec<_>>>()?;
    reqwest::Client::builder()
        .tls_certs_only(roots)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(SafeResolver(policy)))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("kube-scim-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The body of a request: one event as WorkOS sends it, or several as a list.
pub fn body(events: &[Event], batched: bool) -> Vec<u8> {
    let value = if batched {
        serde_json::json!({
            "object": "list",
            "data": events.iter().map(Event::wire).collect::<Vec<_>>(),
        })
    } else {
        events[0].wire()
    };
    serde_json::to_vec(&value).expect("JSON values serialize")
}

/// `webhook-id` of a request: the event's id, or for a batch a digest of its events' ids (the
/// ids inside stay the idempotency keys).
pub fn message_id(events: &[Event], batched: bool) -> String {
    if !batched {
        return events[0].id.clone();
    }
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for e in events {
        hash.update(e.id.as_bytes());
        hash.update([0]);
    }
    let hex: String = hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("msg_{hex}")
}

/// Sends one request.
pub async fn send(
    http: &reqwest::Client,
    url: &reqwest::Url,
    keys: &[SigningKey],
    events: &[Event],
    batched: bool,
) -> Outcome {
    let body = body(events, batched);
    let id = message_id(events, batched);
    let timestamp = jiff::Timestamp::now().as_second();
    let signature = signature_header(keys, &id, timestamp, &body);
    let request = http
        .post(url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body);
    match request.send().await {
        Ok(response) if response.status().is_success() => Outcome::Delivered,
        Ok(response) => Outcome::Failed {
            error: format!("HTTP {}", response.status().as_u16()),
            retry_after: response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, jiff::Timestamp::now())),
        },
        Err(e) => Outcome::Failed {
            error: error_chain(&e),
            retry_after: None,
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Longest `Retry-After` honoured: a receiver cannot park the queue for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After` as seconds or an HTTP date (RFC 9110 §10.2.3), capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
        let seconds = (at - now).get_seconds().max(0);
        Duration::from_secs(seconds as u64)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Backoff after `failures` consecutive failures: 1 s doubling to 5 min, with full jitter
/// (`jitter` in [0, 1)), or the receiver's `Retry-After` when it gave one.
pub fn backoff(failures: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    if let Some(wait) = retry_after {
        return wait;
    }
    let cap = Duration::from_secs(300);
    let base = Duration::from_secs(1)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(cap);
    // Full jitter, but never less than 100 ms.
    base.mul_f64(jitter.clamp(0.0, 1.0))
        .max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process of [`the_environments_proxy_is_never_used`].
    const PROBE: &str = "KUBE_SCIM_WEBHOOK_PROXY_PROBE";

    /// Issue 27, defect 7: with `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` pointing at a listener, a
    /// request to a receiver the address policy forbids (`localhost`) never reaches the proxy.
    /// The environment is the process's, so the request is made by a child process (this test
    /// binary, running [`proxy_probe`] only).
    #[test]
    fn the_environments_proxy_is_never_used() {
        if std::env::var_os(PROBE).is_some() {
            return;
        }
        let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        proxy.set_nonblocking(true).unwrap();
        let url = format!("http://{}", proxy.local_addr().unwrap());
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "webhook::sender::tests::proxy_probe",
                "--include-ignored",
                "--test-threads=1",
            ])
            .env(PROBE, "1")
            .env("HTTP_PROXY", &url)
            .env("HTTPS_PROXY", &url)
            .env("ALL_PROXY", &url)
            .env("http_proxy", &url)
            .env("https_proxy", &url)
            .env("NO_PROXY", "")
            .env("no_proxy", "")
            .output()
            .unwrap();
        let output = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && output.contains("1 passed"),
            "{output}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        match proxy.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the webhook client went through the proxy: {other:?}"),
        }
    }

    #[test]
    #[ignore = "run by the_environments_proxy_is_never_used, in a child process"]
    fn proxy_probe() {
        if std::env::var_os(PROBE).is_none() {
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let http = client(Arc::new(Policy::default()), Duration::from_secs(3)).unwrap();
            for url in ["http://localhost:9/hook", "https://localhost:9/hook"] {
                let result = http.post(url).body("{}").send().await;
                assert!(result.is_err(), "{url}: {result:?}");
            }
        });
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        assert_eq!(backoff(1, None, 0.999).as_millis(), 999);
        assert_eq!(backoff(4, None, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(30, None, 1.0), Duration::from_secs(300));
        assert_eq!(backoff(3, None, 0.0), Duration::from_millis(100));
        assert_eq!(
            backoff(3, Some(Duration::from_secs(7)), 0.0),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn single_and_batched_bodies() {
        let e = Event {
            id: "evt_1".into(),
            event: "dsync.user.created".into(),
            data: serde_json::json!({"id": "u"}),
            created_at: "t".into(),
            transition: None,
            resource: "uid".into(),
        };
        let single: serde_json::Value =
            serde_json::from_slice(&body(std::slice::from_ref(&e), false)).unwrap();
        assert_eq!(single["id"], "evt_1");
        assert!(single.get("resource").is_none());
        let list: serde_json::Value =
            serde_json::from_slice(&body(&[e.clone(), e.clone()], true)).unwrap();
        assert_eq!(list["data"].as_array().unwrap().len(), 2);
        assert_eq!(message_id(std::slice::from_ref(&e), false), "evt_1");
        assert!(message_id(&[e], true).starts_with("msg_"));
    }
}

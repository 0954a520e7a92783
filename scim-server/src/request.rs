//! What a SCIM request carries, read from HTTP: the bearer token, the JSON body (within
//! limits), the query, preconditions and the public base URL.

use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, header};
use scim_protocol::{ListQuery, ScimError};
use serde_json::Value;

use crate::config::Settings;
use crate::error::Error;
use crate::render::Locations;
use crate::response::SCIM_JSON;

/// The query string as axum hands it over (a rejection becomes a SCIM error here).
pub type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The token of `Authorization: Bearer <token>`, if present and non-empty.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// A header as text, if present and readable.
pub fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `attributes`, `filter`, paging... from the query string.
pub fn list_query(q: QueryPairs) -> Result<ListQuery, Error> {
    let Query(pairs) = q.map_err(|e| ScimError::InvalidValue(format!("bad query string: {e}")))?;
    Ok(ListQuery::from_query_pairs(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?)
}

/// Where the directory's resources live as the client sees it (behind proxies that set the
/// `X-Forwarded-*` headers).
pub fn locations(headers: &HeaderMap, ns: &str, dir: &str) -> Locations {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(',').next().unwrap_or("").trim().to_string())
            .filter(|s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._:/[]".contains(&b))
            })
    };
    let proto = h("x-forwarded-proto").unwrap_or_else(|| "http".into());
    let host = h("x-forwarded-host")
        .or_else(|| h("host"))
        .unwrap_or_else(|| "localhost".into());
    let prefix = h("x-forwarded-prefix").unwrap_or_default();
    Locations::new(format!(
        "{proto}://{host}{}/scim/v2/{ns}/{dir}",
        prefix.trim_end_matches('/')
    ))
}

/// Maximum nesting of `[`/`{` in a JSON text (strings skipped). Runs before the parse on
/// bodies up to the size limit, so a string's contents are skipped with `memchr` rather than
/// byte by byte: a 1 MiB attribute value costs microseconds, not a millisecond.
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                i += 1;
                // To the closing quote, stepping over each escaped character.
                loop {
                    let Some(j) = bytes.get(i..).and_then(|r| memchr::memchr2(b'"', b'\\', r))
                    else {
                        // Unterminated: the parser refuses it.
                        return max;
                    };
                    if bytes[i + j] == b'"' {
                        i += j;
                        break;
                    }
                    i += j + 2;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

/// Reads a request body within the configured size limit. A body up to four times the limit
/// is read to its end (and dropped) before a 413 is answered, so the client finishes sending
/// and reads the error instead of hitting a broken pipe. `keep_one_frame`: a body that is one
/// frame is the buffer the middleware read it into, handed on without a copy.
async fn read_within_limit(
    settings: &Settings,
    headers: &HeaderMap,
    body: Body,
    keep_one_frame: bool,
) -> Result<Bytes, Error> {
    let limit = settings.max_body_bytes;
    let too_large = || {
        Error::from(ScimError::PayloadTooLarge(format!(
            "the request body is larger than {limit} bytes"
        )))
    };
    let drain_cap = limit.saturating_mul(4).max(4 * 1024 * 1024);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > drain_cap as u64) {
        return Err(too_large());
    }
    let mut body = body;
    // Frames are joined in one buffer of the declared length (the byte budget has reserved
    // it), not in a vector that doubles, and a body the middleware already read is not copied
    // again: every copy of a 1 MiB body is a megabyte of fresh pages the kernel zeroes, on the
    // cores that answer every other tenant.
    let mut first: Option<Bytes> = None;
    let mut bytes: Vec<u8> = Vec::new();
    let mut seen: usize = 0;
    loop {
        let frame = match http_body_util::BodyExt::frame(&mut body).await {
            None => break,
            Some(Ok(f)) => f,
            Some(Err(_)) => {
                return Err(ScimError::InvalidSyntax(
                    "the request body could not be read to its end".into(),
                )
                .into());
            }
        };
        if let Ok(data) = frame.into_data() {
            seen = seen.saturating_add(data.len());
            if seen > drain_cap {
                return Err(too_large());
            }
            if seen <= limit {
                if first.is_none() && bytes.is_empty() {
                    first = Some(data);
                } else {
                    if let Some(earlier) = first.take() {
                        let declared = declared.map_or(0, |n| n as usize);
                        bytes.reserve(declared.min(limit).max(seen));
                        bytes.extend_from_slice(&earlier);
                    }
                    bytes.extend_from_slice(&data);
                }
            }
        }
    }
    if seen > limit || declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    Ok(match first {
        Some(frame) if keep_one_frame => frame,
        // A frame straight from hyper is a slice of the connection's read buffer: kept, it
        // would hold that whole buffer while the request waits (for a slot, for the
        // apiserver), beyond what the byte budget counts.
        Some(frame) => Bytes::copy_from_slice(&frame),
        None => Bytes::from(bytes),
    })
}

/// Reads a request body from the connection (the middleware does, under the body deadline)
/// into a buffer of its own, within the configured size limit.
pub async fn read_body(
    settings: &Settings,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Error> {
    read_within_limit(settings, headers, body, false).await
}

/// Reads and parses a JSON request body within the configured limits.
pub async fn json_body(
    settings: &Settings,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, Error> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let mime = ct.split(';').next().unwrap_or("").trim();
        if mime != SCIM_JSON && mime != "application/json" {
            return Err(Error::UnsupportedMediaType(mime.to_string()));
        }
    }
    // Every request with a body was read by the middleware before it took a slot.
    let bytes = read_within_limit(settings, headers, body, true).await?;
    if json_depth(&bytes) > settings.max_json_depth {
        return Err(ScimError::InvalidSyntax(format!(
            "the JSON body is nested deeper than {} levels",
            settings.max_json_depth
        ))
        .into());
    }
    Ok(serde_json::from_slice::<Value>(&bytes).map_err(ScimError::from)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(json_depth(br#"{"a":[{"b":"[[[["}]}"#), 3);
        assert_eq!(json_depth(b"1"), 0);
        assert_eq!(json_depth(br#"[{"a\\":"\"[[","b":[1]}]"#), 3);
        assert_eq!(json_depth(br#"[[["\"#), 3);
        assert_eq!(json_depth(br#"[["abc\""#), 2);
    }

    #[tokio::test]
    async fn a_body_is_read_into_a_buffer_of_its_own_once() {
        use clap::Parser;
        let settings = Settings::try_parse_from(["kube-scim-server"]).unwrap();
        let length = |n: usize| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_LENGTH, n.to_string().parse().unwrap());
            headers
        };
        let frames = futures::stream::iter([
            Ok::<_, std::io::Error>(Bytes::from_static(b"{\"a\"")),
            Ok(Bytes::from_static(b":1}")),
        ]);
        let joined = read_body(&settings, &length(7), Body::from_stream(frames))
            .await
            .unwrap();
        assert_eq!(&joined[..], br#"{"a":1}"#);
        // One frame from the connection is copied out of hyper's read buffer...
        let frame = Bytes::from(joined.to_vec());
        let read = read_body(&settings, &length(7), Body::from(frame.clone()))
            .await
            .unwrap();
        assert_eq!(read, frame);
        assert_ne!(read.as_ptr(), frame.as_ptr());
        // ...and the handler takes the middleware's buffer as it is.
        let parsed = json_body(&settings, &length(7), Body::from(read.clone()))
            .await
            .unwrap();
        assert_eq!(parsed["a"], 1);
        let kept = read_within_limit(&settings, &length(7), Body::from(read.clone()), true)
            .await
            .unwrap();
        assert_eq!(kept.as_ptr(), read.as_ptr());
    }

    /// The byte-by-byte scan the fast one replaced: the reference for the property below.
    fn depth_byte_by_byte(bytes: &[u8]) -> usize {
        let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
        for &b in bytes {
            if in_str {
                if esc {
                    esc = false;
                } else if b == b'\\' {
                    esc = true;
                } else if b == b'"' {
                    in_str = false;
                }
                continue;
            }
            match b {
                b'"' => in_str = true,
                b'[' | b'{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        max
    }

    proptest::proptest! {
        #[test]
        fn depth_skips_strings_as_the_byte_scan_does(
            text in proptest::collection::vec(
                proptest::sample::select(b"[]{}\"\\a:,".to_vec()), 0..64)
        ) {
            proptest::prop_assert_eq!(json_depth(&text), depth_byte_by_byte(&text));
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
    }
}

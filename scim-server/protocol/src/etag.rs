//! Resource versions as weak ETags, and `If-Match` / `If-None-Match` (RFC 7644 §3.14,
//! RFC 7232).

use crate::error::{Result, ScimError};

/// Renders a resource version as a weak ETag: `W/"<version>"`. Quotes and backslashes in the
/// version are dropped so the result is always a valid entity-tag.
pub fn etag(version: &str) -> String {
    let clean: String = version
        .chars()
        .filter(|c| *c != '"' && *c != '\\')
        .collect();
    format!("W/\"{clean}\"")
}

/// Extracts the opaque version from an entity-tag (`W/"v"`, `"v"` or a bare `v`).
pub fn parse_etag(tag: &str) -> Option<&str> {
    let t = tag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    let t = t
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(t);
    if t.is_empty() { None } else { Some(t) }
}

/// What a conditional request should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Carry on.
    Proceed,
    /// Answer `304 Not Modified` (GET/HEAD with a matching `If-None-Match`).
    NotModified,
}

/// Whether any tag of a comma-separated header list matches `current` (weak comparison).
fn list_matches(header: &str, current: Option<&str>) -> bool {
    header.split(',').any(|t| {
        let t = t.trim();
        if t == "*" {
            return current.is_some();
        }
        matches!((parse_etag(t), current), (Some(a), Some(b)) if a == b)
    })
}

/// `If-Match`: the write proceeds only if the resource's current version is listed (or the
/// header is `*` and the resource exists). `current` is the raw version, `None` if the
/// resource does not exist. Fails with 412.
pub fn check_if_match(header: Option<&str>, current: Option<&str>) -> Result<()> {
    match header {
        None => Ok(()),
        Some(h) if list_matches(h, current) => Ok(()),
        Some(h) => Err(ScimError::PreconditionFailed(format!(
            "If-Match {h} does not match the current version {}",
            current.map(etag).unwrap_or_else(|| "(none)".into())
        ))),
    }
}

/// `If-None-Match`: for reads (`safe == true`) a match means 304; for writes a match is 412.
pub fn check_if_none_match(
    header: Option<&str>,
    current: Option<&str>,
    safe: bool,
) -> Result<Precondition> {
    match header {
        Some(h) if list_matches(h, current) => {
            if safe {
                Ok(Precondition::NotModified)
            } else {
                Err(ScimError::PreconditionFailed(format!(
                    "If-None-Match {h} matches the current version"
                )))
            }
        }
        _ => Ok(Precondition::Proceed),
    }
}

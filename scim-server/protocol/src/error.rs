//! Typed SCIM errors that render as the RFC 7644 §3.12 Error schema.

use serde_json::{Value, json};

use crate::schema::ERROR_SCHEMA;

/// Every failure the engine (and the server around it) reports to a SCIM client.
///
/// Each variant knows its HTTP status and `scimType`, so the HTTP layer only has to call
/// [`ScimError::status`] and [`ScimError::to_json`]. The `String` is the human-readable
/// detail: it says what was wrong and, where it helps, what was expected instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScimError {
    /// 400 `invalidFilter`: the filter syntax is wrong or a comparison is not allowed.
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// 400 `invalidPath`: a PATCH path (or `attributes`/`sortBy` path) is malformed or unknown.
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// 400 `noTarget`: the path does not select anything the operation can act on.
    #[error("no target: {0}")]
    NoTarget(String),
    /// 400 `invalidValue`: a value has the wrong type, a required attribute is missing, etc.
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// 400 `invalidSyntax`: the request body is not a valid SCIM message.
    #[error("invalid syntax: {0}")]
    InvalidSyntax(String),
    /// 400 `mutability`: the client tried to change a read-only or immutable attribute.
    #[error("mutability: {0}")]
    Mutability(String),
    /// 409 `uniqueness`: a unique attribute (e.g. `userName`) is already taken.
    #[error("uniqueness: {0}")]
    Uniqueness(String),
    /// 400 `tooMany`: the request would make the server process too many results.
    #[error("too many: {0}")]
    TooMany(String),
    /// 400 `invalidVers`: the request names a SCIM version the server does not speak.
    #[error("invalid version: {0}")]
    InvalidVers(String),
    /// 403 `sensitive`: sensitive data in the URL (e.g. a password in a query string).
    #[error("sensitive: {0}")]
    Sensitive(String),
    /// 404: no resource with that id.
    #[error("not found: {0}")]
    NotFound(String),
    /// 412: `If-Match` (or `If-None-Match` on a write) did not hold.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// 413: the request is larger than the server accepts (body, op count, etc.).
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    /// 501: a SCIM feature this server does not implement (bulk, /Me, ...).
    #[error("not implemented: {0}")]
    NotImplemented(String),
    /// 500: a bug or a storage failure; the detail should not leak internals.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ScimError {
    /// HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            ScimError::InvalidFilter(_)
            | ScimError::InvalidPath(_)
            | ScimError::NoTarget(_)
            | ScimError::InvalidValue(_)
            | ScimError::InvalidSyntax(_)
            | ScimError::Mutability(_)
            | ScimError::TooMany(_)
            | ScimError::InvalidVers(_) => 400,
            ScimError::Sensitive(_) => 403,
            ScimError::NotFound(_) => 404,
            ScimError::Uniqueness(_) => 409,
            ScimError::PreconditionFailed(_) => 412,
            ScimError::PayloadTooLarge(_) => 413,
            ScimError::Internal(_) => 500,
            ScimError::NotImplemented(_) => 501,
        }
    }

    /// The RFC 7644 §3.12 `scimType`, where one applies.
    pub fn scim_type(&self) -> Option<&'static str> {
        Some(match self {
            ScimError::InvalidFilter(_) => "invalidFilter",
            ScimError::InvalidPath(_) => "invalidPath",
            ScimError::NoTarget(_) => "noTarget",
            ScimError::InvalidValue(_) => "invalidValue",
            ScimError::InvalidSyntax(_) => "invalidSyntax",
            ScimError::Mutability(_) => "mutability",
            ScimError::Uniqueness(_) => "uniqueness",
            ScimError::TooMany(_) => "tooMany",
            ScimError::InvalidVers(_) => "invalidVers",
            ScimError::Sensitive(_) => "sensitive",
            _ => return None,
        })
    }

    /// Human-readable detail (without the category prefix that `Display` adds).
    pub fn detail(&self) -> &str {
        match self {
            ScimError::InvalidFilter(d)
            | ScimError::InvalidPath(d)
            | ScimError::NoTarget(d)
            | ScimError::InvalidValue(d)
            | ScimError::InvalidSyntax(d)
            | ScimError::Mutability(d)
            | ScimError::Uniqueness(d)
            | ScimError::TooMany(d)
            | ScimError::InvalidVers(d)
            | ScimError::Sensitive(d)
            | ScimError::NotFound(d)
            | ScimError::PreconditionFailed(d)
            | ScimError::PayloadTooLarge(d)
            | ScimError::NotImplemented(d)
            | ScimError::Internal(d) => d,
        }
    }

    /// The SCIM Error message body. `status` is a string, as RFC 7644 §3.12 specifies.
    pub fn to_json(&self) -> Value {
        error_body(self.status(), self.scim_type(), self.detail())
    }
}

/// A SCIM Error message (RFC 7644 §3.12) for any status: the one place its JSON is written, so
/// errors a server adds beside [`ScimError`] (401, 503, ...) look exactly alike.
pub fn error_body(status: u16, scim_type: Option<&str>, detail: &str) -> Value {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.to_string(),
        "detail": detail,
    });
    if let Some(t) = scim_type {
        body["scimType"] = Value::String(t.to_string());
    }
    body
}

/// A request body that is not JSON is `invalidSyntax`.
impl From<serde_json::Error> for ScimError {
    fn from(e: serde_json::Error) -> Self {
        ScimError::InvalidSyntax(format!("the body is not valid JSON: {e}"))
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = ScimError> = std::result::Result<T, E>;

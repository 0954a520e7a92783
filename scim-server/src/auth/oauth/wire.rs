//! The token endpoint's wire format (RFC 6749 §4.4, §5): the request as read from the body
//! and headers, and the answers and errors as sent.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How the client authenticated: RFC 6749 §2.3.1's two ways, or a JWT assertion (RFC 7523
/// §2.2, workload identity federation: see [`crate::auth::federation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic` (`client_secret_basic`).
    Basic,
    /// `client_id` and `client_secret` in the body (`client_secret_post`).
    Body,
    /// `client_assertion_type` jwt-bearer and `client_assertion` in the body.
    Assertion,
}

/// A token request, read and checked for shape (not yet for its credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// How the client authenticated.
    pub auth: ClientAuth,
    /// The client id.
    pub client_id: String,
    /// The client secret as it could have been meant: the form-decoded value, then the raw one
    /// when it differs (clients that do not form-encode before Base64 in Basic).
    pub client_secrets: Vec<String>,
    /// `grant_type`.
    pub grant_type: String,
    /// With [`ClientAuth::Assertion`]: the JWT (and `client_id` may be empty: RFC 7523 makes
    /// it optional).
    pub client_assertion: Option<String>,
}

/// A token endpoint error (RFC 6749 §5.2). The description goes to the client; it never holds a
/// credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Missing, repeated or malformed parameters; two authentication methods at once.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Unknown client, wrong secret, no authentication. `basic`: the client used HTTP Basic, so
    /// the answer carries a Basic challenge.
    #[error("invalid_client: {detail}")]
    InvalidClient {
        /// What failed, as far as the client may know.
        detail: String,
        /// The client authenticated with HTTP Basic.
        basic: bool,
    },
    /// The directory does not allow client credentials.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// A grant type other than `client_credentials`.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// Worth retrying soon (the directory is not ready yet).
    #[error("temporarily_unavailable: {0}")]
    Unavailable(String),
}

impl TokenError {
    pub(super) fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient { .. } => "invalid_client",
            TokenError::UnauthorizedClient(_) => "unauthorized_client",
            TokenError::UnsupportedGrantType(_) => "unsupported_grant_type",
            TokenError::Unavailable(_) => "temporarily_unavailable",
        }
    }

    fn description(&self) -> &str {
        match self {
            TokenError::InvalidRequest(d)
            | TokenError::InvalidClient { detail: d, .. }
            | TokenError::UnauthorizedClient(d)
            | TokenError::UnsupportedGrantType(d)
            | TokenError::Unavailable(d) => d,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            // §5.2 allows 401 for invalid_client whichever way the client authenticated, and
            // requires it (with a challenge) for HTTP Basic.
            TokenError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            TokenError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Answers of the token endpoint are never cached (RFC 6749 §5.1).
fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code(), "error_description": self.description()});
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        no_store(headers);
        match &self {
            TokenError::InvalidClient { basic: true, .. } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"kube-scim\""),
                );
            }
            TokenError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            }
            _ => {}
        }
        response
    }
}

/// A successful token answer (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenAnswer {
    /// The access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl IntoResponse for TokenAnswer {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::OK, Json(self)).into_response();
        no_store(response.headers_mut());
        response
    }
}

/// One `application/x-www-form-urlencoded` component, decoded (`+` is a space).
fn form_decode(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// The client id and secret(s) of an `Authorization: Basic` value (RFC 6749 §2.3.1: each
/// form-encoded, then joined with `:` and Base64-encoded).
fn basic_credentials(value: &str) -> Result<(String, Vec<String>), TokenError> {
    let bad = |why: &str| TokenError::InvalidClient {
        detail: format!("the Basic credentials are malformed: {why}"),
        basic: true,
    };
    let decoded = STANDARD
        .decode(value.trim())
        .map_err(|_| bad("not Base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| bad("not UTF-8"))?;
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(|| bad("no ':' between client id and secret"))?;
    let id = form_decode(id).ok_or_else(|| bad("the client id is not form-encoded UTF-8"))?;
    let mut secrets = Vec::new();
    if let Some(s) = form_decode(secret) {
        secrets.push(s);
    }
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
    }
    Ok((id, secrets))
}

/// Reads a token request: the `Authorization` header (if any), the `Content-Type` and the body.
/// Checks its shape only; the credentials are checked by the caller.
pub fn parse_request(
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<TokenRequest, TokenError> {
    let basic = authorization
        .map(str::trim)
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, rest)| rest);
    if authorization.is_some() && basic.is_none() {
        return Err(TokenError::InvalidClient {
            detail: "the token endpoint takes client credentials by HTTP Basic or in the body, \
                     not another Authorization scheme"
                .into(),
            basic: false,
        });
    }
    let form = content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| {
            c.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(TokenError::InvalidRequest(
            "send the parameters as application/x-www-form-urlencoded".into(),
        ));
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(body) {
        // §3.2: parameters without a value are treated as omitted; none may repeat.
        if v.is_empty() {
            continue;
        }
        if params.iter().any(|(seen, _)| *seen == k) {
            return Err(TokenError::InvalidRequest(format!(
                "parameter {k} is given more than once"
            )));
        }
        params.push((k.into_owned(), v.into_owned()));
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let grant_type = param("grant_type")
        .ok_or_else(|| TokenError::InvalidRequest("grant_type is missing".into()))?;
    let (body_id, body_secret) = (param("client_id"), param("client_secret"));
    let (assertion_type, assertion) = (param("client_assertion_type"), param("client_assertion"));
    if assertion_type.is_some() || assertion.is_some() {
        if basic.is_some() || body_secret.is_some() {
            return Err(TokenError::InvalidRequest(
                "the client authenticated both with a client assertion and with a client \
                 secret; use one"
                    .into(),
            ));
        }
        let (Some(assertion_type), Some(assertion)) = (assertion_type, assertion) else {
            return Err(TokenError::InvalidRequest(
                "client_assertion_type and client_assertion go together".into(),
            ));
        };
        if assertion_type != crate::auth::federation::ASSERTION_TYPE {
            return Err(TokenError::InvalidClient {
                detail: format!(
                    "client_assertion_type must be {}",
                    crate::auth::federation::ASSERTION_TYPE
                ),
                basic: false,
            });
        }
        return Ok(TokenRequest {
            auth: ClientAuth::Assertion,
            client_id: body_id.unwrap_or_default(),
            client_secrets: Vec::new(),
            grant_type,
            client_assertion: Some(assertion),
        });
    }
    let (auth, client_id, client_secrets) = match basic {
        Some(value) => {
            if body_secret.is_some() {
                return Err(TokenError::InvalidRequest(
                    "the client authenticated both by HTTP Basic and with client_secret in the \
                     body; use one"
                        .into(),
                ));
            }
            let (id, secrets) = basic_credentials(value)?;
            if body_id.as_ref().is_some_and(|b| *b != id) {
                return Err(TokenError::InvalidRequest(
                    "client_id in the body differs from the one in HTTP Basic".into(),
                ));
            }
            (ClientAuth::Basic, id, secrets)
        }
        None => match (body_id, body_secret) {
            (Some(id), Some(secret)) => (ClientAuth::Body, id, vec![secret]),
            (None, None) => {
                return Err(TokenError::InvalidClient {
                    detail: "no client credentials: send client_id and client_secret by HTTP \
                             Basic or in the body"
                        .into(),
                    basic: false,
                });
            }
            (Some(_), None) => {
                return Err(TokenError::InvalidClient {
                    detail: "client_secret is missing".into(),
                    basic: false,
                });
            }
            (None, Some(_)) => {
                return Err(TokenError::InvalidRequest("client_id is missing".into()));
            }
        },
    };
    Ok(TokenRequest {
        auth,
        client_id,
        client_secrets,
        grant_type,
        client_assertion: None,
    })
}

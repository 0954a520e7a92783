//! The one error type of the SCIM server, and the one place it becomes a response.
//!
//! Every failure a request can end in is an [`Error`]; storage failures arrive as
//! [`StoreError`] and are mapped here once. The JSON body always comes from
//! [`scim_protocol::error::error_body`], the same function that renders [`ScimError`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scim_protocol::ScimError;
use scim_protocol::error::error_body;

use crate::storage::StoreError;

/// A failed SCIM request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A protocol error with its own status and `scimType`.
    #[error(transparent)]
    Scim(#[from] ScimError),
    /// No credentials at all (RFC 6750 §3.1: the challenge then carries no error code).
    #[error("a bearer token is required")]
    NoToken,
    /// A bearer token that does not open the directory.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Worth retrying soon: starting, overloaded, timed out, storage unavailable, lost races.
    #[error("{detail}")]
    Unavailable {
        /// What happened.
        detail: String,
        /// Seconds the client should wait (the Retry-After header).
        retry_after_secs: u32,
    },
    /// The body is neither `application/scim+json` nor `application/json`.
    #[error("Content-Type {0:?} is not accepted; send application/scim+json or application/json")]
    UnsupportedMediaType(String),
    /// Too many failed authentications from this address or on this directory: retry after
    /// this many seconds.
    #[error("too many failed authentications; retry later")]
    Throttled(u32),
    /// The request headers are larger than the configured limit.
    #[error("request headers exceed {0} bytes")]
    HeadersTooLarge(usize),
    /// The request body did not arrive within the body read timeout.
    #[error("the request body was not received within {0} s; send the whole body at once")]
    BodyTimeout(u64),
    /// The path matches no endpoint.
    #[error("no such endpoint")]
    NoEndpoint,
    /// The endpoint exists, the method does not.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// The directory is suspended (`spec.suspend`): writes wait until it is resumed.
    #[error(
        "the SCIM directory {0} is suspended by its Kubernetes administrator (spec.suspend); nothing was changed; retry later"
    )]
    Suspended(String),
    /// The cluster refuses our writes (RBAC): an operator problem, not the client's.
    #[error("the server is not permitted to store this resource")]
    NotPermitted,
}

/// Retry-After of a suspended directory's answers, in seconds. Entra retries a failed
/// operation in a later cycle whatever it says; other clients get a sensible pause.
const SUSPENDED_RETRY_AFTER: u32 = 600;

impl Error {
    /// 503 with Retry-After.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u32) -> Self {
        Error::Unavailable {
            detail: detail.into(),
            retry_after_secs,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Error::Scim(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Error::NoEndpoint => StatusCode::NOT_FOUND,
            Error::NoToken | Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Unavailable { .. } | Error::Suspended(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::NotPermitted => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn scim_type(&self) -> Option<&'static str> {
        match self {
            Error::Scim(e) => e.scim_type(),
            Error::UnsupportedMediaType(_) => Some("invalidSyntax"),
            _ => None,
        }
    }

    fn detail(&self) -> String {
        match self {
            Error::Scim(e) => e.detail().to_string(),
            other => other.to_string(),
        }
    }
}

/// Storage failures as SCIM clients see them. Callers that treat NotFound or a conflict
/// specially match on [`StoreError`] before converting.
impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => {
                Error::Scim(ScimError::NotFound("the resource does not exist".into()))
            }
            StoreError::Rejected(message) => {
                // The apiserver's message names objects, fields and validation rules of the
                // cluster: logged for the operator, not sent to the client.
                tracing::warn!(%message, "the apiserver rejected a write");
                Error::Scim(ScimError::InvalidValue(
                    "the resource was rejected by the cluster (a value is outside what it \
                     accepts, e.g. too long); nothing was changed"
                        .into(),
                ))
            }
            StoreError::Forbidden(message) => {
                tracing::error!(%message, "the server is not allowed to write");
                Error::NotPermitted
            }
            StoreError::AlreadyExists | StoreError::Conflict | StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "apiserver call failed");
                Error::unavailable("the storage backend is unavailable; retry later", 5)
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = error_body(status.as_u16(), self.scim_type(), &self.detail());
        let mut response = crate::response::scim_json(status, &body);
        let extra = match &self {
            Error::NoToken => Some((
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"kube-scim\"".to_string(),
            )),
            Error::Unauthorized(_) => Some((
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"kube-scim\", error=\"invalid_token\"".to_string(),
            )),
            Error::Unavailable {
                retry_after_secs, ..
            } => Some((header::RETRY_AFTER, retry_after_secs.to_string())),
            Error::Suspended(_) => Some((header::RETRY_AFTER, SUSPENDED_RETRY_AFTER.to_string())),
            Error::Throttled(secs) => Some((header::RETRY_AFTER, secs.to_string())),
            _ => None,
        };
        if let Some((name, value)) = extra
            && let Ok(value) = HeaderValue::from_str(&value)
        {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

//! SCIM responses: `application/scim+json` bodies, with ETag and Location where they apply.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scim_protocol::{ListQuery, Resource};
use serde_json::Value;

/// SCIM media type.
pub const SCIM_JSON: &str = "application/scim+json";

/// A JSON body with `Content-Type: application/scim+json`.
pub fn scim_json(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    r
}

/// One resource, projected by `q` if given; its version as ETag, and on 201 its Location.
pub fn resource(status: StatusCode, r: &Resource, q: Option<&ListQuery>) -> Response {
    let body = match q {
        Some(q) => q.project(r),
        None => r.to_json(),
    };
    let mut resp = scim_json(status, &body);
    if let Some(tag) = r.version_etag()
        && let Ok(v) = HeaderValue::from_str(tag)
    {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Some(loc) = r
            .attributes()
            .get("meta")
            .and_then(|m| m.get("location"))
            .and_then(Value::as_str)
        && let Ok(v) = HeaderValue::from_str(loc)
    {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

//! The routers: which path and method reach which adapter. Nothing else.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Router, middleware};
use scim_protocol::ResourceKind;

use crate::AppState;
use crate::error::Error;
use crate::handlers::{self as h, Kinds};
use crate::middleware::guard;
use crate::storage::Storage;

/// The SCIM API router: `/scim/v2/{namespace}/{directory}/...`.
pub fn scim<S: Storage>(st: Arc<AppState<S>>) -> Router {
    let base = "/scim/v2/{ns}/{dir}";
    let mut router = Router::new();
    for kind in [ResourceKind::User, ResourceKind::Group] {
        // The adapters learn the kind from the route they were reached through.
        let serves = |m: MethodRouter<Arc<AppState<S>>>| -> MethodRouter<Arc<AppState<S>>> {
            m.layer::<_, Infallible>(Extension(kind))
                .layer::<_, Infallible>(Extension(Kinds::of(kind)))
        };
        let at = format!("{base}{}", kind.endpoint());
        router = router
            .route(&at, serves(get(h::list::<S>).post(h::create::<S>)))
            .route(&format!("{at}/.search"), serves(post(h::search::<S>)))
            .route(
                &format!("{at}/{{id}}"),
                serves(
                    get(h::get::<S>)
                        .put(h::replace::<S>)
                        .patch(h::patch::<S>)
                        .delete(h::delete::<S>),
                ),
            );
    }
    router
        .route(
            &format!("{base}/.search"),
            post(h::search::<S>).layer::<_, Infallible>(Extension(Kinds(&[
                ResourceKind::User,
                ResourceKind::Group,
            ]))),
        )
        .route(
            &format!("{base}/ServiceProviderConfig"),
            get(h::service_provider_config::<S>),
        )
        .route(
            &format!("{base}/ResourceTypes"),
            get(h::resource_types::<S>),
        )
        .route(
            &format!("{base}/ResourceTypes/{{name}}"),
            get(h::resource_type::<S>),
        )
        .route(&format!("{base}/Schemas"), get(h::schemas::<S>))
        .route(&format!("{base}/Schemas/{{name}}"), get(h::schema::<S>))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<S>))
        .fallback(|| async { Error::NoEndpoint })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(st.clone(), guard::<S>))
        .with_state(st)
}

/// The metrics and probes router.
pub fn ops<S: Storage>(st: Arc<AppState<S>>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::<S>))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<S>))
        .with_state(st)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz<S: Storage>(State(st): State<Arc<AppState<S>>>) -> Response {
    if st.directory.cache().is_synced() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced").into_response()
    }
}

async fn metrics<S: Storage>(State(st): State<Arc<AppState<S>>>) -> Response {
    let mut r = st.metrics.render(st.directory.cache()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

//! The routers: which path and method reach which adapter. Nothing else.

use std::convert::Infallible;
use std::sync::Arc;

use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Router, middleware};
use scim_protocol::ResourceKind;

use kube_scim_runtime::probes::{self, Probe};

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
        .route(
            &format!("{base}{}", crate::auth::oauth::TOKEN_PATH),
            post(h::oauth_token::<S>),
        )
        .route(&format!("{base}/Schemas"), get(h::schemas::<S>))
        .route(&format!("{base}/Schemas/{{name}}"), get(h::schema::<S>))
        .fallback(|| async { Error::NoEndpoint })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(st.clone(), guard::<S>))
        .with_state(st.clone())
        .merge(probes::health(st))
}

/// The metrics and probes router.
pub fn ops<S: Storage>(st: Arc<AppState<S>>) -> Router {
    probes::router(st)
}

/// The SCIM API port answers the probes too (outside the request middleware).
impl<S: Storage> Probe for AppState<S> {
    fn ready(&self) -> Result<&'static str, &'static str> {
        if self.draining.load(std::sync::atomic::Ordering::Acquire) {
            Err("shutting down")
        } else if self.directory.cache().is_synced() {
            Ok("ready")
        } else {
            Err("caches not synced")
        }
    }

    fn metrics(&self) -> String {
        self.metrics.render(self.directory.cache())
    }
}

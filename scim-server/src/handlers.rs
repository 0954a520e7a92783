//! Thin HTTP adapters: one per SCIM verb, for whichever resource kind the route serves. Each
//! reads the request, asks the [`DirectoryService`](crate::directory::DirectoryService) and
//! shapes the response; SCIM decisions live in the service.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scim_protocol::{ListQuery, PatchRequest, Precondition, ResourceKind, ScimError, discovery};

use crate::AppState;
use crate::auth::oauth;
use crate::cache::DirInfo;
use crate::dialect::{self, PatchAnswer};
use crate::directory::{Change, DirRef, Reply};
use crate::error::Error;
use crate::request::{self, QueryPairs};
use crate::response;
use crate::storage::Storage;

type St<S> = State<Arc<AppState<S>>>;
type Res = Result<Response, Error>;

/// The resource kinds a list or search endpoint covers (both at the directory's `/.search`).
#[derive(Debug, Clone, Copy)]
pub struct Kinds(pub &'static [ResourceKind]);

impl Kinds {
    /// The kinds of `/Users` or `/Groups`.
    pub fn of(kind: ResourceKind) -> Kinds {
        match kind {
            ResourceKind::User => Kinds(&[ResourceKind::User]),
            ResourceKind::Group => Kinds(&[ResourceKind::Group]),
        }
    }
}

fn dir<'a>(ns: &'a str, name: &'a str) -> DirRef<'a> {
    DirRef { ns, name }
}

/// The directory a request was authenticated for, by the admission middleware before the
/// request took a slot (so the credential is checked once per request).
#[derive(Debug, Clone)]
pub struct Authorized(pub Arc<DirInfo>);

type Auth = Option<Extension<Authorized>>;

/// The authenticated directory (a request that reached a handler without passing the
/// middleware's check is refused).
fn authorized(auth: Auth) -> Result<Arc<DirInfo>, Error> {
    auth.map(|Extension(Authorized(info))| info)
        .ok_or(Error::NoToken)
}

/// The same for a write: a suspended directory (`spec.suspend`) refuses it with 503, which the
/// identity provider retries later (see docs/operations.md).
fn authorized_write(auth: Auth, d: DirRef<'_>) -> Result<Arc<DirInfo>, Error> {
    let info = authorized(auth)?;
    if info.suspended {
        return Err(Error::Suspended(format!("{}/{}", d.ns, d.name)));
    }
    Ok(info)
}

fn list_response<S: Storage>(
    st: &AppState<S>,
    (ns, name): (&str, &str),
    headers: &HeaderMap,
    kinds: Kinds,
    q: &ListQuery,
) -> Res {
    let at = request::locations(headers, ns, name);
    let v = st.directory.list(dir(ns, name), kinds.0, q, &at)?;
    Ok(response::scim_json(StatusCode::OK, &v))
}

/// POST /oauth2/token: the directory's OAuth 2.0 token endpoint (client credentials). Its
/// answers and errors are OAuth's (RFC 6749 §5), not SCIM's.
pub async fn oauth_token<S: Storage>(
    State(st): St<S>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // No credential is known before the body is in: it is read under the body deadline and
    // holds no slot meanwhile (see crate::admission).
    let limit = st
        .settings
        .body_read_timeout
        .max(std::time::Duration::from_millis(100));
    let read = axum::body::to_bytes(body, oauth::MAX_REQUEST_BYTES);
    let bytes = match tokio::time::timeout(limit, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return oauth::TokenError::InvalidRequest(format!(
                "the request body is unreadable or larger than {} bytes",
                oauth::MAX_REQUEST_BYTES
            ))
            .into_response();
        }
        Err(_) => {
            return oauth::TokenError::InvalidRequest(format!(
                "the request body was not received within {} s",
                limit.as_secs().max(1)
            ))
            .into_response();
        }
    };
    let request = match oauth::parse_request(
        request::header_str(&headers, header::AUTHORIZATION),
        request::header_str(&headers, header::CONTENT_TYPE),
        &bytes,
    ) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match st
        .directory
        .issue_access_token(dir(&ns, &name), &request)
        .await
    {
        Ok(answer) => answer.into_response(),
        Err(e) => e.into_response(),
    }
}

/// GET /Users, /Groups
pub async fn list<S: Storage>(
    State(st): St<S>,
    Extension(kinds): Extension<Kinds>,
    Path((ns, name)): Path<(String, String)>,
    q: QueryPairs,
    headers: HeaderMap,
    auth: Auth,
) -> Res {
    let q = request::list_query(q)?;
    authorized(auth)?;
    list_response(&st, (&ns, &name), &headers, kinds, &q)
}

/// POST /Users/.search, /Groups/.search, /.search
pub async fn search<S: Storage>(
    State(st): St<S>,
    Extension(kinds): Extension<Kinds>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    auth: Auth,
    body: Body,
) -> Res {
    authorized(auth)?;
    let v = request::json_body(&st.settings, &headers, body).await?;
    let q = ListQuery::from_search_body(&v)?;
    list_response(&st, (&ns, &name), &headers, kinds, &q)
}

/// GET /Users/{id}, /Groups/{id}
pub async fn get<S: Storage>(
    State(st): St<S>,
    Extension(kind): Extension<ResourceKind>,
    Path((ns, name, id)): Path<(String, String, String)>,
    q: QueryPairs,
    headers: HeaderMap,
    auth: Auth,
) -> Res {
    let d = dir(&ns, &name);
    authorized(auth)?;
    let q = request::list_query(q)?;
    let at = request::locations(&headers, &ns, &name);
    let r = st
        .directory
        .get(d, kind, &id, &at, q.wants_members())
        .await?;
    if let Some(inm) = request::header_str(&headers, header::IF_NONE_MATCH) {
        let cur = r.version_etag().and_then(scim_protocol::parse_etag);
        if scim_protocol::check_if_none_match(Some(inm), cur, true)? == Precondition::NotModified {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
    }
    Ok(response::resource(StatusCode::OK, &r, Some(&q)))
}

/// POST /Users, /Groups
pub async fn create<S: Storage>(
    State(st): St<S>,
    Extension(kind): Extension<ResourceKind>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    auth: Auth,
    body: Body,
) -> Res {
    let d = dir(&ns, &name);
    let owner = authorized_write(auth, d)?;
    let v = request::json_body(&st.settings, &headers, body).await?;
    let at = request::locations(&headers, &ns, &name);
    let r = st.directory.create(d, &owner, kind, &v, &at).await?;
    Ok(response::resource(StatusCode::CREATED, &r, None))
}

/// PUT or PATCH of `(ns, name, id)`, with the directory the request was authenticated for.
async fn modify<S: Storage>(
    st: &AppState<S>,
    kind: ResourceKind,
    (ns, name, id): (String, String, String),
    (q, headers, body): (QueryPairs, HeaderMap, Body),
    info: Arc<DirInfo>,
    is_patch: bool,
) -> Res {
    let d = dir(&ns, &name);
    let q = request::list_query(q)?;
    let v = request::json_body(&st.settings, &headers, body).await?;
    let change = if is_patch {
        Change::Patch(PatchRequest::parse(&v)?)
    } else {
        Change::Replace(v)
    };
    let at = request::locations(&headers, &ns, &name);
    let projection = !q.attributes.is_empty() || !q.excluded_attributes.is_empty();
    let silent = is_patch
        && dialect::patch_answer(info.provider, kind, projection) == PatchAnswer::NoContent;
    let reply = if silent {
        Reply::Nothing
    } else {
        Reply::Resource {
            at: &at,
            with_members: q.wants_members(),
        }
    };
    let if_match = request::header_str(&headers, header::IF_MATCH);
    match st
        .directory
        .modify(d, kind, &id, &change, if_match, reply)
        .await?
    {
        Some(r) => Ok(response::resource(StatusCode::OK, &r, Some(&q))),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// PUT /Users/{id}, /Groups/{id}
pub async fn replace<S: Storage>(
    State(st): St<S>,
    Extension(kind): Extension<ResourceKind>,
    Path(path): Path<(String, String, String)>,
    q: QueryPairs,
    headers: HeaderMap,
    auth: Auth,
    body: Body,
) -> Res {
    let info = authorized_write(auth, dir(&path.0, &path.1))?;
    modify(&st, kind, path, (q, headers, body), info, false).await
}

/// PATCH /Users/{id}, /Groups/{id}
pub async fn patch<S: Storage>(
    State(st): St<S>,
    Extension(kind): Extension<ResourceKind>,
    Path(path): Path<(String, String, String)>,
    q: QueryPairs,
    headers: HeaderMap,
    auth: Auth,
    body: Body,
) -> Res {
    let info = authorized_write(auth, dir(&path.0, &path.1))?;
    modify(&st, kind, path, (q, headers, body), info, true).await
}

/// DELETE /Users/{id}, /Groups/{id}
pub async fn delete<S: Storage>(
    State(st): St<S>,
    Extension(kind): Extension<ResourceKind>,
    Path((ns, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    auth: Auth,
) -> Res {
    let d = dir(&ns, &name);
    authorized_write(auth, d)?;
    let if_match = request::header_str(&headers, header::IF_MATCH);
    st.directory.delete(d, kind, &id, if_match).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A discovery document: `render` gets the directory's base URL; `None` is a 404 for `what`.
/// Served without a token (RFC 7644 §4) and the same for every directory path, whether the
/// directory exists or not: the documents say nothing of a directory, and an answer that
/// differed would tell a client without a token which directories exist.
fn discovery_document(
    (ns, name): (&str, &str),
    headers: &HeaderMap,
    what: impl FnOnce() -> String,
    render: impl FnOnce(&str) -> Option<serde_json::Value>,
) -> Res {
    let at = request::locations(headers, ns, name);
    match render(at.base()) {
        Some(v) => Ok(response::scim_json(StatusCode::OK, &v)),
        None => Err(ScimError::NotFound(what()).into()),
    }
}

/// GET /ServiceProviderConfig
pub async fn service_provider_config<S: Storage>(
    State(st): St<S>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let max = st.settings.max_results;
    discovery_document((&ns, &name), &headers, String::new, |base| {
        Some(discovery::service_provider_config(base, max))
    })
}

/// GET /ResourceTypes
pub async fn resource_types<S: Storage>(
    State(_): St<S>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    discovery_document((&ns, &name), &headers, String::new, |base| {
        Some(discovery::resource_types(base))
    })
}

/// GET /ResourceTypes/{name}
pub async fn resource_type<S: Storage>(
    State(_): St<S>,
    Path((ns, name, rt)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Res {
    discovery_document(
        (&ns, &name),
        &headers,
        || format!("no resource type {rt}"),
        |base| discovery::resource_type_by_name(&rt, base),
    )
}

/// GET /Schemas
pub async fn schemas<S: Storage>(
    State(_): St<S>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    discovery_document((&ns, &name), &headers, String::new, |base| {
        Some(discovery::schemas(base))
    })
}

/// GET /Schemas/{id}
pub async fn schema<S: Storage>(
    State(_): St<S>,
    Path((ns, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Res {
    discovery_document(
        (&ns, &name),
        &headers,
        || format!("no schema {id}"),
        |base| discovery::schema_by_id(&id, base),
    )
}

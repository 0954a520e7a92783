//! SCIM endpoint handlers: reads from the cache, writes through [`crate::store::Store`].

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use kube::api::DynamicObject;
use kube_scim_crds::labels;
use scim_protocol::patch::replace_with_delta;
use scim_protocol::query::sort_resources;
use scim_protocol::{
    Filter, IndexHint, ListQuery, MemberRef, MembershipDelta, Meta, PatchRequest, Resource,
    ResourceKind, ScimError, check_if_match, discovery, list_response, validate_create,
};
use serde_json::{Value, json};

use crate::AppState;
use crate::cache::{DirData, Entry, rv_num};
use crate::convert::{merge_diff, status_json};
use crate::http::{ApiError, authorize, read_json, scim_response};
use crate::store::{already_exists, api_code, conflict, to_api_error};

type St = State<Arc<AppState>>;
type Res = Result<Response, ApiError>;
type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Fixed namespace of the UUIDv5 ids (random, generated once for kube-scim).
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b75_6265_7363_696d_8a1c_4f0e_2d9b_7a31);

/// How many deterministic ids are tried when earlier ones are held by renamed resources.
const ID_CANDIDATES: u32 = 8;

/// Deterministic SCIM id of the `attempt`-th candidate for a unique key.
pub fn candidate_id(kind: ResourceKind, ns: &str, dir: &str, key: &str, attempt: u32) -> String {
    let name = format!("{}\n{ns}\n{dir}\n{key}\n{attempt}", kind.name());
    uuid::Uuid::new_v5(&ID_NAMESPACE, name.as_bytes()).to_string()
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

/// The case-folded uniqueness key of a resource (userName / group displayName).
fn unique_key(r: &Resource) -> Option<String> {
    match r.kind() {
        ResourceKind::User => r.user_name(),
        ResourceKind::Group => r.display_name(),
    }
    .map(str::to_lowercase)
}

fn unique_holder(
    d: &DirData,
    kind: ResourceKind,
    key: &str,
    except: Option<&str>,
) -> Option<String> {
    let idx = match kind {
        ResourceKind::User => &d.user_name,
        ResourceKind::Group => &d.group_name,
    };
    idx.get(key)?
        .iter()
        .find(|id| Some(&***id) != except)
        .map(|id| id.to_string())
}

fn uniqueness(kind: ResourceKind) -> ApiError {
    ApiError::from(ScimError::Uniqueness(match kind {
        ResourceKind::User => "a user with this userName already exists in this directory".into(),
        ResourceKind::Group => {
            "a group with this displayName already exists in this directory".into()
        }
    }))
}

fn base_url(headers: &HeaderMap, ns: &str, dir: &str) -> String {
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
    format!(
        "{proto}://{host}{}/scim/v2/{ns}/{dir}",
        prefix.trim_end_matches('/')
    )
}

fn member_ref(d: &DirData, id: &str, base: &str) -> Option<MemberRef> {
    let kind = d.kind_of(id)?;
    let e = d.get(kind, id)?;
    let display = e.display.as_deref().map(str::to_string);
    Some(MemberRef {
        value: id.to_string(),
        kind: Some(kind.name().to_string()),
        display,
        reference: Some(format!("{base}{}/{id}", kind.endpoint())),
    })
}

/// The resource as served: meta, `groups` (users) and, if asked, `members` (groups).
fn render(
    d: &DirData,
    kind: ResourceKind,
    e: &Entry,
    base: &str,
    with_members: bool,
) -> Result<Resource, ScimError> {
    let mut r = e.resource()?;
    r.set_meta(&Meta {
        created: e.created.clone(),
        last_modified: e.last_modified.clone(),
        version: e.rv_str.clone(),
        location: format!("{base}{}/{}", kind.endpoint(), e.id),
    });
    if kind == ResourceKind::User {
        let groups: Vec<MemberRef> = e
            .member_of
            .iter()
            .filter_map(|g| {
                let ge = d.groups.get(g)?;
                Some(MemberRef {
                    value: g.clone(),
                    kind: Some("direct".into()),
                    display: ge.display.as_deref().map(str::to_string),
                    reference: Some(format!("{base}/Groups/{g}")),
                })
            })
            .collect();
        r.set_groups(&groups);
    } else if with_members {
        let mut members: Vec<MemberRef> = d
            .members
            .get(&e.id)
            .map(|s| s.iter().filter_map(|m| member_ref(d, m, base)).collect())
            .unwrap_or_default();
        members.sort_by(|a, b| a.value.cmp(&b.value));
        r.set_members(&members);
    }
    Ok(r)
}

fn resource_response(status: StatusCode, r: &Resource, q: Option<&ListQuery>) -> Response {
    let body = match q {
        Some(q) => q.project(r),
        None => r.to_json(),
    };
    let mut resp = scim_response(status, &body);
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

fn parse_query(q: QueryPairs) -> Result<ListQuery, ApiError> {
    let Query(pairs) =
        q.map_err(|e| ApiError::from(ScimError::InvalidValue(format!("bad query string: {e}"))))?;
    Ok(ListQuery::from_query_pairs(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?)
}

fn filter_mentions(f: &Filter, names: &[&str]) -> bool {
    match f {
        Filter::And(v) | Filter::Or(v) => v.iter().any(|c| filter_mentions(c, names)),
        Filter::Not(c) => filter_mentions(c, names),
        Filter::Compare { path, .. } | Filter::Present(path) | Filter::ValuePath(path) => {
            names.iter().any(|n| path.attr.eq_ignore_ascii_case(n))
        }
    }
}

fn wants_members(q: &ListQuery) -> bool {
    let named = |v: &Vec<scim_protocol::AttrPath>| {
        v.iter()
            .any(|p| p.schema.is_none() && p.attr.eq_ignore_ascii_case("members"))
    };
    !named(&q.excluded_attributes) && (q.attributes.is_empty() || named(&q.attributes))
}

/// Candidate entries for a filter from the indexes, or every entry of the kind.
fn candidates<'a>(d: &'a DirData, kind: ResourceKind, f: Option<&Filter>) -> Vec<&'a Arc<Entry>> {
    let ids = |m: &'a crate::cache::DirData, set: Option<&Vec<Box<str>>>| {
        set.map(|s| {
            s.iter()
                .filter_map(|id| m.get(kind, id))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
    };
    if let Some(f) = f {
        for h in f.index_hints() {
            let hit = match (kind, &h) {
                (_, IndexHint::Id(x)) => Some(d.get(kind, x).into_iter().collect()),
                (ResourceKind::User, IndexHint::UserName(x)) => {
                    Some(ids(d, d.user_name.get(x.to_lowercase().as_str())))
                }
                (ResourceKind::User, IndexHint::ExternalId(x)) => {
                    Some(ids(d, d.user_ext.get(x.as_str())))
                }
                (ResourceKind::Group, IndexHint::ExternalId(x)) => {
                    Some(ids(d, d.group_ext.get(x.as_str())))
                }
                (ResourceKind::Group, IndexHint::DisplayName(x)) => {
                    Some(ids(d, d.group_name.get(x.to_lowercase().as_str())))
                }
                (ResourceKind::User, IndexHint::WorkEmail(x) | IndexHint::Email(x)) => {
                    Some(ids(d, d.user_email.get(x.to_lowercase().as_str())))
                }
                (ResourceKind::Group, IndexHint::MemberValue(x)) => {
                    let of = d
                        .kind_of(x)
                        .and_then(|k| d.get(k, x))
                        .map(|e| e.member_of.clone())
                        .unwrap_or_default();
                    Some(of.iter().filter_map(|g| d.groups.get(g)).collect())
                }
                _ => None,
            };
            if let Some(mut v) = hit {
                v.sort_by(|a, b| a.id.cmp(&b.id));
                return v;
            }
        }
    }
    let mut all: Vec<&Arc<Entry>> = match kind {
        ResourceKind::User => d.users.values().collect(),
        ResourceKind::Group => d.groups.values().collect(),
    };
    all.sort_by(|a, b| a.id.cmp(&b.id));
    all
}

/// Filtered, sorted resources of one kind (rendered only where the filter needs it).
fn query_kind(
    d: &DirData,
    kind: ResourceKind,
    q: &ListQuery,
    base: &str,
) -> Vec<(Arc<Entry>, Option<Resource>)> {
    let f = q.filter.as_ref();
    let need_render = f.is_some_and(|f| filter_mentions(f, &["meta", "groups", "members"]))
        || q.sort_by.as_ref().is_some_and(|p| {
            ["meta", "groups", "members"]
                .iter()
                .any(|n| p.attr.eq_ignore_ascii_case(n))
        });
    let mut hits: Vec<(Arc<Entry>, Option<Resource>)> = Vec::new();
    for e in candidates(d, kind, f) {
        if need_render {
            let Ok(r) = render(d, kind, e, base, true) else {
                continue;
            };
            if f.is_none_or(|f| f.matches(&r)) {
                hits.push((e.clone(), Some(r)));
            }
        } else {
            // Without a filter nothing is parsed here: only the returned page is.
            let hit = match f {
                None => true,
                Some(f) => e.resource().is_ok_and(|r| f.matches(&r)),
            };
            if hit {
                hits.push((e.clone(), None));
            }
        }
    }
    if let Some(sb) = &q.sort_by {
        let rendered: Vec<Resource> = hits
            .iter()
            .filter_map(|(e, r)| r.clone().or_else(|| e.resource().ok()))
            .collect();
        let mut order: Vec<&Resource> = rendered.iter().collect();
        sort_resources(kind, &mut order, sb, q.sort_order);
        let pos: BTreeMap<&str, usize> = order
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.id().map(|id| (id, i)))
            .collect();
        hits.sort_by_key(|(e, _)| pos.get(e.id.as_str()).copied().unwrap_or(usize::MAX));
    }
    hits
}

fn run_list(
    st: &AppState,
    ns: &str,
    dir: &str,
    kinds: &[ResourceKind],
    q: &ListQuery,
    base: &str,
) -> Result<Value, ApiError> {
    for k in kinds {
        q.validate(*k)?;
    }
    let max = st.settings.max_results;
    Ok(st.cache.read(ns, dir, |d| {
        let mut all = Vec::new();
        for &k in kinds {
            for h in query_kind(d, k, q, base) {
                all.push((k, h));
            }
        }
        let total = all.len();
        let start = q.start_index.max(1);
        let page: Vec<Value> = all
            .into_iter()
            .skip(start - 1)
            .take(q.page_size(max))
            .filter_map(|(k, (e, _))| {
                let with_members = k == ResourceKind::Group && wants_members(q);
                render(d, k, &e, base, with_members)
                    .ok()
                    .map(|r| q.project(&r))
            })
            .collect();
        list_response(page, total, start)
    }))
}

async fn list(
    st: Arc<AppState>,
    ns: String,
    dir: String,
    headers: HeaderMap,
    kinds: &[ResourceKind],
    q: ListQuery,
) -> Res {
    authorize(&st, &ns, &dir, &headers)?;
    let base = base_url(&headers, &ns, &dir);
    let v = run_list(&st, &ns, &dir, kinds, &q, &base)?;
    Ok(scim_response(StatusCode::OK, &v))
}

/// GET /Users
pub async fn list_users(
    State(st): St,
    Path((ns, dir)): Path<(String, String)>,
    q: QueryPairs,
    headers: HeaderMap,
) -> Res {
    let q = parse_query(q)?;
    list(st, ns, dir, headers, &[ResourceKind::User], q).await
}

/// GET /Groups
pub async fn list_groups(
    State(st): St,
    Path((ns, dir)): Path<(String, String)>,
    q: QueryPairs,
    headers: HeaderMap,
) -> Res {
    let q = parse_query(q)?;
    list(st, ns, dir, headers, &[ResourceKind::Group], q).await
}

async fn search(
    st: Arc<AppState>,
    ns: String,
    dir: String,
    headers: HeaderMap,
    body: Body,
    kinds: &[ResourceKind],
) -> Res {
    authorize(&st, &ns, &dir, &headers)?;
    let v = read_json(&st, &headers, body).await?;
    let q = ListQuery::from_search_body(&v)?;
    list(st, ns, dir, headers, kinds, q).await
}

/// POST /Users/.search
pub async fn search_users(
    State(st): St,
    Path((ns, dir)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Res {
    search(st, ns, dir, headers, body, &[ResourceKind::User]).await
}

/// POST /Groups/.search
pub async fn search_groups(
    State(st): St,
    Path((ns, dir)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Res {
    search(st, ns, dir, headers, body, &[ResourceKind::Group]).await
}

/// POST /.search
pub async fn search_all(
    State(st): St,
    Path((ns, dir)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Res {
    search(
        st,
        ns,
        dir,
        headers,
        body,
        &[ResourceKind::User, ResourceKind::Group],
    )
    .await
}

async fn get_one(
    st: Arc<AppState>,
    ns: String,
    dir: String,
    id: String,
    headers: HeaderMap,
    q: QueryPairs,
    kind: ResourceKind,
) -> Res {
    authorize(&st, &ns, &dir, &headers)?;
    let q = parse_query(q)?;
    let base = base_url(&headers, &ns, &dir);
    let r = st.cache.read(&ns, &dir, |d| {
        d.get(kind, &id).map(|e| {
            render(
                d,
                kind,
                e,
                &base,
                kind == ResourceKind::Group && wants_members(&q),
            )
        })
    });
    let Some(r) = r else {
        return Err(ScimError::NotFound(format!("no {} with id {id}", kind.name())).into());
    };
    let r = r?;
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let cur = r.version_etag().and_then(scim_protocol::parse_etag);
        if scim_protocol::check_if_none_match(Some(inm), cur, true)?
            == scim_protocol::Precondition::NotModified
        {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
    }
    Ok(resource_response(StatusCode::OK, &r, Some(&q)))
}

/// GET /Users/{id}
pub async fn get_user(
    State(st): St,
    Path((ns, dir, id)): Path<(String, String, String)>,
    q: QueryPairs,
    headers: HeaderMap,
) -> Res {
    get_one(st, ns, dir, id, headers, q, ResourceKind::User).await
}

/// GET /Groups/{id}
pub async fn get_group(
    State(st): St,
    Path((ns, dir, id)): Path<(String, String, String)>,
    q: QueryPairs,
    headers: HeaderMap,
) -> Res {
    get_one(st, ns, dir, id, headers, q, ResourceKind::Group).await
}

fn managed_labels(kind: ResourceKind, dir: &str, r: &Resource) -> serde_json::Map<String, Value> {
    let mut l = serde_json::Map::new();
    l.insert(labels::DIRECTORY.into(), dir.into());
    if kind == ResourceKind::User {
        let active = r.active().unwrap_or(true);
        l.insert(labels::ACTIVE.into(), active.to_string().into());
    }
    l
}

fn new_object(
    kind: ResourceKind,
    ns: &str,
    dir: &str,
    dir_uid: &str,
    id: &str,
    r: &Resource,
    status: Value,
) -> Result<DynamicObject, ApiError> {
    let v = json!({
        "apiVersion": format!("{}/{}", kube_scim_crds::GROUP, kube_scim_crds::VERSION),
        "kind": match kind { ResourceKind::User => "ScimUser", ResourceKind::Group => "ScimGroup" },
        "metadata": {
            "name": id,
            "namespace": ns,
            "labels": managed_labels(kind, dir, r),
            "ownerReferences": [{
                "apiVersion": format!("{}/{}", kube_scim_crds::GROUP, kube_scim_crds::VERSION),
                "kind": "ScimDirectory",
                "name": dir,
                "uid": dir_uid,
                "controller": false,
                "blockOwnerDeletion": false
            }]
        },
        "spec": { "directoryRef": { "name": dir } },
        "status": status,
    });
    serde_json::from_value(v)
        .map_err(|e| ApiError::from(ScimError::Internal(format!("object: {e}"))))
}

/// Looks up ids unknown to the cache on the apiserver (objects another replica just wrote).
async fn resolve_unknown(
    st: &AppState,
    ns: &str,
    ids: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    // Only plausible object names, and only a few lookups per request: the ids come from
    // the client.
    const MAX_LOOKUPS: usize = 20;
    let (plausible, mut still): (Vec<String>, Vec<String>) = ids.into_iter().partition(|id| {
        !id.is_empty()
            && id.len() <= 253
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    });
    if plausible.len() > MAX_LOOKUPS {
        still.extend(plausible);
        return Ok(still);
    }
    for id in plausible {
        let mut found = false;
        for kind in [ResourceKind::User, ResourceKind::Group] {
            match st.store.get(kind, ns, &id).await {
                Ok(Some(o)) => {
                    st.cache.apply_object(kind, &o);
                    found = true;
                    break;
                }
                Ok(None) => {}
                Err(e) => return Err(to_api_error(&e)),
            }
        }
        if !found {
            still.push(id);
        }
    }
    Ok(still)
}

/// Fails with 400 `invalidValue` (before anything is written) if a member id is neither a user
/// nor a group of this directory.
async fn members_exist(
    st: &AppState,
    ns: &str,
    dir: &str,
    ids: impl Iterator<Item = &String>,
) -> Result<(), ApiError> {
    let ids: Vec<String> = ids.cloned().collect();
    let unknown: Vec<String> = st.cache.read(ns, dir, |d| {
        ids.iter()
            .filter(|id| d.kind_of(id).is_none())
            .cloned()
            .collect()
    });
    if !unknown.is_empty() {
        let still = resolve_unknown(st, ns, unknown).await?;
        if !still.is_empty() {
            return Err(ScimError::InvalidValue(format!(
                "members do not exist in this directory (nothing was changed): {}",
                still.join(", ")
            ))
            .into());
        }
    }
    Ok(())
}

/// Writes the membership labels of `delta` for group `gid`. Idempotent: re-running after a
/// partial failure converges.
async fn apply_membership(
    st: &AppState,
    ns: &str,
    dir: &str,
    gid: &str,
    delta: &MembershipDelta,
) -> Result<(), ApiError> {
    if delta.is_empty() {
        return Ok(());
    }
    if delta.added.contains_key(gid) {
        return Err(ScimError::InvalidValue("a group cannot be a member of itself".into()).into());
    }
    members_exist(st, ns, dir, delta.added.keys()).await?;
    let plan: Vec<(ResourceKind, String, bool)> = st.cache.read(ns, dir, |d| {
        let current: HashSet<String> = d.members.get(gid).cloned().unwrap_or_default();
        let mut plan = Vec::new();
        for id in delta.added.keys() {
            if let Some(k) = d.kind_of(id) {
                let labelled = d
                    .get(k, id)
                    .is_some_and(|e| e.member_of.iter().any(|g| g == gid));
                if !labelled {
                    plan.push((k, id.clone(), true));
                }
            }
        }
        let mut removing: Vec<&String> = delta.removed.iter().collect();
        if delta.replace_all {
            removing.extend(current.iter().filter(|m| !delta.added.contains_key(*m)));
        }
        let mut done = HashSet::new();
        for id in removing {
            if done.insert(id.clone())
                && let Some(k) = d.kind_of(id)
                && d.get(k, id)
                    .is_some_and(|e| e.member_of.iter().any(|g| g == gid))
            {
                plan.push((k, id.clone(), false));
            }
        }
        plan
    });
    let key = labels::member_of(gid);
    let results: Vec<Result<(), ApiError>> = futures::stream::iter(plan)
        .map(|(kind, id, on)| {
            let key = key.clone();
            async move {
                let body = json!({"metadata": {"labels": { key: if on { Value::from("true") } else { Value::Null } }}});
                match st.store.patch(kind, ns, &id, &body).await {
                    Ok(o) => {
                        st.cache.apply_object(kind, &o);
                        Ok(())
                    }
                    Err(e) if api_code(&e) == Some(404) => {
                        st.cache.delete_object(kind, ns, &id, 0);
                        if on {
                            Err(ScimError::InvalidValue(format!("member {id} no longer exists")).into())
                        } else {
                            Ok(())
                        }
                    }
                    Err(e) => Err(to_api_error(&e)),
                }
            }
        })
        .buffer_unordered(st.settings.member_write_concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, ApiError>>()?;
    Ok(())
}

async fn create(
    st: Arc<AppState>,
    ns: String,
    dir: String,
    headers: HeaderMap,
    body: Body,
    kind: ResourceKind,
) -> Res {
    let info = authorize(&st, &ns, &dir, &headers)?;
    let v = read_json(&st, &headers, body).await?;
    let mut res = validate_create(kind, &v)?;
    drop(res.take_password());
    let members = if kind == ResourceKind::Group {
        res.members()
    } else {
        Vec::new()
    };
    res.strip_server_attributes();
    let Some(key) = unique_key(&res) else {
        return Err(ScimError::InvalidValue("the unique name attribute is missing".into()).into());
    };
    if st
        .cache
        .read(&ns, &dir, |d| unique_holder(d, kind, &key, None))
        .is_some()
    {
        return Err(uniqueness(kind));
    }
    members_exist(&st, &ns, &dir, members.iter().map(|m| &m.value)).await?;
    let ts = now();
    for attempt in 0..ID_CANDIDATES {
        let id = candidate_id(kind, &ns, &dir, &key, attempt);
        let taken = st.cache.read(&ns, &dir, |d| {
            d.get(kind, &id).is_some()
                || (kind == ResourceKind::Group && d.members.contains_key(&id))
        });
        if taken {
            continue;
        }
        let mut r = res.clone();
        r.set_id(id.clone());
        let status = status_json(&r, &ts, &ts)?;
        let obj = new_object(kind, &ns, &dir, &info.uid, &id, &r, status)?;
        match st.store.create(kind, &ns, &obj).await {
            Ok(created) => {
                let entry = st.cache.apply_object(kind, &created);
                if kind == ResourceKind::Group && !members.is_empty() {
                    let mut delta = MembershipDelta::default();
                    for m in members {
                        delta.added.insert(m.value.clone(), m);
                    }
                    apply_membership(&st, &ns, &dir, &id, &delta).await?;
                }
                let base = base_url(&headers, &ns, &dir);
                let r = st.cache.read(&ns, &dir, |d| {
                    d.get(kind, &id)
                        .or(entry.as_ref())
                        .map(|e| render(d, kind, e, &base, true))
                });
                let Some(r) = r else {
                    return Err(ScimError::Internal(
                        "the created resource could not be read".into(),
                    )
                    .into());
                };
                let r = r?;
                return Ok(resource_response(StatusCode::CREATED, &r, None));
            }
            Err(e) if already_exists(&e) => {
                // Same key created concurrently (here or on another replica), or the id is
                // held by a resource that was renamed since: find out which.
                let holder = match st.cache.read(&ns, &dir, |d| {
                    d.get(kind, &id)
                        .map(|e| e.resource().ok().and_then(|r| unique_key(&r)))
                }) {
                    Some(k) => k,
                    None => match st.store.get(kind, &ns, &id).await {
                        Ok(Some(o)) => st
                            .cache
                            .apply_object(kind, &o)
                            .and_then(|e| e.resource().ok().and_then(|r| unique_key(&r))),
                        Ok(None) => continue,
                        Err(e) => return Err(to_api_error(&e)),
                    },
                };
                if holder.as_deref() == Some(key.as_str()) {
                    return Err(uniqueness(kind));
                }
            }
            Err(e) => return Err(to_api_error(&e)),
        }
    }
    Err(ApiError::unavailable(
        "no free id for this resource; retry",
        1,
    ))
}

/// POST /Users
pub async fn create_user(
    State(st): St,
    Path((ns, dir)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Res {
    create(st, ns, dir, headers, body, ResourceKind::User).await
}

/// POST /Groups
pub async fn create_group(
    State(st): St,
    Path((ns, dir)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Res {
    create(st, ns, dir, headers, body, ResourceKind::Group).await
}

enum Change {
    Patch(PatchRequest),
    Put(Value),
}

async fn modify(
    st: Arc<AppState>,
    (ns, dir, id): (String, String, String),
    headers: HeaderMap,
    q: QueryPairs,
    body: Body,
    kind: ResourceKind,
    is_patch: bool,
) -> Res {
    authorize(&st, &ns, &dir, &headers)?;
    let q = parse_query(q)?;
    let v = read_json(&st, &headers, body).await?;
    let change = if is_patch {
        Change::Patch(PatchRequest::parse(&v)?)
    } else {
        Change::Put(v)
    };
    let if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let retries = st.settings.conflict_retries;
    for _attempt in 0..=retries {
        let Some(entry) = st.cache.read(&ns, &dir, |d| d.get(kind, &id).cloned()) else {
            return Err(ScimError::NotFound(format!("no {} with id {id}", kind.name())).into());
        };
        check_if_match(if_match.as_deref(), Some(&entry.rv_str))?;
        let outcome = match &change {
            Change::Patch(p) => p.apply(&entry.resource()?)?,
            Change::Put(v) => replace_with_delta(&entry.resource()?, v)?,
        };
        let mut newr = outcome.resource;
        drop(newr.take_password());
        newr.strip_server_attributes();
        newr.set_id(id.clone());
        let mut oldr = entry.resource()?;
        oldr.strip_server_attributes();
        oldr.set_id(id.clone());
        let new_key = unique_key(&newr);
        if new_key != unique_key(&oldr)
            && let Some(k) = &new_key
            && st
                .cache
                .read(&ns, &dir, |d| unique_holder(d, kind, k, Some(&id)))
                .is_some()
        {
            return Err(uniqueness(kind));
        }
        if newr.attributes() != oldr.attributes() {
            let old_status = status_json(&oldr, &entry.created, &entry.last_modified)?;
            let new_status = status_json(&newr, &entry.created, &now())?;
            let mut meta = json!({ "resourceVersion": entry.rv_str });
            if kind == ResourceKind::User && newr.active() != oldr.active() {
                meta["labels"] = Value::Object(managed_labels(kind, &dir, &newr));
            }
            let mut patch = json!({ "metadata": meta });
            if let Some(d) = merge_diff(&old_status, &new_status) {
                patch["status"] = d;
            }
            match st.store.patch(kind, &ns, &id, &patch).await {
                Ok(o) => {
                    st.cache.apply_object(kind, &o);
                }
                Err(e) if conflict(&e) => {
                    match st.store.get(kind, &ns, &id).await {
                        Ok(Some(o)) => {
                            st.cache.apply_object(kind, &o);
                        }
                        Ok(None) => st.cache.delete_object(kind, &ns, &id, entry.rv),
                        Err(e) => return Err(to_api_error(&e)),
                    }
                    continue;
                }
                Err(e) if api_code(&e) == Some(404) => {
                    st.cache.delete_object(kind, &ns, &id, entry.rv);
                    return Err(
                        ScimError::NotFound(format!("no {} with id {id}", kind.name())).into(),
                    );
                }
                Err(e) => return Err(to_api_error(&e)),
            }
        }
        if kind == ResourceKind::Group {
            apply_membership(&st, &ns, &dir, &id, &outcome.membership).await?;
            // A group's members are computed from every member object: 204 spares that work
            // (Entra expects 204), unless the client asked for attributes, where RFC 7644
            // §3.5.2 requires 200 with them.
            if is_patch && q.attributes.is_empty() && q.excluded_attributes.is_empty() {
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
        }
        let base = base_url(&headers, &ns, &dir);
        let members = kind == ResourceKind::Group && wants_members(&q);
        let r = st.cache.read(&ns, &dir, |d| {
            d.get(kind, &id).map(|e| render(d, kind, e, &base, members))
        });
        return match r {
            Some(r) => Ok(resource_response(StatusCode::OK, &r?, Some(&q))),
            None => Err(ScimError::NotFound(format!("no {} with id {id}", kind.name())).into()),
        };
    }
    Err(ApiError::unavailable(
        "the resource is being changed concurrently; retry",
        1,
    ))
}

/// PUT /Users/{id}
pub async fn put_user(
    State(st): St,
    Path((ns, dir, id)): Path<(String, String, String)>,
    q: QueryPairs,
    headers: HeaderMap,
    body: Body,
) -> Res {
    modify(
        st,
        (ns, dir, id),
        headers,
        q,
        body,
        ResourceKind::User,
        false,
    )
    .await
}

/// PATCH /Users/{id}
pub async fn patch_user(
    State(st): St,
    Path((ns, dir, id)): Path<(String, String, String)>,
    q: QueryPairs,
    headers: HeaderMap,
    body: Body,
) -> Res {
    modify(
        st,
        (ns, dir, id),
        headers,
        q,
        body,
        ResourceKind::User,
        true,
    )
    .await
}

/// PUT /Groups/{id}
pub async fn put_group(
    State(st): St,
    Path((ns, dir, id)): Path<(String, String, String)>,
    q: QueryPairs,
    headers: HeaderMap,
    body: Body,
) -> Res {
    modify(
        st,
        (ns, dir, id),
        headers,
        q,
        body,
        ResourceKind::Group,
        false,
    )
    .await
}

/// PATCH /Groups/{id}
pub async fn patch_group(
    State(st): St,
    Path((ns, dir, id)): Path<(String, String, String)>,
    q: QueryPairs,
    headers: HeaderMap,
    body: Body,
) -> Res {
    modify(
        st,
        (ns, dir, id),
        headers,
        q,
        body,
        ResourceKind::Group,
        true,
    )
    .await
}

async fn delete(
    st: Arc<AppState>,
    ns: String,
    dir: String,
    id: String,
    headers: HeaderMap,
    kind: ResourceKind,
) -> Res {
    authorize(&st, &ns, &dir, &headers)?;
    let Some(entry) = st.cache.read(&ns, &dir, |d| d.get(kind, &id).cloned()) else {
        return Err(ScimError::NotFound(format!("no {} with id {id}", kind.name())).into());
    };
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    check_if_match(if_match, Some(&entry.rv_str))?;
    if kind == ResourceKind::Group {
        // Membership records live on the members: remove them first, so a failure half-way
        // leaves the group in place and a retried DELETE finishes the job.
        let delta = MembershipDelta {
            replace_all: true,
            ..MembershipDelta::default()
        };
        apply_membership(&st, &ns, &dir, &id, &delta).await?;
    }
    match st.store.delete(kind, &ns, &id).await {
        Ok(rv) => {
            let rv = rv.map(|r| rv_num(&r)).unwrap_or(0).max(entry.rv);
            st.cache.delete_object(kind, &ns, &id, rv);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(e) if api_code(&e) == Some(404) => {
            st.cache.delete_object(kind, &ns, &id, entry.rv);
            Err(ScimError::NotFound(format!("no {} with id {id}", kind.name())).into())
        }
        Err(e) => Err(to_api_error(&e)),
    }
}

/// DELETE /Users/{id}
pub async fn delete_user(
    State(st): St,
    Path((ns, dir, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Res {
    delete(st, ns, dir, id, headers, ResourceKind::User).await
}

/// DELETE /Groups/{id}
pub async fn delete_group(
    State(st): St,
    Path((ns, dir, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Res {
    delete(st, ns, dir, id, headers, ResourceKind::Group).await
}

fn discovery_base(
    st: &AppState,
    ns: &str,
    dir: &str,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    if st.cache.directory(ns, dir).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            None,
            format!("there is no SCIM directory {ns}/{dir}"),
        ));
    }
    Ok(base_url(headers, ns, dir))
}

/// GET /ServiceProviderConfig
pub async fn service_provider_config(
    State(st): St,
    Path((ns, dir)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let base = discovery_base(&st, &ns, &dir, &headers)?;
    Ok(scim_response(
        StatusCode::OK,
        &discovery::service_provider_config(&base, st.settings.max_results),
    ))
}

/// GET /ResourceTypes
pub async fn resource_types(
    State(st): St,
    Path((ns, dir)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let base = discovery_base(&st, &ns, &dir, &headers)?;
    Ok(scim_response(
        StatusCode::OK,
        &discovery::resource_types(&base),
    ))
}

/// GET /ResourceTypes/{name}
pub async fn resource_type(
    State(st): St,
    Path((ns, dir, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Res {
    let base = discovery_base(&st, &ns, &dir, &headers)?;
    match discovery::resource_type_by_name(&name, &base) {
        Some(v) => Ok(scim_response(StatusCode::OK, &v)),
        None => Err(ScimError::NotFound(format!("no resource type {name}")).into()),
    }
}

/// GET /Schemas
pub async fn schemas(
    State(st): St,
    Path((ns, dir)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let base = discovery_base(&st, &ns, &dir, &headers)?;
    Ok(scim_response(StatusCode::OK, &discovery::schemas(&base)))
}

/// GET /Schemas/{id}
pub async fn schema(
    State(st): St,
    Path((ns, dir, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Res {
    let base = discovery_base(&st, &ns, &dir, &headers)?;
    match discovery::schema_by_id(&name, &base) {
        Some(v) => Ok(scim_response(StatusCode::OK, &v)),
        None => Err(ScimError::NotFound(format!("no schema {name}")).into()),
    }
}

//! List queries (RFC 7644 §3.4.2, §3.4.3): parameters, sorting, paging, projection and the
//! ListResponse message.

use std::cmp::Ordering;

use serde_json::{Map, Value, json};

use crate::error::{Result, ScimError};
use crate::filter::eval::{get_ci, sort_cmp, sort_key};
use crate::filter::{AttrPath, Filter, parse_plain_path};
use crate::resource::Resource;
use crate::schema::{AttrDef, LIST_RESPONSE_SCHEMA, ResourceKind, Returned, SEARCH_REQUEST_SCHEMA};

/// `sortOrder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// `ascending` (default)
    #[default]
    Ascending,
    /// `descending`
    Descending,
}

/// Longest `attributes`/`excludedAttributes` list accepted.
pub const MAX_PROJECTION_PATHS: usize = 100;

/// A parsed list/search request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListQuery {
    /// `filter`.
    pub filter: Option<Filter>,
    /// `sortBy`.
    pub sort_by: Option<AttrPath>,
    /// `sortOrder`.
    pub sort_order: SortOrder,
    /// `startIndex`, 1-based (values below 1 are read as 1, RFC 7644 §3.4.2.4).
    pub start_index: usize,
    /// `count`; `None` means "the server's maximum".
    pub count: Option<usize>,
    /// `attributes`.
    pub attributes: Vec<AttrPath>,
    /// `excludedAttributes`.
    pub excluded_attributes: Vec<AttrPath>,
}

fn parse_paths(s: &str) -> Result<Vec<AttrPath>> {
    let parts: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() > MAX_PROJECTION_PATHS {
        return Err(ScimError::InvalidValue(format!(
            "{} attribute paths given; at most {MAX_PROJECTION_PATHS} are accepted",
            parts.len()
        )));
    }
    parts.into_iter().map(parse_plain_path).collect()
}

fn parse_int(name: &str, s: &str) -> Result<i64> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| ScimError::InvalidValue(format!("'{name}' must be an integer, got {s:?}")))
}

fn references_password(f: &Filter) -> bool {
    match f {
        Filter::And(v) | Filter::Or(v) => v.iter().any(references_password),
        Filter::Not(c) => references_password(c),
        Filter::Compare { path, .. } | Filter::Present(path) | Filter::ValuePath(path) => {
            path.attr.eq_ignore_ascii_case("password")
        }
    }
}

impl ListQuery {
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key.to_ascii_lowercase().as_str() {
            "filter" => {
                let f = Filter::parse(value)?;
                if references_password(&f) {
                    return Err(ScimError::Sensitive(
                        "filters on 'password' are not allowed".into(),
                    ));
                }
                self.filter = Some(f);
            }
            "sortby" => {
                let v = value.trim();
                self.sort_by = if v.is_empty() {
                    None
                } else {
                    Some(parse_plain_path(v)?)
                };
            }
            "sortorder" => {
                self.sort_order = match value.trim().to_ascii_lowercase().as_str() {
                    "" | "ascending" => SortOrder::Ascending,
                    "descending" => SortOrder::Descending,
                    _ => {
                        return Err(ScimError::InvalidValue(format!(
                            "'sortOrder' must be ascending or descending, got {value:?}"
                        )));
                    }
                }
            }
            "startindex" => self.start_index = parse_int("startIndex", value)?.max(1) as usize,
            "count" => self.count = Some(parse_int("count", value)?.max(0) as usize),
            "attributes" => self.attributes = parse_paths(value)?,
            "excludedattributes" => self.excluded_attributes = parse_paths(value)?,
            // Unknown parameters (Entra's `aadOptscim062020`, cache busters) are ignored.
            _ => {}
        }
        Ok(())
    }

    /// From URL query parameters (already percent-decoded). Names are matched
    /// case-insensitively; unknown ones are ignored.
    pub fn from_query_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ListQuery> {
        let mut q = ListQuery {
            start_index: 1,
            ..ListQuery::default()
        };
        for (k, v) in pairs {
            q.set(k, v)?;
        }
        Ok(q)
    }

    /// From a `POST /.search` body (RFC 7644 §3.4.3).
    pub fn from_search_body(body: &Value) -> Result<ListQuery> {
        let obj = crate::schema::message_body(body, "search", SEARCH_REQUEST_SCHEMA)?;
        let mut q = ListQuery {
            start_index: 1,
            ..ListQuery::default()
        };
        for (k, v) in obj {
            let text = match v {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Array(a) => {
                    let mut parts = Vec::with_capacity(a.len());
                    for e in a {
                        match e.as_str() {
                            Some(s) => parts.push(s.to_string()),
                            None => {
                                return Err(ScimError::InvalidValue(format!(
                                    "'{k}' must be an array of strings"
                                )));
                            }
                        }
                    }
                    parts.join(",")
                }
                _ if k.eq_ignore_ascii_case("schemas") => continue,
                _ => {
                    return Err(ScimError::InvalidValue(format!("'{k}' has the wrong type")));
                }
            };
            if k.eq_ignore_ascii_case("schemas") {
                continue;
            }
            q.set(k, &text)?;
        }
        Ok(q)
    }

    /// Page size for this query given the server's maximum.
    pub fn page_size(&self, max_results: usize) -> usize {
        self.count.unwrap_or(max_results).min(max_results)
    }

    /// Checks the filter against the schema (see [`Filter::validate`]).
    pub fn validate(&self, kind: ResourceKind) -> Result<()> {
        match &self.filter {
            Some(f) => f.validate(kind),
            None => Ok(()),
        }
    }

    /// The resource as JSON with this query's `attributes`/`excludedAttributes` applied.
    pub fn project(&self, r: &Resource) -> Value {
        project(
            r.to_json(),
            r.kind(),
            &self.attributes,
            &self.excluded_attributes,
        )
    }

    /// [`ListQuery::project`] of a resource no longer needed: its values move into the answer.
    pub fn project_into(&self, r: Resource) -> Value {
        let kind = r.kind();
        project(
            r.into_json(),
            kind,
            &self.attributes,
            &self.excluded_attributes,
        )
    }
}

/// Sorts by `sort_by` with the schema's ordering; unassigned values sort last when ascending
/// (and therefore first when descending).
pub fn sort_resources(
    kind: ResourceKind,
    items: &mut [&Resource],
    sort_by: &AttrPath,
    order: SortOrder,
) {
    sort_by_path(kind, items, |r| r, sort_by, order);
}

/// [`sort_resources`] for items that carry a resource.
pub fn sort_by_path<T>(
    kind: ResourceKind,
    items: &mut [T],
    resource: impl Fn(&T) -> &Resource,
    sort_by: &AttrPath,
    order: SortOrder,
) {
    items.sort_by(|a, b| {
        let (x, def) = sort_key(kind, resource(a).attributes(), sort_by);
        let (y, _) = sort_key(kind, resource(b).attributes(), sort_by);
        let o = match (x, y) {
            (Some(x), Some(y)) => sort_cmp(x, y, def),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        match order {
            SortOrder::Ascending => o,
            SortOrder::Descending => o.reverse(),
        }
    });
}

/// A ListResponse message (RFC 7644 §3.4.2). `itemsPerPage` is the number actually returned,
/// so Entra's connection test gets `totalResults: 0, itemsPerPage: 0, startIndex: 1`.
pub fn list_response(resources: Vec<Value>, total_results: usize, start_index: usize) -> Value {
    let mut m = json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total_results,
        "itemsPerPage": resources.len(),
        "startIndex": start_index.max(1),
    });
    // Moved in: inside `json!` the resources would be serialized into a second copy.
    m["Resources"] = Value::Array(resources);
    m
}

/// Where a projection path points, resolved against the schema.
struct Target<'p> {
    /// `None` = core; `Some(urn)` = extension object key.
    container: Option<String>,
    /// Attribute key; `None` = the whole extension object.
    attr: Option<String>,
    sub: Option<&'p str>,
}

fn resolve_target<'p>(
    kind: ResourceKind,
    json: &Map<String, Value>,
    p: &'p AttrPath,
) -> Target<'p> {
    let whole_ext = p.schema.is_some()
        && p.sub_attr.is_none()
        && (p.attr.eq_ignore_ascii_case("User") || p.attr.eq_ignore_ascii_case("Group"));
    let core = p
        .schema
        .as_deref()
        .is_none_or(|s| s.eq_ignore_ascii_case(kind.schema().id));
    if whole_ext {
        let urn = format!("{}:{}", p.schema.as_deref().unwrap_or_default(), p.attr);
        if !urn.eq_ignore_ascii_case(kind.schema().id) {
            let key = get_ci(json, &urn).map(|(k, _)| k.clone()).unwrap_or(urn);
            return Target {
                container: Some(key),
                attr: None,
                sub: None,
            };
        }
    }
    if core {
        let key = get_ci(json, &p.attr)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| p.attr.clone());
        return Target {
            container: None,
            attr: Some(key),
            sub: p.sub_attr.as_deref(),
        };
    }
    let urn = p.schema.clone().unwrap_or_default();
    let ckey = get_ci(json, &urn).map(|(k, _)| k.clone()).unwrap_or(urn);
    let akey = json
        .get(&ckey)
        .and_then(Value::as_object)
        .and_then(|m| get_ci(m, &p.attr))
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| p.attr.clone());
    Target {
        container: Some(ckey),
        attr: Some(akey),
        sub: p.sub_attr.as_deref(),
    }
}

fn returned_of(kind: ResourceKind, container: Option<&str>, attr: &str) -> Returned {
    let def: Option<&AttrDef> = kind.attr(container, attr);
    match def {
        Some(d) if d.name == "id" => Returned::Always,
        Some(d) => d.returned,
        None => Returned::Default,
    }
}

/// Keeps only `sub` inside a complex value (or every element of a multi-valued one).
fn only_sub(v: &Value, sub: &str) -> Option<Value> {
    let pick = |e: &Value| -> Option<Value> {
        let m = e.as_object()?;
        let (k, v) = get_ci(m, sub)?;
        let mut o = Map::new();
        o.insert(k.clone(), v.clone());
        Some(Value::Object(o))
    };
    match v {
        Value::Array(a) => {
            let out: Vec<Value> = a.iter().filter_map(pick).collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        v => pick(v),
    }
}

fn merge_value(dst: &mut Map<String, Value>, key: &str, v: Value) {
    match (dst.get_mut(key), v) {
        (Some(Value::Object(a)), Value::Object(b)) => a.extend(b),
        (Some(Value::Array(a)), Value::Array(b)) if a.len() == b.len() => {
            for (x, y) in a.iter_mut().zip(b) {
                if let (Some(x), Value::Object(y)) = (x.as_object_mut(), y) {
                    x.extend(y);
                }
            }
        }
        (_, v) => {
            dst.insert(key.to_string(), v);
        }
    }
}

/// Applies `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5) to a resource's JSON.
/// `schemas` and `id` are always returned; `returned: never` attributes never are;
/// `returned: request` ones only when named.
///
/// Takes the resource's JSON by value: without `attributes` (the usual request) its values move
/// into the answer instead of being copied (every filtered read renders this way).
pub fn project(
    resource: Value,
    kind: ResourceKind,
    attributes: &[AttrPath],
    excluded: &[AttrPath],
) -> Value {
    let Value::Object(src) = resource else {
        return resource;
    };
    let mut out = Map::new();
    if attributes.is_empty() {
        for (k, v) in src {
            if k.starts_with("urn:") {
                if let Value::Object(ext) = v {
                    let kept: Map<String, Value> = ext
                        .into_iter()
                        .filter(|(a, _)| {
                            matches!(
                                returned_of(kind, Some(&k), a),
                                Returned::Default | Returned::Always
                            )
                        })
                        .collect();
                    out.insert(k, Value::Object(kept));
                }
            } else if k == "schemas"
                || matches!(
                    returned_of(kind, None, &k),
                    Returned::Default | Returned::Always
                )
            {
                out.insert(k, v);
            }
        }
    } else {
        let src = &src;
        for k in ["schemas", "id"] {
            if let Some(v) = src.get(k) {
                out.insert(k.into(), v.clone());
            }
        }
        for p in attributes {
            let t = resolve_target(kind, src, p);
            match (&t.container, &t.attr) {
                (Some(c), None) => {
                    if let Some(v) = src.get(c) {
                        out.insert(c.clone(), v.clone());
                    }
                }
                (container, Some(a)) => {
                    if returned_of(kind, container.as_deref(), a) == Returned::Never {
                        continue;
                    }
                    let holder = match container {
                        None => Some(src),
                        Some(c) => src.get(c).and_then(Value::as_object),
                    };
                    let Some(v) = holder.and_then(|h| h.get(a)) else {
                        continue;
                    };
                    let v = match t.sub {
                        Some(s) => match only_sub(v, s) {
                            Some(v) => v,
                            None => continue,
                        },
                        None => v.clone(),
                    };
                    match container {
                        None => merge_value(&mut out, a, v),
                        Some(c) => {
                            let e = out
                                .entry(c.clone())
                                .or_insert_with(|| Value::Object(Map::new()));
                            if let Some(m) = e.as_object_mut() {
                                merge_value(m, a, v);
                            }
                        }
                    }
                }
                (None, None) => {}
            }
        }
    }
    // Names resolve against the answer: what `attributes` left out needs no excluding, and
    // the kept keys are spelled as in the resource.
    for p in excluded {
        let t = resolve_target(kind, &out, p);
        match (&t.container, &t.attr) {
            (Some(c), None) => {
                out.remove(c);
            }
            (container, Some(a)) => {
                if returned_of(kind, container.as_deref(), a) == Returned::Always || a == "schemas"
                {
                    continue;
                }
                let holder = match container {
                    None => Some(&mut out),
                    Some(c) => out.get_mut(c).and_then(Value::as_object_mut),
                };
                let Some(h) = holder else { continue };
                match t.sub {
                    None => {
                        h.remove(a);
                    }
                    Some(s) => {
                        let strip = |e: &mut Value| {
                            if let Some(m) = e.as_object_mut() {
                                let k = get_ci(m, s).map(|(k, _)| k.clone());
                                if let Some(k) = k {
                                    m.remove(&k);
                                }
                            }
                        };
                        match h.get_mut(a) {
                            Some(Value::Array(arr)) => arr.iter_mut().for_each(strip),
                            Some(v) => strip(v),
                            None => {}
                        }
                    }
                }
            }
            (None, None) => {}
        }
    }
    // Drop extension objects left empty, and their `schemas` entries, so the output is consistent.
    let empty: Vec<String> = out
        .iter()
        .filter(|(k, v)| k.starts_with("urn:") && v.as_object().is_some_and(Map::is_empty))
        .map(|(k, _)| k.clone())
        .collect();
    for k in &empty {
        out.remove(k);
    }
    let present: Vec<String> = out
        .keys()
        .filter(|k| k.starts_with("urn:"))
        .cloned()
        .collect();
    if let Some(Value::Array(s)) = out.get_mut("schemas") {
        s.retain(|u| {
            u.as_str().is_some_and(|u| {
                u.eq_ignore_ascii_case(kind.schema().id) || present.iter().any(|p| p == u)
            })
        });
    }
    Value::Object(out)
}

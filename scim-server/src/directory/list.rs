//! Lists and searches: candidates from the cache's indexes, then filter, sort, page and
//! project.

use std::collections::BTreeMap;
use std::sync::Arc;

use scim_protocol::query::sort_resources;
use scim_protocol::{Filter, ListQuery, Resource, ResourceKind, list_response};
use serde_json::Value;

use crate::cache::{DirData, Entry};
use crate::render::{self, Locations};

/// Attributes that exist only once rendered (not in the stored resource).
const RENDERED: [&str; 3] = ["meta", "groups", "members"];

fn mentions_rendered(f: &Filter) -> bool {
    match f {
        Filter::And(v) | Filter::Or(v) => v.iter().any(mentions_rendered),
        Filter::Not(c) => mentions_rendered(c),
        Filter::Compare { path, .. } | Filter::Present(path) | Filter::ValuePath(path) => {
            RENDERED.iter().any(|n| path.attr.eq_ignore_ascii_case(n))
        }
    }
}

/// Candidate entries for a filter: from the first index a hint of the filter names, else
/// every entry of the kind; in id order.
fn candidates<'a>(d: &'a DirData, kind: ResourceKind, f: Option<&Filter>) -> Vec<&'a Arc<Entry>> {
    let hinted = f.and_then(|f| f.index_hints().iter().find_map(|h| d.lookup(kind, h)));
    let mut v = hinted.unwrap_or_else(|| d.all(kind).collect());
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

/// Filtered, sorted entries of one kind (rendered only where the filter or sort needs it).
fn query_kind(
    d: &DirData,
    kind: ResourceKind,
    q: &ListQuery,
    at: &Locations,
) -> Vec<(Arc<Entry>, Option<Resource>)> {
    let f = q.filter.as_ref();
    let need_render = f.is_some_and(mentions_rendered)
        || q.sort_by
            .as_ref()
            .is_some_and(|p| RENDERED.iter().any(|n| p.attr.eq_ignore_ascii_case(n)));
    let mut hits: Vec<(Arc<Entry>, Option<Resource>)> = Vec::new();
    for e in candidates(d, kind, f) {
        if need_render {
            let Ok(r) = render::resource(d, e, at, true) else {
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

/// The ListResponse of `kinds` (in that order) for `q`.
pub fn run(
    d: &DirData,
    kinds: &[ResourceKind],
    q: &ListQuery,
    at: &Locations,
    max_results: usize,
) -> Value {
    let mut all = Vec::new();
    for &k in kinds {
        all.extend(query_kind(d, k, q, at).into_iter().map(|(e, _)| e));
    }
    let total = all.len();
    let start = q.start_index.max(1);
    let with_members = render::wants_members(q);
    let page: Vec<Value> = all
        .into_iter()
        .skip(start - 1)
        .take(q.page_size(max_results))
        .filter_map(|e| {
            render::resource(d, &e, at, with_members)
                .ok()
                .map(|r| q.project(&r))
        })
        .collect();
    list_response(page, total, start)
}

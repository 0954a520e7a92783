//! The one list pipeline (RFC 7644 §3.4.2): candidates from a source (a server's indexes, or
//! a slice), then filter, sort, page and project, in that order and in this one place.

use std::borrow::Cow;

use serde_json::Value;

use crate::error::Result;
use crate::filter::{AttrPath, Filter};
use crate::query::{ListQuery, list_response, sort_by_path};
use crate::resource::Resource;
use crate::schema::ResourceKind;

/// Attributes a server computes when it serves a resource (absent from what it stores).
pub const SERVED_ONLY: [&str; 3] = ["meta", "groups", "members"];

/// One resource a list may return, read only when the query needs it.
pub trait Candidate {
    /// The resource as stored: enough to filter on anything but [`SERVED_ONLY`] attributes.
    fn stored(&self) -> Result<Cow<'_, Resource>>;
    /// The resource as served: with `meta`, `groups` and, if `with_members`, `members`.
    fn served(&self, with_members: bool) -> Result<Resource>;
}

/// Where a list finds its candidates: a server's indexes, or a plain slice.
pub trait CandidateSource {
    /// A candidate.
    type Candidate: Candidate;
    /// Candidates of `kind` that may match `filter` (every one when no index helps), in the
    /// order a list without `sortBy` returns them.
    fn candidates(&self, kind: ResourceKind, filter: Option<&Filter>) -> Vec<Self::Candidate>;
}

/// Resources in a slice, served as they are.
struct Slice<'a>(&'a [&'a Resource]);

impl Candidate for &Resource {
    fn stored(&self) -> Result<Cow<'_, Resource>> {
        Ok(Cow::Borrowed(self))
    }
    fn served(&self, _with_members: bool) -> Result<Resource> {
        Ok((*self).clone())
    }
}

impl<'a> CandidateSource for Slice<'a> {
    type Candidate = &'a Resource;
    fn candidates(&self, kind: ResourceKind, _filter: Option<&Filter>) -> Vec<&'a Resource> {
        self.0
            .iter()
            .copied()
            .filter(|r| r.kind() == kind)
            .collect()
    }
}

impl ListQuery {
    /// Filters, sorts, pages and projects `resources` into a ListResponse: [`ListQuery::list`]
    /// over a plain slice (resources of other kinds are skipped).
    pub fn run<'a>(
        &self,
        kind: ResourceKind,
        resources: impl IntoIterator<Item = &'a Resource>,
        max_results: usize,
    ) -> Result<Value> {
        let all: Vec<&Resource> = resources.into_iter().collect();
        self.list(&[kind], &Slice(&all), max_results)
    }

    /// Whether the client asks for a group's `members` (not excluded, and either every default
    /// attribute or `members` by name): a server that computes them can skip the work.
    pub fn wants_members(&self) -> bool {
        let named = |v: &Vec<AttrPath>| {
            v.iter()
                .any(|p| p.schema.is_none() && p.attr.eq_ignore_ascii_case("members"))
        };
        !named(&self.excluded_attributes) && (self.attributes.is_empty() || named(&self.attributes))
    }

    /// The one list pipeline: candidates of each of `kinds` (in that order) from `source`,
    /// filtered, sorted, paged and projected into a ListResponse. A stored resource is read
    /// only where the filter or sort needs it, a served one (with server-computed attributes)
    /// only where they mention those attributes, and for the returned page.
    pub fn list<S: CandidateSource>(
        &self,
        kinds: &[ResourceKind],
        source: &S,
        max_results: usize,
    ) -> Result<Value> {
        for k in kinds {
            self.validate(*k)?;
        }
        let f = self.filter.as_ref();
        let served_only = |p: &AttrPath| SERVED_ONLY.iter().any(|n| p.attr.eq_ignore_ascii_case(n));
        let needs_served = f.is_some_and(|f| f.mentions(&served_only))
            || self.sort_by.as_ref().is_some_and(served_only);
        let mut hits: Vec<S::Candidate> = Vec::new();
        for &kind in kinds {
            let mut of_kind: Vec<(S::Candidate, Option<Resource>)> = Vec::new();
            for c in source.candidates(kind, f) {
                if needs_served {
                    let Ok(r) = c.served(true) else { continue };
                    if f.is_none_or(|f| f.matches(&r)) {
                        of_kind.push((c, Some(r)));
                    }
                } else {
                    let hit = f.is_none_or(|f| c.stored().is_ok_and(|r| f.matches(&r)));
                    if hit {
                        of_kind.push((c, None));
                    }
                }
            }
            if let Some(sb) = &self.sort_by {
                let mut keyed: Vec<(S::Candidate, Resource)> = of_kind
                    .into_iter()
                    .filter_map(|(c, r)| {
                        let r = match r {
                            Some(r) => r,
                            None => c.stored().ok()?.into_owned(),
                        };
                        Some((c, r))
                    })
                    .collect();
                sort_by_path(kind, &mut keyed, |(_, r)| r, sb, self.sort_order);
                hits.extend(keyed.into_iter().map(|(c, _)| c));
            } else {
                hits.extend(of_kind.into_iter().map(|(c, _)| c));
            }
        }
        let total = hits.len();
        let start = self.start_index.max(1);
        let with_members = self.wants_members();
        let page: Vec<Value> = hits
            .into_iter()
            .skip(start - 1)
            .take(self.page_size(max_results))
            .filter_map(|c| c.served(with_members).ok().map(|r| self.project_into(r)))
            .collect();
        Ok(list_response(page, total, start))
    }
}

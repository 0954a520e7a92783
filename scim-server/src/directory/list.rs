//! Lists and searches: the directory's indexes as the candidate source of the protocol's one
//! list pipeline ([`ListQuery::list`]), which filters, sorts, pages and projects.

use std::borrow::Cow;
use std::sync::Arc;

use scim_protocol::{
    Candidate, CandidateSource, Filter, ListQuery, Resource, ResourceKind, ScimError,
};
use serde_json::Value;

use crate::cache::{DirData, Entry};
use crate::render::{self, Locations};

/// One directory's entries, served at `at`.
struct Indexed<'a> {
    d: &'a DirData,
    at: &'a Locations,
}

/// A cached entry: parsed, or rendered, only when the pipeline asks.
struct Cached<'a> {
    d: &'a DirData,
    at: &'a Locations,
    e: &'a Arc<Entry>,
}

impl Candidate for Cached<'_> {
    fn stored(&self) -> Result<Cow<'_, Resource>, ScimError> {
        self.e.resource().map(Cow::Owned)
    }

    fn served(&self, with_members: bool) -> Result<Resource, ScimError> {
        render::resource(self.d, self.e, self.at, with_members)
    }
}

impl<'a> CandidateSource for Indexed<'a> {
    type Candidate = Cached<'a>;

    /// From the first index a hint of the filter names, else every entry; in id order.
    fn candidates(&self, kind: ResourceKind, filter: Option<&Filter>) -> Vec<Cached<'a>> {
        let d = self.d;
        let hinted = filter.and_then(|f| f.index_hints().iter().find_map(|h| d.lookup(kind, h)));
        let mut entries = hinted.unwrap_or_else(|| d.all(kind).collect());
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        entries
            .into_iter()
            .map(|e| Cached { d, at: self.at, e })
            .collect()
    }
}

/// The ListResponse of `kinds` (in that order) for `q`.
pub fn run(
    d: &DirData,
    kinds: &[ResourceKind],
    q: &ListQuery,
    at: &Locations,
    max_results: usize,
) -> Result<Value, ScimError> {
    q.list(kinds, &Indexed { d, at }, max_results)
}

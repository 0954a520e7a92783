//! How a cached entry is served: `id`, `meta` (with its location), a user's `groups` and a
//! group's `members`. Pure: no HTTP, no storage.

use std::sync::Arc;

use scim_protocol::{MemberRef, Meta, Resource, ResourceKind, ScimError};

use crate::cache::{DirData, Entry};

/// Where a directory's resources live, e.g. `https://scim.example.com/scim/v2/ns/dir`.
#[derive(Debug, Clone)]
pub struct Locations {
    base: String,
}

impl Locations {
    /// Locations under `base` (no trailing slash).
    pub fn new(base: String) -> Self {
        Locations { base }
    }

    /// The URL of a resource.
    pub fn of(&self, kind: ResourceKind, id: &str) -> String {
        format!("{}{}/{id}", self.base, kind.endpoint())
    }

    /// The directory's base URL (discovery documents).
    pub fn base(&self) -> &str {
        &self.base
    }
}

fn member_ref(d: &DirData, group: &str, id: &str, at: &Locations) -> Option<MemberRef> {
    let kind = d.kind_of(id)?;
    let e = d.get(kind, id)?;
    Some(MemberRef {
        value: id.to_string(),
        kind: Some(kind.name().to_string()),
        display: d
            .rollout_display(group, id)
            .or(e.display_in(group))
            .or(e.display.as_deref())
            .map(str::to_string),
        reference: Some(at.of(kind, id)),
    })
}

/// The resource as served: meta, `groups` (users) and, if asked, `members` (groups).
pub fn resource(
    d: &DirData,
    e: &Arc<Entry>,
    at: &Locations,
    with_members: bool,
) -> Result<Resource, ScimError> {
    let kind = e.kind;
    let mut r = e.resource()?;
    r.set_meta(&Meta {
        created: e.created.clone(),
        last_modified: e.last_modified.clone(),
        version: e.rv_str.clone(),
        location: at.of(kind, &e.id),
    });
    match kind {
        ResourceKind::User => {
            let groups: Vec<MemberRef> = d
                .groups_of(e)
                .iter()
                .filter_map(|g| {
                    let ge = d.get(ResourceKind::Group, g)?;
                    Some(MemberRef {
                        value: g.clone(),
                        kind: Some("direct".into()),
                        display: ge.display.as_deref().map(str::to_string),
                        reference: Some(at.of(ResourceKind::Group, g)),
                    })
                })
                .collect();
            r.set_groups(&groups);
        }
        ResourceKind::Group if with_members => {
            let mut members: Vec<MemberRef> = d
                .member_ids(&e.id)
                .iter()
                .filter_map(|m| member_ref(d, &e.id, m, at))
                .collect();
            members.sort_by(|a, b| a.value.cmp(&b.value));
            r.set_members(&members);
        }
        ResourceKind::Group => {}
    }
    Ok(r)
}

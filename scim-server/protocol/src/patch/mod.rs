//! The PatchOp engine (RFC 7644 §3.5.2) with both Microsoft Entra ID dialects.
//!
//! [`PatchRequest::apply`] works on a copy of the resource and returns the new resource only
//! when every operation succeeded and the result validates, so a PATCH is all-or-nothing.
//! Because kube-scim stores group membership on the member side, applying a PATCH to a group
//! also reports what happened to `members` as a [`MembershipDelta`].
//!
//! Split by concern, all private to this module: `path` resolves a path, `ops` applies one
//! operation to the resource, `single` and `multi` write single- and multi-valued attributes,
//! `values` compares values and elements, `members` reads a group's members as sent.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

use crate::error::{Result, ScimError};
use crate::filter::eval::{Scope, eval, get_ci};
use crate::filter::{AttrPath, CompareOp, Filter, Literal, parse_path};
pub use crate::resource::MemberRef;
use crate::resource::{Mode, Resource, normalize_attr, normalize_map};
use crate::schema::{
    AttrDef, AttrType, Mutability, PATCH_OP_SCHEMA, ResourceKind, UrnKey, is_urn_like,
    split_urn_key, valid_urn,
};

mod members;
mod multi;
mod ops;
mod path;
mod single;
mod values;

pub use members::sent_member_displays;
use members::*;
use multi::*;
use ops::*;
pub use path::parse_target;
use path::*;
use single::*;
use values::*;

/// Most operations accepted in one PatchOp. Entra sends a handful; the cap bounds work per
/// request for hostile input.
pub const MAX_PATCH_OPERATIONS: usize = 1000;

/// `add`, `replace` or `remove` (parsed case-insensitively: Entra's legacy dialect sends `Add`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOpKind {
    /// add
    Add,
    /// replace
    Replace,
    /// remove
    Remove,
}

/// Where an operation points.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchTarget {
    /// No path: the value holds the attributes (possibly dotted or URN-qualified keys).
    Resource,
    /// A whole extension schema object, e.g. `urn:...:enterprise:2.0:User`.
    Extension(String),
    /// An attribute path.
    Path(AttrPath),
}

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    /// Operation.
    pub op: PatchOpKind,
    /// Target.
    pub target: PatchTarget,
    /// Value, if given.
    pub value: Option<Value>,
}

/// A parsed PatchOp message.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    /// Operations, applied in order.
    pub operations: Vec<PatchOp>,
}

/// Net change to a group's membership made by one PATCH (or PUT).
///
/// To compute the new member set: start from the current members, or from the empty set when
/// `replace_all` is true; remove `removed`; add `added`. `removed` is only non-empty when
/// `replace_all` is false. A request that removes every member is `replace_all` with nothing
/// added. Re-adding a member is reported as added (idempotent); removing a non-member is
/// reported as removed (a no-op for the store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipDelta {
    /// Start from an empty member list (remove-all or replace).
    pub replace_all: bool,
    /// Members to add, by id.
    pub added: BTreeMap<String, MemberRef>,
    /// Member ids to remove.
    pub removed: BTreeSet<String>,
}

impl MembershipDelta {
    /// True if the request did not touch membership.
    pub fn is_empty(&self) -> bool {
        !self.replace_all && self.added.is_empty() && self.removed.is_empty()
    }

    fn add(&mut self, m: MemberRef) {
        self.removed.remove(&m.value);
        self.added.insert(m.value.clone(), m);
    }

    fn remove(&mut self, value: &str) {
        self.added.remove(value);
        if !self.replace_all {
            self.removed.insert(value.to_string());
        }
    }

    fn remove_all(&mut self) {
        self.replace_all = true;
        self.added.clear();
        self.removed.clear();
    }

    /// Applies the delta to a current member id list, returning the new list (sorted).
    pub fn apply_to<'a>(&self, current: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut set: BTreeSet<String> = if self.replace_all {
            BTreeSet::new()
        } else {
            current.into_iter().map(str::to_string).collect()
        };
        for r in &self.removed {
            set.remove(r);
        }
        set.extend(self.added.keys().cloned());
        set.into_iter().collect()
    }
}

/// Result of applying a PATCH (or a PUT via [`replace_with_delta`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOutcome {
    /// The new, validated resource.
    pub resource: Resource,
    /// What happened to `members` (always empty for users).
    pub membership: MembershipDelta,
    /// A password set by the request, for the caller to hash or drop. Never stored.
    pub password: Option<String>,
    /// Whether the resource's attributes changed (membership aside, when not loaded).
    pub changed: bool,
    /// Whether the request addressed any attribute besides a group's `members`: then its
    /// outcome depends on the resource it was applied to, and a server that applied it to a
    /// cached copy must prove that copy current even when nothing `changed`.
    pub touches_attributes: bool,
}

fn syntax(msg: String) -> ScimError {
    ScimError::InvalidSyntax(msg)
}

impl PatchOpKind {
    fn parse(s: &str) -> Option<PatchOpKind> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "add" => PatchOpKind::Add,
            "replace" => PatchOpKind::Replace,
            "remove" => PatchOpKind::Remove,
            _ => return None,
        })
    }
}

impl PatchRequest {
    /// Parses a PatchOp body. `schemas` is not required (some clients omit it) but if present
    /// must include the PatchOp URN. Op names are case-insensitive.
    pub fn parse(body: &Value) -> Result<PatchRequest> {
        let obj = crate::schema::message_body(body, "PATCH", PATCH_OP_SCHEMA)?;
        let ops = match get_ci(obj, "Operations") {
            Some((_, Value::Array(a))) => a,
            Some((_, Value::Object(_))) => {
                return Err(syntax("'Operations' must be an array of operations".into()));
            }
            _ => return Err(syntax("the PATCH body has no 'Operations' array".into())),
        };
        if ops.len() > MAX_PATCH_OPERATIONS {
            return Err(ScimError::PayloadTooLarge(format!(
                "{} operations in one PATCH; at most {MAX_PATCH_OPERATIONS} are accepted",
                ops.len()
            )));
        }
        let mut operations = Vec::with_capacity(ops.len());
        for (i, o) in ops.iter().enumerate() {
            let Some(o) = o.as_object() else {
                return Err(syntax(format!("operation {i} is not an object")));
            };
            let op = match get_ci(o, "op") {
                Some((_, Value::String(s))) => PatchOpKind::parse(s).ok_or_else(|| {
                    syntax(format!(
                        "operation {i}: unknown op {s:?}; expected add, replace or remove"
                    ))
                })?,
                _ => return Err(syntax(format!("operation {i} has no 'op' string"))),
            };
            let target = match get_ci(o, "path") {
                None | Some((_, Value::Null)) => PatchTarget::Resource,
                Some((_, Value::String(p))) => parse_target(p).map_err(|e| match e {
                    ScimError::InvalidPath(d) => {
                        ScimError::InvalidPath(format!("operation {i}: {d}"))
                    }
                    e => e,
                })?,
                Some(_) => return Err(syntax(format!("operation {i}: 'path' must be a string"))),
            };
            let value = get_ci(o, "value").map(|(_, v)| v.clone());
            if op != PatchOpKind::Remove && value.is_none() {
                return Err(ScimError::InvalidValue(format!(
                    "operation {i}: '{}' needs a 'value'",
                    if op == PatchOpKind::Add {
                        "add"
                    } else {
                        "replace"
                    }
                )));
            }
            if op == PatchOpKind::Remove && target == PatchTarget::Resource {
                return Err(ScimError::NoTarget(format!(
                    "operation {i}: 'remove' needs a 'path'"
                )));
            }
            operations.push(PatchOp { op, target, value });
        }
        Ok(PatchRequest { operations })
    }

    /// Parses a PatchOp body from text.
    pub fn parse_str(body: &str) -> Result<PatchRequest> {
        let v: Value = serde_json::from_str(body)
            .map_err(|e| syntax(format!("the body is not valid JSON: {e}")))?;
        PatchRequest::parse(&v)
    }

    /// Applies every operation to a copy of `resource`; returns the new resource (validated)
    /// and the membership delta, or the first error with nothing changed.
    pub fn apply(&self, resource: &Resource) -> Result<PatchOutcome> {
        let kind = resource.kind();
        let mut ctx = Ctx {
            kind,
            work: resource.attributes().clone(),
            delta: MembershipDelta::default(),
            password: None,
            touched: BTreeSet::new(),
        };
        for (i, op) in self.operations.iter().enumerate() {
            ctx.apply_op(op).map_err(|e| prefix_err(e, i))?;
        }
        let mut attrs = ctx.work;
        let mut touched = Map::new();
        for k in &ctx.touched {
            if let Some(v) = attrs.remove(k) {
                touched.insert(k.clone(), v);
            }
        }
        attrs.extend(normalize_map(kind, touched, Mode::Stored)?.attrs);
        for def in kind.schema().attributes.iter().filter(|d| d.required) {
            if !attrs.contains_key(def.name) {
                return Err(ScimError::InvalidValue(format!(
                    "the PATCH would leave required attribute '{}' unassigned",
                    def.name
                )));
            }
        }
        let before = resource.attributes();
        let changed = ctx.touched.iter().any(|k| attrs.get(k) != before.get(k));
        let touches_attributes = ctx
            .touched
            .iter()
            .any(|k| !(kind == ResourceKind::Group && k == "members"));
        Ok(PatchOutcome {
            resource: Resource::from_parts(kind, attrs),
            membership: ctx.delta,
            password: ctx.password,
            changed,
            touches_attributes,
        })
    }
}

fn prefix_err(e: ScimError, i: usize) -> ScimError {
    let p = |d: String| format!("operation {i}: {d}");
    match e {
        ScimError::InvalidPath(d) => ScimError::InvalidPath(p(d)),
        ScimError::NoTarget(d) => ScimError::NoTarget(p(d)),
        ScimError::InvalidValue(d) => ScimError::InvalidValue(p(d)),
        ScimError::Mutability(d) => ScimError::Mutability(p(d)),
        ScimError::InvalidFilter(d) => ScimError::InvalidFilter(p(d)),
        e => e,
    }
}

/// PUT with a membership delta: validates `body` as a replacement of `existing` and, for
/// groups, reports the new member list as a `replace_all` delta.
pub fn replace_with_delta(existing: &Resource, body: &Value) -> Result<PatchOutcome> {
    let mut resource = crate::resource::validate_replace(existing, body)?;
    let password = resource.take_password();
    let mut membership = MembershipDelta::default();
    if existing.kind() == ResourceKind::Group {
        membership.remove_all();
        let sent = sent_member_displays(body);
        for m in resource.members() {
            membership.add(with_sent_display(m, &sent));
        }
    }
    let changed = resource.attributes() != existing.attributes();
    Ok(PatchOutcome {
        resource,
        membership,
        password,
        changed,
        touches_attributes: true,
    })
}

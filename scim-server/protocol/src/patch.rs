//! The PatchOp engine (RFC 7644 §3.5.2) with both Microsoft Entra ID dialects.
//!
//! [`PatchRequest::apply`] works on a copy of the resource and returns the new resource only
//! when every operation succeeded and the result validates, so a PATCH is all-or-nothing.
//! Because kube-scim stores group membership on the member side, applying a PATCH to a group
//! also reports what happened to `members` as a [`MembershipDelta`].
//!
//! Over 600 lines on purpose: one engine for both Entra dialects, whose path resolution and
//! operations share the same helpers; split, each half would re-derive the other's rules.
//!
//! One file over 600 lines on purpose: path resolution, both dialects and the all-or-nothing
//! apply share private helpers that should not leak into the crate's API.

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

/// Parses a PATCH path string into a target.
pub fn parse_target(path: &str) -> Result<PatchTarget> {
    let path = path.trim();
    if path.is_empty() {
        return Ok(PatchTarget::Resource);
    }
    let p = parse_path(path)?;
    // `urn:...:2.0:User` parses as schema `urn:...:2.0` + attribute `User`: it names a schema.
    if p.schema.is_some()
        && p.filter.is_none()
        && p.sub_attr.is_none()
        && (p.attr.eq_ignore_ascii_case("User") || p.attr.eq_ignore_ascii_case("Group"))
    {
        return Ok(PatchTarget::Extension(path.to_string()));
    }
    Ok(PatchTarget::Path(p))
}

impl PatchRequest {
    /// Parses a PatchOp body. `schemas` is not required (some clients omit it) but if present
    /// must include the PatchOp URN. Op names are case-insensitive.
    pub fn parse(body: &Value) -> Result<PatchRequest> {
        let Some(obj) = body.as_object() else {
            return Err(syntax("the PATCH body must be a JSON object".into()));
        };
        if let Some((_, s)) = get_ci(obj, "schemas") {
            let ok = s.as_array().is_some_and(|a| {
                a.iter().any(|u| {
                    u.as_str()
                        .is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
                })
            });
            if !ok {
                return Err(syntax(format!(
                    "'schemas' must contain \"{PATCH_OP_SCHEMA}\""
                )));
            }
        }
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

struct Ctx {
    kind: ResourceKind,
    work: Map<String, Value>,
    delta: MembershipDelta,
    password: Option<String>,
    /// Top-level keys the operations wrote to. Only these are re-validated at the end: the
    /// rest is unchanged from a resource that was already valid, and re-normalizing the whole
    /// resource was most of the cost of a PATCH.
    touched: BTreeSet<String>,
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Values equal for de-duplication/removal: strings compare case-insensitively unless the
/// sub-attribute is caseExact.
fn loose_eq(a: &Value, b: &Value, def: Option<&AttrDef>) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            if def.is_some_and(|d| d.case_exact) {
                x == y
            } else {
                x.to_lowercase() == y.to_lowercase()
            }
        }
        _ => a == b,
    }
}

/// Whether `elem` has every sub-attribute given in `probe` (legacy value-array removal).
fn elem_matches(elem: &Value, probe: &Value, def: &AttrDef) -> bool {
    match (elem.as_object(), probe.as_object()) {
        (Some(e), Some(p)) => {
            !p.is_empty()
                && p.iter()
                    .all(|(k, pv)| e.get(k).is_some_and(|ev| loose_eq(ev, pv, def.sub(k))))
        }
        _ => loose_eq(elem, probe, def.sub("value")),
    }
}

/// An element built from an `eq` filter, for Entra's "filter matched nothing: create it"
/// (`emails[type eq "work"].value`). Only conjunctions of `sub eq literal` qualify.
fn element_from_filter(f: &Filter, def: &AttrDef) -> Option<Map<String, Value>> {
    let mut m = Map::new();
    for c in f.conjuncts() {
        let Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } = c
        else {
            return None;
        };
        if path.filter.is_some() || path.sub_attr.is_some() || path.schema.is_some() {
            return None;
        }
        let name = def.sub(&path.attr).map(|d| d.name)?;
        let v = match value {
            Literal::String(s) => Value::String(s.clone()),
            Literal::Number(n) => Value::Number(n.clone()),
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Null => return None,
        };
        m.insert(name.to_string(), v);
    }
    Some(m)
}

/// Member ids named by a `members[...]` filter that is `value eq "x"` or an `or` of those,
/// so a removal can be reported even when the server did not load the current members.
fn filter_member_values(f: &Filter) -> Vec<String> {
    let items: Vec<&Filter> = match f {
        Filter::Or(v) => v.iter().collect(),
        f => vec![f],
    };
    let mut out = Vec::new();
    for i in items {
        match i.as_eq() {
            Some((p, Literal::String(s))) if p.is("value", None) => out.push(s.clone()),
            _ => return Vec::new(),
        }
    }
    out
}

impl Ctx {
    fn apply_op(&mut self, op: &PatchOp) -> Result<()> {
        match &op.target {
            PatchTarget::Resource => {
                let v = op.value.clone().unwrap_or(Value::Null);
                self.apply_pathless(op.op, v, 0)
            }
            PatchTarget::Extension(urn) => {
                if op.op == PatchOpKind::Remove {
                    let key = get_ci(&self.work, urn).map(|(k, _)| k.clone());
                    if let Some(k) = key {
                        self.work.remove(&k);
                        self.touched.insert(k);
                    }
                    return Ok(());
                }
                let mut m = Map::new();
                m.insert(urn.clone(), op.value.clone().unwrap_or(Value::Null));
                self.apply_pathless(op.op, Value::Object(m), 0)
            }
            PatchTarget::Path(p) => self.apply_path(op.op, p, op.value.clone(), true),
        }
    }

    /// Path-less add/replace: each key of the value is itself a path (Entra sends
    /// `"name.givenName"` and `"urn:...:User:employeeNumber"` keys as well as nested objects).
    fn apply_pathless(&mut self, op: PatchOpKind, value: Value, depth: u8) -> Result<()> {
        let obj = match value {
            Value::Object(m) => m,
            // Some clients wrap the object in an array.
            Value::Array(a) if depth == 0 => {
                for v in a {
                    self.apply_pathless(op, v, 1)?;
                }
                return Ok(());
            }
            Value::Null => return Ok(()),
            _ => {
                return Err(ScimError::InvalidValue(
                    "a path-less add/replace needs an object value whose keys are attributes"
                        .into(),
                ));
            }
        };
        for (key, v) in obj {
            if key.eq_ignore_ascii_case("schemas")
                || key.eq_ignore_ascii_case("id")
                || key.eq_ignore_ascii_case("meta")
            {
                continue;
            }
            match split_urn_key(self.kind, &key) {
                Some(UrnKey::Schema(urn)) => {
                    let Value::Object(inner) = v else { continue };
                    if urn == self.kind.schema().id {
                        if depth < 2 {
                            self.apply_pathless(op, Value::Object(inner), depth + 1)?;
                        }
                        continue;
                    }
                    for (ik, iv) in inner {
                        let path = keyed_path(Some(&urn), &ik)?;
                        self.apply_keyed(op, &path, iv)?;
                    }
                }
                Some(UrnKey::Attr(urn, attr)) => {
                    let urn = (urn != self.kind.schema().id).then_some(urn);
                    let path = keyed_path(urn.as_deref(), attr)?;
                    self.apply_keyed(op, &path, v)?;
                }
                // A malformed URN key is ignored, as in a POST body.
                None if is_urn_like(&key) => {}
                None => {
                    let path = parse_path(&key)?;
                    self.apply_keyed(op, &path, v)?;
                }
            }
        }
        Ok(())
    }

    /// One attribute of a path-less value: read-only and unknown core attributes are ignored
    /// as they would be in a POST body. `null` adds nothing, but in a `replace` it unassigns
    /// the attribute (RFC 7643 §2.5) as the same `replace` with a path does: Entra's batched
    /// form clears attributes this way (Microsoft's `SCIM_Null_Update_Test`).
    fn apply_keyed(&mut self, op: PatchOpKind, path: &AttrPath, v: Value) -> Result<()> {
        if v.is_null() && op != PatchOpKind::Replace {
            return Ok(());
        }
        let qualified = qualify(self.kind, path);
        let path = qualified.as_ref();
        let def = self.kind.attr(path.schema.as_deref(), &path.attr);
        let known_schema = path.schema.is_none()
            || path
                .schema
                .as_deref()
                .is_some_and(|s| self.kind.extension(s).is_some());
        if known_schema && def.is_none() {
            return Ok(());
        }
        if def.is_some_and(|d| d.is_read_only()) {
            return Ok(());
        }
        if !known_schema && !path.schema.as_deref().is_some_and(valid_urn) {
            return Ok(());
        }
        if v.is_null() && def.is_some_and(|d| d.mutability == Mutability::WriteOnly) {
            return Ok(());
        }
        self.apply_path(op, path, Some(v), false)
    }

    fn apply_path(
        &mut self,
        op: PatchOpKind,
        path: &AttrPath,
        value: Option<Value>,
        explicit: bool,
    ) -> Result<()> {
        let kind = self.kind;
        let qualified = qualify(kind, path);
        let path = qualified.as_ref();
        let core = path
            .schema
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case(kind.schema().id));
        let ext_known = path.schema.as_deref().and_then(|s| kind.extension(s));
        let def = kind.attr(path.schema.as_deref(), &path.attr);
        let Some(def) = def else {
            if core || ext_known.is_some() {
                return Err(ScimError::InvalidPath(format!(
                    "'{path}' is not an attribute of {}",
                    if core { kind.name() } else { "that extension" }
                )));
            }
            return self.apply_unknown(op, path, value);
        };
        if explicit && def.is_read_only() {
            return Err(ScimError::Mutability(format!(
                "'{}' is read-only and cannot be modified",
                def.name
            )));
        }
        if def.mutability == Mutability::WriteOnly {
            // password: hand it to the caller, never keep it in the resource.
            if op != PatchOpKind::Remove {
                match value {
                    Some(Value::String(s)) => self.password = Some(s),
                    _ => {
                        return Err(ScimError::InvalidValue(format!(
                            "'{}' must be a string",
                            def.name
                        )));
                    }
                }
            }
            return Ok(());
        }
        if let Some(s) = &path.sub_attr {
            sub_attr(def, s)?;
        }
        if explicit
            && let Some(sd) = path.sub_attr.as_deref().and_then(|s| def.sub(s))
            && (sd.is_read_only()
                || (sd.mutability == Mutability::Immutable && op != PatchOpKind::Add))
        {
            return Err(ScimError::Mutability(format!(
                "'{}.{}' is {} and cannot be {}",
                def.name,
                sd.name,
                sd.mutability.as_str(),
                if op == PatchOpKind::Remove {
                    "removed"
                } else {
                    "modified"
                }
            )));
        }
        if path.filter.is_some() && def.ty != AttrType::Complex {
            return Err(ScimError::InvalidPath(format!(
                "'{}' is not complex, so it cannot take a value filter",
                def.name
            )));
        }
        if path.sub_attr.is_some() && def.ty != AttrType::Complex {
            return Err(ScimError::InvalidPath(format!(
                "'{}' has no sub-attributes",
                def.name
            )));
        }
        let container_key = ext_known.map(|s| s.id.to_string());
        self.touched.insert(
            container_key
                .clone()
                .unwrap_or_else(|| def.name.to_string()),
        );
        let is_members = kind == ResourceKind::Group && def.name == "members";
        let mut delta = std::mem::take(&mut self.delta);
        let res = {
            let container = match &container_key {
                None => &mut self.work,
                Some(k) => {
                    let e = self
                        .work
                        .entry(k.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if !e.is_object() {
                        *e = Value::Object(Map::new());
                    }
                    e.as_object_mut().ok_or_else(|| {
                        ScimError::Internal("extension container is not an object".into())
                    })?
                }
            };
            let members = if is_members { Some(&mut delta) } else { None };
            if def.multi_valued {
                apply_multi(container, def, op, path, value, members)
            } else if def.ty == AttrType::Complex {
                apply_single_complex(container, def, op, path, value)
            } else {
                apply_simple(container, def, op, value)
            }
        };
        self.delta = delta;
        if let Some(k) = container_key
            && self
                .work
                .get(&k)
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
        {
            self.work.remove(&k);
        }
        res
    }

    /// Attributes of extensions the schema does not know: kept verbatim.
    fn apply_unknown(
        &mut self,
        op: PatchOpKind,
        path: &AttrPath,
        value: Option<Value>,
    ) -> Result<()> {
        if path.filter.is_some() {
            return Err(ScimError::InvalidPath(format!(
                "value filters are not supported on '{path}' (unknown extension attribute)"
            )));
        }
        if !path.schema.as_deref().is_some_and(valid_urn) {
            return Err(ScimError::InvalidPath(format!(
                "'{path}' does not start with a well-formed schema URN"
            )));
        }
        let urn = path.schema.clone().unwrap_or_default();
        let key = get_ci(&self.work, &urn)
            .map(|(k, _)| k.clone())
            .unwrap_or(urn);
        self.touched.insert(key.clone());
        let ext = self
            .work
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !ext.is_object() {
            *ext = Value::Object(Map::new());
        }
        let Some(ext) = ext.as_object_mut() else {
            return Ok(());
        };
        let attr_key = get_ci(ext, &path.attr)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| path.attr.clone());
        let value = value.filter(|v| !is_empty_value(v));
        match (op, &path.sub_attr, value) {
            (PatchOpKind::Remove, None, _) | (_, None, None) => {
                if op != PatchOpKind::Add {
                    ext.remove(&attr_key);
                }
            }
            (PatchOpKind::Remove, Some(s), _) | (_, Some(s), None) => {
                if op != PatchOpKind::Add
                    && let Some(Value::Object(m)) = ext.get_mut(&attr_key)
                {
                    let k = get_ci(m, s).map(|(k, _)| k.clone());
                    if let Some(k) = k {
                        m.remove(&k);
                    }
                    if m.is_empty() {
                        ext.remove(&attr_key);
                    }
                }
            }
            (_, None, Some(v)) => {
                ext.insert(attr_key, v);
            }
            (_, Some(s), Some(v)) => {
                let e = ext
                    .entry(attr_key)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !e.is_object() {
                    *e = Value::Object(Map::new());
                }
                if let Some(m) = e.as_object_mut() {
                    let k = get_ci(m, s)
                        .map(|(k, _)| k.clone())
                        .unwrap_or_else(|| s.clone());
                    m.insert(k, v);
                }
            }
        }
        if ext.is_empty() {
            self.work.remove(&key);
        }
        Ok(())
    }
}

/// Builds a path from a path-less key under an optional schema URN (the key may be dotted).
/// The sub-attribute `name` of `def`, or the `invalidPath` error that names both.
fn sub_attr(def: &AttrDef, name: &str) -> Result<&'static AttrDef> {
    def.sub(name).ok_or_else(|| {
        ScimError::InvalidPath(format!("'{name}' is not a sub-attribute of '{}'", def.name))
    })
}

/// A client's value for the sub-attribute `def.name`, normalized as input.
fn normalized_sub(
    def: &AttrDef,
    name: &str,
    raw: Value,
) -> Result<(&'static AttrDef, Option<Value>)> {
    let sd = sub_attr(def, name)?;
    let value = normalize_attr(sd, raw, Mode::Input, &|| {
        format!("{}.{}", def.name, sd.name)
    })?;
    Ok((sd, value))
}

/// Entra's legacy dialect names enterprise attributes without their URN (`"path": "manager"`):
/// an unqualified name that is no core attribute resolves to the one extension of the
/// resource type that defines it. Core attributes always win, so no valid path changes meaning.
fn qualify(kind: ResourceKind, path: &AttrPath) -> std::borrow::Cow<'_, AttrPath> {
    if path.schema.is_some() || kind.core_attr(&path.attr).is_some() {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut defining = kind
        .extensions()
        .iter()
        .filter(|ext| crate::schema::find_attr(ext.attributes, &path.attr).is_some());
    match (defining.next(), defining.next()) {
        (Some(ext), None) => std::borrow::Cow::Owned(AttrPath {
            schema: Some(ext.id.to_string()),
            ..path.clone()
        }),
        _ => std::borrow::Cow::Borrowed(path),
    }
}

fn keyed_path(urn: Option<&str>, key: &str) -> Result<AttrPath> {
    let mut p = parse_path(key)?;
    if p.schema.is_none() {
        p.schema = urn.map(str::to_string);
    }
    Ok(p)
}

fn apply_simple(
    container: &mut Map<String, Value>,
    def: &AttrDef,
    op: PatchOpKind,
    value: Option<Value>,
) -> Result<()> {
    if op == PatchOpKind::Remove {
        container.remove(def.name);
        return Ok(());
    }
    match normalize_attr(def, value.unwrap_or(Value::Null), Mode::Input, &|| {
        def.name.to_string()
    })? {
        Some(v) => {
            container.insert(def.name.to_string(), v);
        }
        None => {
            // `add null` is ignored; `replace null` clears (Entra clears attributes this way).
            if op == PatchOpKind::Replace {
                container.remove(def.name);
            }
        }
    }
    Ok(())
}

fn apply_single_complex(
    container: &mut Map<String, Value>,
    def: &'static AttrDef,
    op: PatchOpKind,
    path: &AttrPath,
    value: Option<Value>,
) -> Result<()> {
    let current_matches = |c: &Map<String, Value>| -> bool {
        match (&path.filter, c.get(def.name).and_then(Value::as_object)) {
            (None, _) => true,
            (Some(f), Some(m)) => eval(f, Scope::Sub(Some(def)), m),
            (Some(_), None) => false,
        }
    };
    match op {
        PatchOpKind::Remove => {
            if !current_matches(container) {
                return Ok(());
            }
            if let Some(s) = &path.sub_attr {
                let sub = def.sub(s).map(|d| d.name).unwrap_or(s);
                if let Some(Value::Object(m)) = container.get_mut(def.name) {
                    m.remove(sub);
                    if m.is_empty() {
                        container.remove(def.name);
                    }
                }
                return Ok(());
            }
            // Legacy `remove manager` with the old manager as value: only if it still is.
            if let Some(v) = value.filter(|v| !is_empty_value(v)) {
                let probes: Vec<Value> = match v {
                    Value::Array(a) => a,
                    Value::String(s) => vec![serde_json::json!({ "value": s })],
                    v => vec![v],
                };
                let cur = container.get(def.name).cloned().unwrap_or(Value::Null);
                let hit = probes.iter().any(|p| match p.get("value") {
                    Some(pv) => cur
                        .get("value")
                        .is_some_and(|cv| loose_eq(cv, pv, def.sub("value"))),
                    None => true,
                });
                if !hit {
                    return Ok(());
                }
            }
            container.remove(def.name);
            Ok(())
        }
        PatchOpKind::Add | PatchOpKind::Replace => {
            if path.filter.is_some() && !current_matches(container) {
                if container.contains_key(def.name) || op == PatchOpKind::Replace {
                    return Err(ScimError::NoTarget(format!(
                        "the filter in '{path}' matches no value"
                    )));
                }
                let seed = path
                    .filter
                    .as_deref()
                    .and_then(|f| element_from_filter(f, def))
                    .ok_or_else(|| {
                        ScimError::NoTarget(format!("the filter in '{path}' matches no value"))
                    })?;
                container.insert(def.name.to_string(), Value::Object(seed));
            }
            let raw = value.unwrap_or(Value::Null);
            let new = match &path.sub_attr {
                Some(s) => {
                    let (sd, nv) = normalized_sub(def, s, raw)?;
                    let entry = container
                        .entry(def.name.to_string())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Some(m) = entry.as_object_mut() {
                        match nv {
                            Some(v) => {
                                m.insert(sd.name.to_string(), v);
                            }
                            None if op == PatchOpKind::Replace => {
                                m.remove(sd.name);
                            }
                            None => {}
                        }
                        if m.is_empty() {
                            container.remove(def.name);
                        }
                    }
                    return Ok(());
                }
                None => normalize_attr(def, raw, Mode::Input, &|| def.name.to_string())?,
            };
            match new {
                None => {
                    // "replace manager with empty" clears it.
                    if op == PatchOpKind::Replace {
                        container.remove(def.name);
                    }
                }
                Some(Value::Object(nm)) => {
                    // A new `value` is a different referent (a new manager): replace the whole
                    // object so a stale `$ref`/`displayName` does not survive. Otherwise merge, as
                    // RFC 7644 §3.5.2.3 says for complex attributes.
                    let identity_change = nm.contains_key("value") && def.sub("value").is_some();
                    match container.get_mut(def.name) {
                        Some(Value::Object(cur)) if !identity_change => {
                            for (k, v) in nm {
                                cur.insert(k, v);
                            }
                        }
                        _ => {
                            container.insert(def.name.to_string(), Value::Object(nm));
                        }
                    }
                }
                Some(v) => {
                    container.insert(def.name.to_string(), v);
                }
            }
            Ok(())
        }
    }
}

fn member_of(v: &Value) -> Option<MemberRef> {
    MemberRef::from_value(v)
}

/// Each member's `display` exactly as a request sent it, by member id: `members` is the value of
/// a `members` attribute (an array of member objects, or one), or a resource body holding one.
/// `display` is read-only (RFC 7643 §2.4), so validation drops it from the resource and from
/// [`MembershipDelta`] members; a server that keeps it for a client expecting that (Okta) reads
/// it here.
pub fn sent_member_displays(members: &Value) -> HashMap<String, String> {
    let list = match members {
        Value::Object(o) if !o.contains_key("value") => o
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("members"))
            .map(|(_, v)| v),
        other => Some(other),
    };
    let items: Vec<&Value> = match list {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|m| {
            let m = m.as_object()?;
            let field = |name: &str| {
                m.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.as_str())
            };
            Some((field("value")?.to_string(), field("display")?.to_string()))
        })
        .collect()
}

/// `m` with the `display` the request sent for it, if any.
fn with_sent_display(mut m: MemberRef, sent: &HashMap<String, String>) -> MemberRef {
    if let Some(d) = sent.get(&m.value) {
        m.display = Some(d.clone());
    }
    m
}

/// After an element with `primary: true` is written, every other element loses it
/// (RFC 7643 §2.4: at most one primary).
fn fix_primary(arr: &mut [Value], keep: Option<usize>) {
    let Some(keep) = keep else { return };
    if arr.get(keep).and_then(|e| e.get("primary")) != Some(&Value::Bool(true)) {
        return;
    }
    for (i, e) in arr.iter_mut().enumerate() {
        if i != keep
            && let Some(m) = e.as_object_mut()
            && m.get("primary") == Some(&Value::Bool(true))
        {
            m.insert("primary".into(), Value::Bool(false));
        }
    }
}

fn same_element(a: &Value, b: &Value, def: &AttrDef, is_members: bool) -> bool {
    if is_members {
        return a.get("value").is_some() && a.get("value") == b.get("value");
    }
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            let vd = def.sub("value");
            let key_eq = |k: &str| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => loose_eq(p, q, def.sub(k)),
                (None, None) => true,
                _ => false,
            };
            if vd.is_some() {
                key_eq("value") && key_eq("type")
            } else {
                a == b
            }
        }
        _ => a == b,
    }
}

fn apply_multi(
    container: &mut Map<String, Value>,
    def: &'static AttrDef,
    op: PatchOpKind,
    path: &AttrPath,
    value: Option<Value>,
    mut members: Option<&mut MembershipDelta>,
) -> Result<()> {
    let is_members = members.is_some();
    let mut arr: Vec<Value> = match container.remove(def.name) {
        Some(Value::Array(a)) => a,
        Some(Value::Null) | None => Vec::new(),
        Some(v) => vec![v],
    };
    let res = (|| -> Result<()> {
        match (&path.filter, &path.sub_attr) {
            (None, None) => match op {
                PatchOpKind::Add | PatchOpKind::Replace => {
                    let sent = match &value {
                        Some(v) if is_members => sent_member_displays(v),
                        _ => HashMap::new(),
                    };
                    let new =
                        normalize_attr(def, value.unwrap_or(Value::Null), Mode::Input, &|| {
                            def.name.to_string()
                        })?;
                    let new = match new {
                        Some(Value::Array(a)) => a,
                        _ => Vec::new(),
                    };
                    if op == PatchOpKind::Replace {
                        arr.clear();
                        if let Some(d) = members.as_deref_mut() {
                            d.remove_all();
                        }
                    }
                    // Member lists can be large: index them by id so adding k members to a
                    // group of n is O(n + k), not O(n * k).
                    let mut index: HashMap<String, usize> = HashMap::new();
                    if is_members {
                        for (i, e) in arr.iter().enumerate() {
                            if let Some(v) = e.get("value").and_then(Value::as_str) {
                                index.entry(v.to_string()).or_insert(i);
                            }
                        }
                    }
                    for item in new {
                        if let Some(d) = members.as_deref_mut()
                            && let Some(m) = member_of(&item)
                        {
                            d.add(with_sent_display(m, &sent));
                        }
                        let found = if is_members {
                            item.get("value")
                                .and_then(Value::as_str)
                                .and_then(|v| index.get(v).copied())
                        } else {
                            arr.iter()
                                .position(|e| same_element(e, &item, def, is_members))
                        };
                        if is_members
                            && found.is_none()
                            && let Some(v) = item.get("value").and_then(Value::as_str)
                        {
                            index.insert(v.to_string(), arr.len());
                        }
                        match found {
                            Some(i) => {
                                // Re-adding an existing value succeeds; fields given win.
                                if let (Some(cur), Value::Object(nm)) =
                                    (arr[i].as_object_mut(), item)
                                {
                                    for (k, v) in nm {
                                        cur.insert(k, v);
                                    }
                                }
                                fix_primary(&mut arr, Some(i));
                            }
                            None => {
                                arr.push(item);
                                let last = arr.len() - 1;
                                fix_primary(&mut arr, Some(last));
                            }
                        }
                    }
                    Ok(())
                }
                PatchOpKind::Remove => {
                    match value.filter(|v| !v.is_null()) {
                        // Remove with no value: all of them.
                        None => {
                            arr.clear();
                            if let Some(d) = members.as_deref_mut() {
                                d.remove_all();
                            }
                        }
                        // Entra's legacy dialect: remove exactly the listed values, never all.
                        Some(v) => {
                            let probes = match v {
                                Value::Array(a) => a,
                                v => vec![v],
                            };
                            let mut member_ids: HashSet<String> = HashSet::new();
                            for p in probes {
                                let p = match p {
                                    Value::String(s) if def.sub("value").is_some() => {
                                        serde_json::json!({ "value": s })
                                    }
                                    p => p,
                                };
                                let p = normalize_attr(
                                    def,
                                    Value::Array(vec![p]),
                                    Mode::Stored,
                                    &|| def.name.to_string(),
                                )?
                                .and_then(|v| v.as_array().and_then(|a| a.first().cloned()));
                                let Some(p) = p else { continue };
                                if is_members {
                                    if let Some(val) = p.get("value").and_then(Value::as_str) {
                                        if let Some(d) = members.as_deref_mut() {
                                            d.remove(val);
                                        }
                                        member_ids.insert(val.to_string());
                                    }
                                } else {
                                    arr.retain(|e| !elem_matches(e, &p, def));
                                }
                            }
                            if !member_ids.is_empty() {
                                arr.retain(|e| {
                                    e.get("value")
                                        .and_then(Value::as_str)
                                        .is_none_or(|v| !member_ids.contains(v))
                                });
                            }
                        }
                    }
                    Ok(())
                }
            },
            (None, Some(sub)) => {
                let sd = sub_attr(def, sub)?;
                match op {
                    PatchOpKind::Remove => {
                        for e in arr.iter_mut() {
                            if let Some(m) = e.as_object_mut() {
                                m.remove(sd.name);
                            }
                        }
                    }
                    _ => {
                        let nv =
                            normalize_attr(sd, value.unwrap_or(Value::Null), Mode::Input, &|| {
                                format!("{}.{}", def.name, sd.name)
                            })?;
                        if arr.is_empty()
                            && let Some(v) = &nv
                        {
                            let mut m = Map::new();
                            m.insert(sd.name.to_string(), v.clone());
                            arr.push(Value::Object(m));
                        } else {
                            for e in arr.iter_mut() {
                                if let Some(m) = e.as_object_mut() {
                                    match &nv {
                                        Some(v) => {
                                            m.insert(sd.name.to_string(), v.clone());
                                        }
                                        None => {
                                            m.remove(sd.name);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
            (Some(f), sub) => {
                let mask: Vec<bool> = arr
                    .iter()
                    .map(|e| {
                        e.as_object()
                            .is_some_and(|m| eval(f, Scope::Sub(Some(def)), m))
                    })
                    .collect();
                let hits: Vec<usize> = (0..arr.len()).filter(|&i| mask[i]).collect();
                match op {
                    PatchOpKind::Remove => {
                        if let Some(d) = members.as_deref_mut() {
                            for v in filter_member_values(f) {
                                d.remove(&v);
                            }
                        }
                        match sub {
                            None => {
                                let mut i = 0;
                                arr.retain(|e| {
                                    let hit = mask.get(i).copied().unwrap_or(false);
                                    i += 1;
                                    if hit
                                        && let Some(d) = members.as_deref_mut()
                                        && let Some(v) = e.get("value").and_then(Value::as_str)
                                    {
                                        d.remove(v);
                                    }
                                    !hit
                                });
                            }
                            Some(s) => {
                                let name = def.sub(s).map(|d| d.name).unwrap_or(s.as_str());
                                for &i in &hits {
                                    if let Some(m) = arr[i].as_object_mut() {
                                        m.remove(name);
                                    }
                                }
                                // `remove emails[type eq "work"].value` (Entra clearing the mail
                                // attribute) must not leave a bare `{"type": "work"}` behind.
                                let lost_value = name == "value" && def.sub("value").is_some();
                                let mut i = 0;
                                arr.retain(|e| {
                                    let hit = mask.get(i).copied().unwrap_or(false);
                                    i += 1;
                                    e.as_object()
                                        .is_none_or(|m| !(m.is_empty() || (hit && lost_value)))
                                });
                            }
                        }
                        Ok(())
                    }
                    PatchOpKind::Add | PatchOpKind::Replace => {
                        let mut targets = hits;
                        if targets.is_empty() {
                            // Entra: a filter that matches nothing creates the element.
                            let seed = element_from_filter(f, def).ok_or_else(|| {
                                ScimError::NoTarget(format!(
                                    "the filter in '{path}' matches no value, and it is not a plain 'eq' filter a new value could be built from"
                                ))
                            })?;
                            arr.push(Value::Object(seed));
                            targets = vec![arr.len() - 1];
                        }
                        let raw = value.unwrap_or(Value::Null);
                        let update: Map<String, Value> = match sub {
                            Some(s) => {
                                let (sd, nv) = normalized_sub(def, s, raw)?;
                                let mut m = Map::new();
                                m.insert(sd.name.to_string(), nv.unwrap_or(Value::Null));
                                m
                            }
                            None => {
                                let raw = match raw {
                                    Value::Array(mut a) if a.len() == 1 => {
                                        a.pop().unwrap_or(Value::Null)
                                    }
                                    v => v,
                                };
                                match normalize_attr(
                                    def,
                                    Value::Array(vec![raw]),
                                    Mode::Input,
                                    &|| def.name.to_string(),
                                )? {
                                    Some(Value::Array(mut a)) => match a.pop() {
                                        Some(Value::Object(m)) => m,
                                        _ => Map::new(),
                                    },
                                    _ => Map::new(),
                                }
                            }
                        };
                        for &i in &targets {
                            if let Some(m) = arr[i].as_object_mut() {
                                for (k, v) in &update {
                                    if v.is_null() {
                                        m.remove(k);
                                    } else {
                                        m.insert(k.clone(), v.clone());
                                    }
                                }
                            }
                            let elem = normalize_attr(
                                def,
                                Value::Array(vec![arr[i].clone()]),
                                Mode::Input,
                                &|| def.name.to_string(),
                            )?
                            .and_then(|v| v.as_array().and_then(|a| a.first().cloned()));
                            if let Some(d) = members.as_deref_mut()
                                && let Some(m) = elem.as_ref().and_then(member_of)
                            {
                                d.add(m);
                            }
                            arr[i] = elem.unwrap_or(Value::Object(Map::new()));
                        }
                        arr.retain(|e| e.as_object().is_none_or(|m| !m.is_empty()));
                        if let Some(&last) = targets.last()
                            && last < arr.len()
                        {
                            fix_primary(&mut arr, Some(last));
                        }
                        Ok(())
                    }
                }
            }
        }
    })();
    if !arr.is_empty() {
        container.insert(def.name.to_string(), Value::Array(arr));
    }
    res
}

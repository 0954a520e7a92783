//! Resources as normalized JSON objects, and the validation that produces them.
//!
//! A [`Resource`] is a `serde_json` map whose core attribute names are the schema's canonical
//! spelling, whose extension attributes live under their schema URN (`"urn:...:enterprise:2.0:User":
//! {"department": ...}`), and whose values have their schema types (`"True"` became `true`).
//! Unknown extension attributes are kept verbatim under their URN so they round-trip.
//!
//! Over 600 lines on purpose: the resource type and the one normalization every input goes
//! through (create, replace, stored) belong together; apart they drift.

use std::fmt;

use serde_json::{Map, Value};

use crate::error::{Result, ScimError};
use crate::filter::eval::{get_ci, parse_instant};
use crate::schema::{
    self, AttrDef, AttrType, ENTERPRISE_USER_SCHEMA, Mutability, ResourceKind, UrnKey,
};

/// Server-assigned metadata (`meta`, RFC 7643 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 last-modification time.
    pub last_modified: String,
    /// Opaque version; rendered as a weak ETag by [`crate::etag()`].
    pub version: String,
    /// Absolute URL of the resource.
    pub location: String,
}

/// A group member (or a user's group) reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberRef {
    /// The member's `id`.
    pub value: String,
    /// `User` or `Group`, when given.
    pub kind: Option<String>,
    /// Display name, when given.
    pub display: Option<String>,
    /// `$ref` URL, when given.
    pub reference: Option<String>,
}

impl MemberRef {
    /// A member reference with only its id.
    pub fn new(value: impl Into<String>) -> MemberRef {
        MemberRef {
            value: value.into(),
            kind: None,
            display: None,
            reference: None,
        }
    }

    pub(crate) fn from_value(v: &Value) -> Option<MemberRef> {
        let m = v.as_object()?;
        let s = |k: &str| {
            get_ci(m, k)
                .and_then(|(_, v)| v.as_str())
                .map(str::to_string)
        };
        Some(MemberRef {
            value: s("value")?,
            kind: s("type"),
            display: s("display"),
            reference: s("$ref"),
        })
    }

    /// JSON form (`{"value", "type", "display", "$ref"}`).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("value".into(), Value::String(self.value.clone()));
        if let Some(t) = &self.kind {
            m.insert("type".into(), Value::String(t.clone()));
        }
        if let Some(d) = &self.display {
            m.insert("display".into(), Value::String(d.clone()));
        }
        if let Some(r) = &self.reference {
            m.insert("$ref".into(), Value::String(r.clone()));
        }
        Value::Object(m)
    }
}

/// A validated, normalized SCIM resource.
#[derive(Clone, PartialEq)]
pub struct Resource {
    kind: ResourceKind,
    attrs: Map<String, Value>,
    /// Write-only: held only between validation and the caller's `take_password`, never
    /// serialized, never shown by `Debug`.
    password: Option<String>,
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resource")
            .field("kind", &self.kind)
            .field("attrs", &self.attrs)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Attribute location for error details, built only when an error is reported (building it
/// eagerly for every attribute was a measurable share of PATCH time).
pub(crate) type Loc<'a> = &'a dyn Fn() -> String;

/// Whether values come from a client (read-only attributes ignored) or from our own storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Input,
    Stored,
}

fn type_err(path: Loc<'_>, def: &AttrDef, v: &Value) -> ScimError {
    let path = path();
    let got = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    let want = match def.ty {
        AttrType::Complex => "an object",
        AttrType::Boolean => "a boolean (true/false)",
        AttrType::Integer => "an integer",
        AttrType::Decimal => "a number",
        AttrType::DateTime => "an RFC 3339 date-time string",
        _ => "a string",
    };
    ScimError::InvalidValue(format!("attribute '{path}' must be {want}, got {got}"))
}

fn normalize_scalar(def: &AttrDef, v: Value, path: Loc<'_>) -> Result<Option<Value>> {
    let out = match (def.ty, v) {
        (_, Value::Null) => return Ok(None),
        (AttrType::Boolean, Value::Bool(b)) => Value::Bool(b),
        // Entra's legacy dialect sends "True"/"False".
        (AttrType::Boolean, Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => {
            Value::Bool(true)
        }
        (AttrType::Boolean, Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => {
            Value::Bool(false)
        }
        (AttrType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Value::Number(n),
        (AttrType::Decimal, Value::Number(n)) => Value::Number(n),
        (AttrType::DateTime, Value::String(s)) => {
            if parse_instant(&s).is_none() && s.parse::<jiff::civil::DateTime>().is_err() {
                return Err(ScimError::InvalidValue(format!(
                    "attribute '{}' must be an RFC 3339 date-time such as 2011-05-13T04:42:34Z, got {s:?}",
                    path()
                )));
            }
            Value::String(s)
        }
        (AttrType::String, Value::String(s)) if def.strict_canonical => {
            match def
                .canonical_values
                .iter()
                .find(|c| c.eq_ignore_ascii_case(&s))
            {
                Some(c) => Value::String((*c).to_string()),
                None => {
                    return Err(ScimError::InvalidValue(format!(
                        "attribute '{}' must be one of {:?}, got {s:?}",
                        path(),
                        def.canonical_values
                    )));
                }
            }
        }
        (AttrType::String | AttrType::Reference | AttrType::Binary, Value::String(s)) => {
            Value::String(s)
        }
        (_, v) => return Err(type_err(path, def, &v)),
    };
    Ok(Some(out))
}

fn normalize_single(def: &AttrDef, v: Value, mode: Mode, path: Loc<'_>) -> Result<Option<Value>> {
    if def.ty != AttrType::Complex {
        return normalize_scalar(def, v, path);
    }
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                let Some(sub) = def.sub(&k) else { continue };
                if mode == Mode::Input && sub.is_read_only() && !def.is_read_only() {
                    continue;
                }
                let sub_path = || format!("{}.{}", path(), sub.name);
                if let Some(nv) = normalize_attr(sub, val, mode, &sub_path)? {
                    out.insert(sub.name.to_string(), nv);
                }
            }
            Ok(if out.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            })
        }
        // Entra sends manager (and sometimes members) as a bare id.
        Value::String(s) if def.sub("value").is_some() => Ok(if s.is_empty() {
            None
        } else {
            let mut m = Map::new();
            m.insert("value".into(), Value::String(s));
            Some(Value::Object(m))
        }),
        v => Err(type_err(path, def, &v)),
    }
}

/// Normalizes one attribute value: type coercion, canonical sub-attribute names, nulls and
/// empty values dropped (`None` = unassigned, RFC 7643 §2.5).
pub(crate) fn normalize_attr(
    def: &AttrDef,
    v: Value,
    mode: Mode,
    path: Loc<'_>,
) -> Result<Option<Value>> {
    if def.multi_valued {
        let items = match v {
            Value::Null => return Ok(None),
            Value::Array(a) => a,
            other => vec![other],
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if item.is_array() {
                return Err(ScimError::InvalidValue(format!(
                    "attribute '{}' element {i} is a nested array",
                    path()
                )));
            }
            if let Some(nv) = normalize_single(def, item, mode, path)? {
                out.push(nv);
            }
        }
        if def.ty == AttrType::Complex && def.sub("primary").is_some() {
            let primaries = out
                .iter()
                .filter(|e| e.get("primary") == Some(&Value::Bool(true)))
                .count();
            if primaries > 1 {
                return Err(ScimError::InvalidValue(format!(
                    "attribute '{}' has {primaries} values marked primary; at most one may be",
                    path()
                )));
            }
        }
        return Ok(if out.is_empty() {
            None
        } else {
            Some(Value::Array(out))
        });
    }
    match v {
        // Entra sends manager as `[{"value": "..."}]`.
        Value::Array(mut a) => {
            a.retain(|e| !e.is_null());
            match a.len() {
                0 => Ok(None),
                1 => normalize_single(def, a.pop().unwrap_or(Value::Null), mode, path),
                n => Err(ScimError::InvalidValue(format!(
                    "attribute '{}' is single-valued but {n} values were given",
                    path()
                ))),
            }
        }
        v => normalize_single(def, v, mode, path),
    }
}

/// Merges `val` into `out[key]`: objects merge key by key, anything else replaces.
fn merge_into(out: &mut Map<String, Value>, key: &str, val: Value) {
    match (out.get_mut(key), val) {
        (Some(Value::Object(existing)), Value::Object(new)) => {
            for (k, v) in new {
                existing.insert(k, v);
            }
        }
        (_, val) => {
            out.insert(key.to_string(), val);
        }
    }
}

/// Drops `null` members at the top of an unknown extension object; the rest is kept verbatim.
fn strip_nulls(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(m) => {
            let m: Map<String, Value> = m.into_iter().filter(|(_, v)| !v.is_null()).collect();
            if m.is_empty() {
                None
            } else {
                Some(Value::Object(m))
            }
        }
        Value::Array(a) if a.is_empty() => None,
        v => Some(v),
    }
}

/// Sets `attr` (possibly `attr.sub`) in an unknown extension object, case-insensitively
/// reusing an existing key so the first spelling wins.
fn set_unknown(ext: &mut Map<String, Value>, attr: &str, val: Value) {
    let (name, sub) = match attr.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (attr, None),
    };
    let key = get_ci(ext, name)
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| name.to_string());
    match sub {
        None => match strip_nulls(val) {
            Some(v) => {
                ext.insert(key, v);
            }
            None => {
                ext.remove(&key);
            }
        },
        Some(s) => {
            let entry = ext.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Some(m) = entry.as_object_mut() {
                set_unknown(m, s, val);
            }
        }
    }
}

pub(crate) struct Normalized {
    pub attrs: Map<String, Value>,
    pub password: Option<String>,
}

/// Normalizes a whole resource body.
pub(crate) fn normalize_map(
    kind: ResourceKind,
    input: Map<String, Value>,
    mode: Mode,
) -> Result<Normalized> {
    let mut out = Map::new();
    let mut password = None;
    normalize_into(kind, input, mode, &mut out, &mut password, 0)?;
    Ok(Normalized {
        attrs: out,
        password,
    })
}

fn normalize_into(
    kind: ResourceKind,
    input: Map<String, Value>,
    mode: Mode,
    out: &mut Map<String, Value>,
    password: &mut Option<String>,
    depth: u8,
) -> Result<()> {
    for (key, val) in input {
        if val.is_null() || key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if key.eq_ignore_ascii_case("id") || key.eq_ignore_ascii_case("meta") {
            if mode == Mode::Stored {
                match (&val, key.eq_ignore_ascii_case("id")) {
                    (Value::String(_), true) => {
                        out.insert("id".into(), val);
                    }
                    (Value::Object(_), false) => {
                        out.insert("meta".into(), val);
                    }
                    _ => {}
                }
            }
            continue;
        }
        let mut split = schema::split_urn_key(kind, &key);
        // What we store keeps every unknown extension as one object under its URN, whatever
        // its last segment looks like; only client input needs the heuristic split.
        if mode == Mode::Stored
            && val.is_object()
            && schema::valid_urn(&key)
            && !matches!(&split, Some(UrnKey::Attr(urn, _)) if urn == kind.schema().id || kind.extension(urn).is_some())
        {
            split = Some(UrnKey::Schema(key.clone()));
        }
        if split.is_none() && schema::is_urn_like(&key) {
            // A malformed URN: ignored, as Entra sometimes sends them.
            continue;
        }
        match split {
            Some(UrnKey::Schema(urn)) => {
                let Value::Object(obj) = val else { continue };
                if urn == kind.schema().id {
                    // `"urn:...:core:2.0:User": {...}`: core attributes wrapped in their URN.
                    if depth == 0 {
                        normalize_into(kind, obj, mode, out, password, 1)?;
                    }
                } else if let Some(ext) = kind.extension(&urn) {
                    for (k, v) in obj {
                        set_known_ext(kind, ext.id, &k, v, mode, out)?;
                    }
                } else if let Some(v) = strip_nulls(Value::Object(obj)) {
                    let k = get_ci(out, &urn).map(|(k, _)| k.clone()).unwrap_or(urn);
                    merge_into(out, &k, v);
                }
            }
            Some(UrnKey::Attr(urn, attr)) => {
                if urn == kind.schema().id {
                    set_core(kind, attr, val, mode, out, password)?;
                } else if kind.extension(&urn).is_some() {
                    set_known_ext(kind, &urn, attr, val, mode, out)?;
                } else {
                    let k = get_ci(out, &urn).map(|(k, _)| k.clone()).unwrap_or(urn);
                    let ext = out
                        .entry(k.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Some(m) = ext.as_object_mut() {
                        set_unknown(m, attr, val);
                        if m.is_empty() {
                            out.remove(&k);
                        }
                    }
                }
            }
            None => set_core(kind, &key, val, mode, out, password)?,
        }
    }
    Ok(())
}

/// Sets a core attribute (`attr` or dotted `attr.sub`) from client or stored input.
fn set_core(
    kind: ResourceKind,
    key: &str,
    val: Value,
    mode: Mode,
    out: &mut Map<String, Value>,
    password: &mut Option<String>,
) -> Result<()> {
    let (name, sub) = match key.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (key, None),
    };
    // Unknown core attributes are ignored rather than rejected: Entra sends whatever an admin
    // mapped, and failing the whole object would block provisioning.
    let Some(def) = kind.core_attr(name) else {
        return Ok(());
    };
    if def.name == "id" || def.name == "meta" {
        return Ok(());
    }
    if def.is_read_only() && mode == Mode::Input {
        return Ok(());
    }
    if def.mutability == Mutability::WriteOnly {
        if mode == Mode::Input {
            match val {
                Value::String(s) => *password = Some(s),
                Value::Null => {}
                v => return Err(type_err(&|| def.name.to_string(), def, &v)),
            }
        }
        return Ok(());
    }
    let val = match sub {
        None => val,
        Some(s) => {
            let Some(sd) = def.sub(s) else { return Ok(()) };
            if def.multi_valued {
                return Err(ScimError::InvalidPath(format!(
                    "'{key}' addresses a sub-attribute of multi-valued '{}'; use a value filter such as {}[type eq \"work\"].{}",
                    def.name, def.name, sd.name
                )));
            }
            let mut m = Map::new();
            m.insert(sd.name.to_string(), val);
            Value::Object(m)
        }
    };
    match normalize_attr(def, val, mode, &|| def.name.to_string())? {
        Some(v) => merge_into(out, def.name, v),
        None if sub.is_none() => {
            out.remove(def.name);
        }
        None => {}
    }
    Ok(())
}

fn set_known_ext(
    kind: ResourceKind,
    urn: &str,
    key: &str,
    val: Value,
    mode: Mode,
    out: &mut Map<String, Value>,
) -> Result<()> {
    let (name, sub) = match key.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (key, None),
    };
    let Some(def) = kind.attr(Some(urn), name) else {
        return Ok(());
    };
    let val = match sub {
        None => val,
        Some(s) => {
            let Some(sd) = def.sub(s) else { return Ok(()) };
            let mut m = Map::new();
            m.insert(sd.name.to_string(), val);
            Value::Object(m)
        }
    };
    let nv = normalize_attr(def, val, mode, &|| format!("{urn}:{}", def.name))?;
    let ext = out
        .entry(urn.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(m) = ext.as_object_mut() {
        match nv {
            Some(v) => merge_into(m, def.name, v),
            None if sub.is_none() => {
                m.remove(def.name);
            }
            None => {}
        }
        if m.is_empty() {
            out.remove(urn);
        }
    }
    Ok(())
}

/// Folds a value for uniqueness checks according to the attribute's `caseExact`.
pub fn uniqueness_fold(def: &AttrDef, value: &str) -> String {
    if def.case_exact {
        value.to_string()
    } else {
        value.to_lowercase()
    }
}

fn check_required(kind: ResourceKind, attrs: &Map<String, Value>) -> Result<()> {
    for def in kind.schema().attributes.iter().filter(|d| d.required) {
        if !attrs.contains_key(def.name) {
            return Err(ScimError::InvalidValue(format!(
                "required attribute '{}' is missing",
                def.name
            )));
        }
    }
    Ok(())
}

fn body_object(body: &Value) -> Result<Map<String, Value>> {
    body_map(body.clone())
}

/// [`body_object`] of a body no longer needed.
fn body_map(body: Value) -> Result<Map<String, Value>> {
    match body {
        Value::Object(m) => Ok(m),
        _ => Err(ScimError::InvalidSyntax(
            "the request body must be a JSON object".into(),
        )),
    }
}

/// Validates a POST body: ignores read-only attributes (`id`, `meta`, `groups`), `null`s,
/// unknown attributes and schema URNs; coerces Entra's string booleans; checks types and
/// required attributes. The password, if any, is held for [`Resource::take_password`].
pub fn validate_create(kind: ResourceKind, body: &Value) -> Result<Resource> {
    let n = normalize_map(kind, body_object(body)?, Mode::Input)?;
    check_required(kind, &n.attrs)?;
    Ok(Resource {
        kind,
        attrs: n.attrs,
        password: n.password,
    })
}

/// Validates a PUT body against the stored resource: the body replaces every client-writable
/// attribute; `id`, `meta` and computed read-only attributes (`groups`) are kept from `existing`.
///
/// For groups, a PUT replaces the whole member list: see
/// [`crate::patch::replace_with_delta`] for the membership delta.
pub fn validate_replace(existing: &Resource, body: &Value) -> Result<Resource> {
    let kind = existing.kind;
    let mut n = normalize_map(kind, body_object(body)?, Mode::Input)?;
    check_required(kind, &n.attrs)?;
    for def in schema::COMMON_ATTRIBUTES
        .iter()
        .chain(kind.schema().attributes)
        .filter(|d| d.is_read_only())
    {
        if let Some(v) = existing.attrs.get(def.name) {
            n.attrs.insert(def.name.to_string(), v.clone());
        }
    }
    Ok(Resource {
        kind,
        attrs: n.attrs,
        password: n.password,
    })
}

impl Resource {
    /// Rebuilds a resource from the engine's own JSON (e.g. what the server stored): keeps
    /// `id`, `meta` and computed attributes, re-checks types.
    pub fn from_stored(kind: ResourceKind, stored: &Value) -> Result<Resource> {
        Resource::from_stored_value(kind, stored.clone())
    }

    /// [`Resource::from_stored`] of JSON no longer needed: its values move into the resource
    /// (the cache rebuilds a resource this way for every read).
    pub fn from_stored_value(kind: ResourceKind, stored: Value) -> Result<Resource> {
        let n = normalize_map(kind, body_map(stored)?, Mode::Stored)?;
        Ok(Resource {
            kind,
            attrs: n.attrs,
            password: None,
        })
    }

    pub(crate) fn from_parts(kind: ResourceKind, attrs: Map<String, Value>) -> Resource {
        Resource {
            kind,
            attrs,
            password: None,
        }
    }

    /// Re-validates the resource as a whole (types, required attributes, primary flags).
    pub fn validate(&self) -> Result<()> {
        let n = normalize_map(self.kind, self.attrs.clone(), Mode::Stored)?;
        check_required(self.kind, &n.attrs)?;
        if n.attrs != self.attrs {
            return Err(ScimError::InvalidValue(
                "the resource is not in normalized form".into(),
            ));
        }
        Ok(())
    }

    /// User or Group.
    pub fn kind(&self) -> ResourceKind {
        self.kind
    }

    /// The normalized attribute map (no `schemas`, no password).
    pub fn attributes(&self) -> &Map<String, Value> {
        &self.attrs
    }

    /// Consumes the resource, returning the normalized attribute map.
    pub fn into_attributes(self) -> Map<String, Value> {
        self.attrs
    }

    fn str_attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).and_then(Value::as_str)
    }

    /// `id`, once the server has assigned it.
    pub fn id(&self) -> Option<&str> {
        self.str_attr("id")
    }

    /// Assigns `id` (server only).
    pub fn set_id(&mut self, id: impl Into<String>) {
        self.attrs.insert("id".into(), Value::String(id.into()));
    }

    /// `userName` (users).
    pub fn user_name(&self) -> Option<&str> {
        self.str_attr("userName")
    }

    /// The value of the kind's server-unique attribute (see [`ResourceKind::unique_attr`]),
    /// case-folded unless the attribute is case-exact: equal keys are one identity.
    pub fn unique_key(&self) -> Option<String> {
        let def = self.kind().unique_attr()?;
        let v = self.str_attr(def.name)?;
        Some(if def.case_exact {
            v.to_string()
        } else {
            v.to_lowercase()
        })
    }

    /// The value of the kind's server-unique attribute as sent (not case-folded).
    pub fn unique_value(&self) -> Option<&str> {
        self.str_attr(self.kind().unique_attr()?.name)
    }

    /// Replaces the value of the server-unique attribute (a server normalizing it).
    pub fn set_unique_value(&mut self, value: impl Into<String>) {
        if let Some(def) = self.kind().unique_attr() {
            self.attrs
                .insert(def.name.to_string(), Value::String(value.into()));
        }
    }

    /// `externalId`.
    pub fn external_id(&self) -> Option<&str> {
        self.str_attr("externalId")
    }

    /// `displayName`.
    pub fn display_name(&self) -> Option<&str> {
        self.str_attr("displayName")
    }

    /// `active`; `None` when unassigned (the server decides the default).
    pub fn active(&self) -> Option<bool> {
        self.attrs.get("active").and_then(Value::as_bool)
    }

    /// The `work` email, else the primary one, else the first.
    pub fn work_email(&self) -> Option<&str> {
        let emails = self.attrs.get("emails")?.as_array()?;
        let pick = |f: &dyn Fn(&Value) -> bool| emails.iter().find(|e| f(e));
        pick(&|e| {
            e.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("work"))
        })
        .or_else(|| pick(&|e| e.get("primary") == Some(&Value::Bool(true))))
        .or_else(|| emails.first())
        .and_then(|e| e.get("value"))
        .and_then(Value::as_str)
    }

    /// Every email address.
    pub fn emails(&self) -> Vec<&str> {
        self.values_of("emails")
    }

    /// The `value`s of the multi-valued attribute `attr` (stored under its canonical name).
    fn values_of(&self, attr: &str) -> Vec<&str> {
        self.attrs
            .get(attr)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|e| e.get("value")?.as_str()).collect())
            .unwrap_or_default()
    }

    /// Enterprise `manager.value`.
    pub fn manager_id(&self) -> Option<&str> {
        self.attrs
            .get(ENTERPRISE_USER_SCHEMA)?
            .get("manager")?
            .get("value")?
            .as_str()
    }

    /// Values of the attributes that must be unique (`userName` for users), folded the way
    /// filters compare them (`userName` is not caseExact, so it is lowercased). The server
    /// should enforce uniqueness on exactly these keys so that its 409s agree with what
    /// `userName eq "..."` finds; otherwise Entra loops on conflicts.
    pub fn uniqueness_keys(&self) -> Vec<(&'static str, String)> {
        self.kind
            .schema()
            .attributes
            .iter()
            .filter(|d| d.uniqueness != schema::Uniqueness::None)
            .filter_map(|d| {
                let v = self.attrs.get(d.name)?.as_str()?;
                Some((d.name, uniqueness_fold(d, v)))
            })
            .collect()
    }

    /// Group members held in this resource.
    pub fn members(&self) -> Vec<MemberRef> {
        self.attrs
            .get("members")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(MemberRef::from_value).collect())
            .unwrap_or_default()
    }

    /// Member ids held in this resource.
    pub fn member_values(&self) -> Vec<&str> {
        self.values_of("members")
    }

    /// Sets `members` (server side: membership is stored on the members).
    pub fn set_members(&mut self, members: &[MemberRef]) {
        self.set_refs("members", members);
    }

    /// Sets the read-only, computed `groups` of a user.
    pub fn set_groups(&mut self, groups: &[MemberRef]) {
        self.set_refs("groups", groups);
    }

    fn set_refs(&mut self, name: &str, refs: &[MemberRef]) {
        if refs.is_empty() {
            self.attrs.remove(name);
        } else {
            let v = refs.iter().map(MemberRef::to_json).collect();
            self.attrs.insert(name.into(), Value::Array(v));
        }
    }

    /// Sets `meta` (server only). `meta.version` is rendered as a weak ETag.
    pub fn set_meta(&mut self, meta: &Meta) {
        let mut m = Map::new();
        m.insert("resourceType".into(), self.kind.name().into());
        m.insert("created".into(), meta.created.clone().into());
        m.insert("lastModified".into(), meta.last_modified.clone().into());
        m.insert("location".into(), meta.location.clone().into());
        m.insert("version".into(), crate::etag::etag(&meta.version).into());
        self.attrs.insert("meta".into(), Value::Object(m));
    }

    /// The ETag in `meta.version`, if set.
    pub fn version_etag(&self) -> Option<&str> {
        self.attrs.get("meta")?.get("version")?.as_str()
    }

    /// Removes `id`, `meta` and computed attributes, e.g. before storing the client-owned part.
    pub fn strip_server_attributes(&mut self) {
        self.attrs.remove("id");
        self.attrs.remove("meta");
        self.attrs.remove("groups");
        if self.kind == ResourceKind::Group {
            self.attrs.remove("members");
        }
    }

    /// Takes the write-only password received with the request (if any). The engine never
    /// serializes it; the caller hashes or, as kube-scim does, drops it.
    pub fn take_password(&mut self) -> Option<String> {
        self.password.take()
    }

    /// Sets an attribute from client-style JSON (`name`, `name.sub` or `urn:...:attr`),
    /// normalizing it. Read-only attributes can be set this way (server use).
    pub fn set_attribute(&mut self, key: &str, value: Value) -> Result<()> {
        let mut pw = None;
        let mut body = Map::new();
        body.insert(key.to_string(), value);
        normalize_into(self.kind, body, Mode::Stored, &mut self.attrs, &mut pw, 0)
    }

    /// `schemas`: the core schema plus every extension present.
    pub fn schemas(&self) -> Vec<&str> {
        let mut out = vec![self.kind.schema().id];
        out.extend(
            self.attrs
                .keys()
                .filter(|k| k.starts_with("urn:"))
                .map(String::as_str),
        );
        out
    }

    /// The SCIM JSON text, `schemas` first; same content as [`Resource::to_json`] without
    /// building an intermediate `Value`.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// [`Resource::to_json`], moving the attributes instead of copying them.
    pub fn into_json(self) -> Value {
        let mut m = self.json_with_schemas();
        m.extend(self.attrs);
        Value::Object(m)
    }

    /// The SCIM JSON representation: `schemas` (core plus every extension present), all
    /// attributes, never the password.
    pub fn to_json(&self) -> Value {
        let mut m = self.json_with_schemas();
        m.extend(self.attrs.iter().map(|(k, v)| (k.clone(), v.clone())));
        Value::Object(m)
    }

    /// A JSON object holding only `schemas`, with room for the attributes.
    fn json_with_schemas(&self) -> Map<String, Value> {
        let schemas = self
            .schemas()
            .into_iter()
            .map(|s| Value::String(s.to_string()))
            .collect();
        let mut m = Map::with_capacity(self.attrs.len() + 1);
        m.insert("schemas".into(), Value::Array(schemas));
        m
    }
}

/// Serializes as the SCIM representation (`schemas` first, never the password).
impl serde::Serialize for Resource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.attrs.len() + 1))?;
        m.serialize_entry("schemas", &self.schemas())?;
        for (k, v) in &self.attrs {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

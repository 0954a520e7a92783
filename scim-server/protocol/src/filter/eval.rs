//! Filter evaluation with the schema's case and type rules (RFC 7644 §3.4.2.2).

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::ast::{AttrPath, CompareOp, Filter, Literal};
use crate::schema::{AttrDef, AttrType, ResourceKind};

/// Where a path is resolved: at the resource root, or inside one element of a complex
/// attribute (the attribute names of a value filter are relative to that element).
#[derive(Clone, Copy)]
pub(crate) enum Scope {
    Root(ResourceKind),
    Sub(Option<&'static AttrDef>),
}

/// Map lookup: exact first (stored names are canonical), then case-insensitive.
pub(crate) fn get_ci<'v>(
    map: &'v Map<String, Value>,
    name: &str,
) -> Option<(&'v String, &'v Value)> {
    if let Some(kv) = map.get_key_value(name) {
        return Some(kv);
    }
    map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))
}

/// Resolves `[urn:]attr` in `scope` to its value and definition (ignores filter/sub-attribute).
pub(crate) fn resolve_attr<'v>(
    scope: Scope,
    obj: &'v Map<String, Value>,
    path: &AttrPath,
) -> (Option<&'v Value>, Option<&'static AttrDef>) {
    match scope {
        Scope::Sub(parent) => {
            let def = parent.and_then(|p| p.sub(&path.attr));
            (get_ci(obj, &path.attr).map(|(_, v)| v), def)
        }
        Scope::Root(kind) => match &path.schema {
            Some(urn) if !urn.eq_ignore_ascii_case(kind.schema().id) => {
                let def = kind.attr(Some(urn), &path.attr);
                let ext = get_ci(obj, urn).and_then(|(_, v)| v.as_object());
                (ext.and_then(|m| get_ci(m, &path.attr)).map(|(_, v)| v), def)
            }
            _ => {
                let def = kind.core_attr(&path.attr);
                (get_ci(obj, &path.attr).map(|(_, v)| v), def)
            }
        },
    }
}

/// The leaf values a path designates, with the leaf definition. Multi-valued attributes
/// contribute every element; a complex attribute without a sub-attribute designates its
/// `value` sub-attribute (so `emails co "x"` looks at the addresses).
fn leaves<'v>(
    scope: Scope,
    obj: &'v Map<String, Value>,
    path: &AttrPath,
) -> (Vec<&'v Value>, Option<&'static AttrDef>) {
    let (v, def) = resolve_attr(scope, obj, path);
    let Some(v) = v else {
        return (Vec::new(), leaf_def(def, path));
    };
    let mut elems: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    if let Some(f) = &path.filter {
        elems.retain(|e| e.as_object().is_some_and(|m| eval(f, Scope::Sub(def), m)));
    }
    let sub = path.sub_attr.as_deref().or(if is_complex(def, &elems) {
        Some("value")
    } else {
        None
    });
    let leaf = leaf_def(def, path);
    let Some(sub) = sub else {
        return (elems, leaf);
    };
    let mut out = Vec::new();
    for e in elems {
        if let Some(m) = e.as_object()
            && let Some((_, v)) = get_ci(m, sub)
        {
            match v {
                Value::Array(a) => out.extend(a.iter()),
                v => out.push(v),
            }
        }
    }
    (out, leaf)
}

fn is_complex(def: Option<&AttrDef>, elems: &[&Value]) -> bool {
    match def {
        Some(d) => d.ty == AttrType::Complex,
        None => elems.first().is_some_and(|e| e.is_object()),
    }
}

fn leaf_def(def: Option<&'static AttrDef>, path: &AttrPath) -> Option<&'static AttrDef> {
    let d = def?;
    match &path.sub_attr {
        Some(s) => d.sub(s),
        None if d.ty == AttrType::Complex => d.sub("value"),
        None => Some(d),
    }
}

fn non_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(non_empty),
        Value::Object(m) => m.values().any(non_empty),
        _ => true,
    }
}

/// Evaluates `f` against `obj` in `scope`.
pub(crate) fn eval(f: &Filter, scope: Scope, obj: &Map<String, Value>) -> bool {
    match f {
        Filter::And(v) => v.iter().all(|c| eval(c, scope, obj)),
        Filter::Or(v) => v.iter().any(|c| eval(c, scope, obj)),
        Filter::Not(c) => !eval(c, scope, obj),
        Filter::Present(p) => {
            if p.filter.is_some() && p.sub_attr.is_none() {
                return value_path(scope, obj, p);
            }
            let (vals, _) = leaves_for_presence(scope, obj, p);
            vals.into_iter().any(non_empty)
        }
        Filter::ValuePath(p) => value_path(scope, obj, p),
        Filter::Compare { path, op, value } => {
            if let Scope::Root(kind) = scope
                && path.schema.is_none()
                && path.is("schemas", None)
            {
                return schemas_match(kind, obj, *op, value);
            }
            let (vals, def) = leaves(scope, obj, path);
            match (op, value) {
                (CompareOp::Eq, Literal::Null) => !vals.iter().any(|v| non_empty(v)),
                (CompareOp::Ne, Literal::Null) => vals.iter().any(|v| non_empty(v)),
                (CompareOp::Ne, lit) => !vals.iter().any(|v| compare(CompareOp::Eq, v, lit, def)),
                (op, lit) => vals.iter().any(|v| compare(*op, v, lit, def)),
            }
        }
    }
}

/// `schemas` is computed, not stored: the core URN plus every extension object present.
fn schemas_match(
    kind: ResourceKind,
    obj: &Map<String, Value>,
    op: CompareOp,
    lit: &Literal,
) -> bool {
    let urns = std::iter::once(kind.schema().id).chain(
        obj.keys()
            .filter(|k| k.starts_with("urn:"))
            .map(String::as_str),
    );
    let Some(l) = lit.to_text() else {
        return false;
    };
    let mut urns = urns.map(|u| str_op(CompareOp::Eq, u, &l, false));
    match op {
        CompareOp::Eq => urns.any(|b| b),
        CompareOp::Ne => !urns.any(|b| b),
        _ => false,
    }
}

/// `pr` on a complex attribute means "has any non-empty sub-attribute", not "has a value".
fn leaves_for_presence<'v>(
    scope: Scope,
    obj: &'v Map<String, Value>,
    path: &AttrPath,
) -> (Vec<&'v Value>, Option<&'static AttrDef>) {
    if path.sub_attr.is_none() && path.filter.is_none() {
        let (v, def) = resolve_attr(scope, obj, path);
        return (v.into_iter().collect(), def);
    }
    leaves(scope, obj, path)
}

fn value_path(scope: Scope, obj: &Map<String, Value>, p: &AttrPath) -> bool {
    let (v, def) = resolve_attr(scope, obj, p);
    let Some(f) = &p.filter else {
        return v.is_some_and(non_empty);
    };
    let check = |e: &Value| e.as_object().is_some_and(|m| eval(f, Scope::Sub(def), m));
    match v {
        Some(Value::Array(a)) => a.iter().any(check),
        Some(v) => check(v),
        None => false,
    }
}

fn ci_eq(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

/// String operators honouring `caseExact`.
fn str_op(op: CompareOp, actual: &str, lit: &str, case_exact: bool) -> bool {
    if !case_exact && op == CompareOp::Eq {
        return ci_eq(actual, lit);
    }
    let (a, l) = if case_exact {
        (actual.to_string(), lit.to_string())
    } else {
        (actual.to_lowercase(), lit.to_lowercase())
    };
    match op {
        CompareOp::Eq => a == l,
        CompareOp::Ne => a != l,
        CompareOp::Co => a.contains(&l),
        CompareOp::Sw => a.starts_with(&l),
        CompareOp::Ew => a.ends_with(&l),
        CompareOp::Gt => a > l,
        CompareOp::Ge => a >= l,
        CompareOp::Lt => a < l,
        CompareOp::Le => a <= l,
    }
}

fn ord_op(op: CompareOp, o: Ordering) -> bool {
    match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Ne => o != Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

/// Parses an RFC 3339 / xsd:dateTime instant.
pub(crate) fn parse_instant(s: &str) -> Option<jiff::Timestamp> {
    s.parse::<jiff::Timestamp>().ok()
}

fn lit_bool(lit: &Literal) -> Option<bool> {
    match lit {
        Literal::Bool(b) => Some(*b),
        Literal::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Literal::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn lit_f64(lit: &Literal) -> Option<f64> {
    match lit {
        Literal::Number(n) => n.as_f64(),
        Literal::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Compares one attribute value with a literal. A type mismatch is simply "no match":
/// the schema rules that make a comparison invalid are reported by `Filter::validate`.
pub(crate) fn compare(op: CompareOp, actual: &Value, lit: &Literal, def: Option<&AttrDef>) -> bool {
    let ty = match def {
        Some(d) => d.ty,
        None => match actual {
            Value::String(_) => AttrType::String,
            Value::Bool(_) => AttrType::Boolean,
            Value::Number(_) => AttrType::Decimal,
            _ => return false,
        },
    };
    let case_exact = def.is_some_and(|d| d.case_exact);
    match ty {
        AttrType::Boolean => {
            let a = match actual {
                Value::Bool(b) => *b,
                Value::String(s) if s.eq_ignore_ascii_case("true") => true,
                Value::String(s) if s.eq_ignore_ascii_case("false") => false,
                _ => return false,
            };
            match (op, lit_bool(lit)) {
                (CompareOp::Eq, Some(l)) => a == l,
                (CompareOp::Ne, Some(l)) => a != l,
                _ => false,
            }
        }
        AttrType::Integer | AttrType::Decimal => {
            let (Some(a), Some(l)) = (actual.as_f64(), lit_f64(lit)) else {
                return false;
            };
            a.partial_cmp(&l).is_some_and(|o| ord_op(op, o))
        }
        AttrType::DateTime => {
            let (Some(a), Some(l)) = (actual.as_str(), lit.to_text()) else {
                return false;
            };
            match (op, parse_instant(a), parse_instant(&l)) {
                (CompareOp::Co | CompareOp::Sw | CompareOp::Ew, _, _) => {
                    str_op(op, a, &l, case_exact)
                }
                (_, Some(x), Some(y)) => ord_op(op, x.cmp(&y)),
                _ => str_op(op, a, &l, case_exact),
            }
        }
        AttrType::String | AttrType::Reference | AttrType::Binary => {
            let Some(a) = actual.as_str() else {
                return false;
            };
            let Some(l) = lit.to_text() else {
                return false;
            };
            str_op(op, a, &l, case_exact)
        }
        AttrType::Complex => false,
    }
}

/// Ordering used by `sortBy`: the schema's case rules, numbers numerically, instants in time.
pub(crate) fn sort_cmp(a: &Value, b: &Value, def: Option<&AttrDef>) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => {
            if def.is_some_and(|d| d.ty == AttrType::DateTime)
                && let (Some(p), Some(q)) = (parse_instant(x), parse_instant(y))
            {
                return p.cmp(&q);
            }
            if def.is_some_and(|d| d.case_exact) {
                x.cmp(y)
            } else {
                x.to_lowercase().cmp(&y.to_lowercase())
            }
        }
        _ => Ordering::Equal,
    }
}

/// The value `sortBy` uses for one resource: for multi-valued attributes the primary
/// element (RFC 7644 §3.4.2.3), else the first.
pub(crate) fn sort_key<'v>(
    kind: ResourceKind,
    obj: &'v Map<String, Value>,
    path: &AttrPath,
) -> (Option<&'v Value>, Option<&'static AttrDef>) {
    let (v, def) = resolve_attr(Scope::Root(kind), obj, path);
    let leaf = leaf_def(def, path);
    let Some(v) = v else { return (None, leaf) };
    let elem = match v {
        Value::Array(a) => a
            .iter()
            .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
            .or_else(|| a.first()),
        v => Some(v),
    };
    let Some(elem) = elem else {
        return (None, leaf);
    };
    let sub = path.sub_attr.as_deref().or(if elem.is_object() {
        Some("value")
    } else {
        None
    });
    match sub {
        Some(s) => (
            elem.as_object().and_then(|m| get_ci(m, s)).map(|(_, v)| v),
            leaf,
        ),
        None => (Some(elem), leaf),
    }
}

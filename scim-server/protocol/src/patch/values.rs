//! How values and elements compare (case, caseExact, `type`), and what a value filter names
//! or builds.

use super::*;

pub(super) fn is_empty_value(v: &Value) -> bool {
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
pub(super) fn loose_eq(a: &Value, b: &Value, def: Option<&AttrDef>) -> bool {
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
pub(super) fn elem_matches(elem: &Value, probe: &Value, def: &AttrDef) -> bool {
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
pub(super) fn element_from_filter(f: &Filter, def: &AttrDef) -> Option<Map<String, Value>> {
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
pub(super) fn filter_member_values(f: &Filter) -> Vec<String> {
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

pub(super) fn same_element(a: &Value, b: &Value, def: &AttrDef, is_members: bool) -> bool {
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

//! Operations on a single-valued attribute, simple or complex.

use super::*;

pub(super) fn apply_simple(
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

pub(super) fn apply_single_complex(
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

//! Operations on a multi-valued attribute (with or without a value filter or sub-attribute),
//! and the membership delta they report for a group's `members`.

use super::*;

/// After an element with `primary: true` is written, every other element loses it
/// (RFC 7643 §2.4: at most one primary).
pub(super) fn fix_primary(arr: &mut [Value], keep: Option<usize>) {
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

pub(super) fn apply_multi(
    container: &mut Map<String, Value>,
    def: &'static AttrDef,
    op: PatchOpKind,
    path: &AttrPath,
    value: Option<Value>,
    members: Option<&mut MembershipDelta>,
) -> Result<()> {
    let mut arr: Vec<Value> = match container.remove(def.name) {
        Some(Value::Array(a)) => a,
        Some(Value::Null) | None => Vec::new(),
        Some(v) => vec![v],
    };
    let res = match (&path.filter, &path.sub_attr) {
        (None, None) => match op {
            PatchOpKind::Add | PatchOpKind::Replace => {
                add_values(&mut arr, def, op, value, members)
            }
            PatchOpKind::Remove => remove_values(&mut arr, def, value, members),
        },
        (None, Some(sub)) => write_sub_attr(&mut arr, def, op, sub, value),
        (Some(f), sub) => {
            let mask: Vec<bool> = arr
                .iter()
                .map(|e| {
                    e.as_object()
                        .is_some_and(|m| eval(f, Scope::Sub(Some(def)), m))
                })
                .collect();
            match op {
                PatchOpKind::Remove => {
                    remove_matching(&mut arr, def, f, sub.as_deref(), &mask, members)
                }
                PatchOpKind::Add | PatchOpKind::Replace => {
                    let hits: Vec<usize> = (0..arr.len()).filter(|&i| mask[i]).collect();
                    write_matching(&mut arr, def, path, f, sub.as_deref(), hits, value, members)
                }
            }
        }
    };
    // Put back even after an error, as the operation found it or partly written; the caller
    // discards the whole work copy then (a PATCH is all-or-nothing).
    if !arr.is_empty() {
        container.insert(def.name.to_string(), Value::Array(arr));
    }
    res
}

/// `add` or `replace` without a filter: the values join (or replace) the list; a value already
/// there is updated in place.
fn add_values(
    arr: &mut Vec<Value>,
    def: &'static AttrDef,
    op: PatchOpKind,
    value: Option<Value>,
    mut members: Option<&mut MembershipDelta>,
) -> Result<()> {
    let is_members = members.is_some();
    let sent = match &value {
        Some(v) if is_members => sent_member_displays(v),
        _ => HashMap::new(),
    };
    let new = normalize_attr(def, value.unwrap_or(Value::Null), Mode::Input, &|| {
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
                if let (Some(cur), Value::Object(nm)) = (arr[i].as_object_mut(), item) {
                    for (k, v) in nm {
                        cur.insert(k, v);
                    }
                }
                fix_primary(arr, Some(i));
            }
            None => {
                arr.push(item);
                let last = arr.len() - 1;
                fix_primary(arr, Some(last));
            }
        }
    }
    Ok(())
}

/// `remove` without a filter: every value, or (Entra's legacy dialect) exactly the values sent.
fn remove_values(
    arr: &mut Vec<Value>,
    def: &'static AttrDef,
    value: Option<Value>,
    mut members: Option<&mut MembershipDelta>,
) -> Result<()> {
    let is_members = members.is_some();
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
                let p = normalize_attr(def, Value::Array(vec![p]), Mode::Stored, &|| {
                    def.name.to_string()
                })?
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

/// A sub-attribute of every element (`emails.type`), removed or written.
fn write_sub_attr(
    arr: &mut Vec<Value>,
    def: &'static AttrDef,
    op: PatchOpKind,
    sub: &str,
    value: Option<Value>,
) -> Result<()> {
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
            let nv = normalize_attr(sd, value.unwrap_or(Value::Null), Mode::Input, &|| {
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

/// `remove` with a value filter: the matching elements (`mask`), or their sub-attribute `sub`.
fn remove_matching(
    arr: &mut Vec<Value>,
    def: &'static AttrDef,
    f: &Filter,
    sub: Option<&str>,
    mask: &[bool],
    mut members: Option<&mut MembershipDelta>,
) -> Result<()> {
    let hits: Vec<usize> = (0..arr.len()).filter(|&i| mask[i]).collect();
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
            let name = def.sub(s).map(|d| d.name).unwrap_or(s);
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

/// `add` or `replace` with a value filter: the matching elements (`hits`), or their
/// sub-attribute `sub`, are written; a filter that matches nothing builds the element (Entra).
#[allow(clippy::too_many_arguments)]
fn write_matching(
    arr: &mut Vec<Value>,
    def: &'static AttrDef,
    path: &AttrPath,
    f: &Filter,
    sub: Option<&str>,
    hits: Vec<usize>,
    value: Option<Value>,
    mut members: Option<&mut MembershipDelta>,
) -> Result<()> {
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
                Value::Array(mut a) if a.len() == 1 => a.pop().unwrap_or(Value::Null),
                v => v,
            };
            match normalize_attr(def, Value::Array(vec![raw]), Mode::Input, &|| {
                def.name.to_string()
            })? {
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
        fix_primary(arr, Some(last));
    }
    Ok(())
}

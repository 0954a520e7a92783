//! Applying one operation to the resource: by path, path-less (Entra's dotted and URN keys)
//! or by extension URN, and the unknown-attribute rules.

use super::*;

pub(super) struct Ctx {
    pub(super) kind: ResourceKind,
    pub(super) work: Map<String, Value>,
    pub(super) delta: MembershipDelta,
    pub(super) password: Option<String>,
    /// Top-level keys the operations wrote to. Only these are re-validated at the end: the
    /// rest is unchanged from a resource that was already valid, and re-normalizing the whole
    /// resource was most of the cost of a PATCH.
    pub(super) touched: BTreeSet<String>,
}

impl Ctx {
    pub(super) fn apply_op(&mut self, op: &PatchOp) -> Result<()> {
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
    pub(super) fn apply_pathless(
        &mut self,
        op: PatchOpKind,
        value: Value,
        depth: u8,
    ) -> Result<()> {
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
    pub(super) fn apply_keyed(&mut self, op: PatchOpKind, path: &AttrPath, v: Value) -> Result<()> {
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

    pub(super) fn apply_path(
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
    pub(super) fn apply_unknown(
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

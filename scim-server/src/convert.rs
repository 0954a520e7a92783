//! Mapping between the protocol engine's normalized [`Resource`] and the `.status` of a
//! ScimUser / ScimGroup object (typed by `kube-scim-crds`).

use std::sync::OnceLock;

use scim_protocol::{Resource, ResourceKind, ScimError};
use serde_json::{Map, Value};

/// Enterprise User extension URN; stored under `status.enterprise`.
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The `.status` JSON to write for a resource: [`canonical_status`], refused when a value is
/// over the CRD's limits.
pub fn status_json(res: &Resource, created: &str, last_modified: &str) -> Result<Value, ScimError> {
    let status = canonical_status(res, created, last_modified)?;
    within_limits(status_schema(res.kind()), &status, "")?;
    Ok(status)
}

/// The `.status` JSON for a resource, canonicalized through the CRD's Rust type, so what we
/// send is exactly what the apiserver keeps (it prunes unknown fields). Not checked against the
/// CRD's limits: what is stored already passed the apiserver's.
pub fn canonical_status(
    res: &Resource,
    created: &str,
    last_modified: &str,
) -> Result<Value, ScimError> {
    let mut out = Map::new();
    let mut ext = Map::new();
    for (k, v) in res.attributes() {
        if v.is_null() {
            continue;
        }
        if k.eq_ignore_ascii_case(ENTERPRISE_URN) {
            out.insert("enterprise".into(), v.clone());
        } else if k.starts_with("urn:") {
            ext.insert(k.clone(), v.clone());
        } else if matches!(
            k.as_str(),
            "meta" | "groups" | "members" | "schemas" | "password"
        ) {
            continue;
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    if !ext.is_empty() {
        out.insert("extensions".into(), Value::Object(ext));
    }
    let mut meta = Map::new();
    meta.insert("resourceType".into(), res.kind().name().into());
    meta.insert("created".into(), created.into());
    meta.insert("lastModified".into(), last_modified.into());
    out.insert("meta".into(), Value::Object(meta));
    let v = Value::Object(out);
    let canon = match res.kind() {
        ResourceKind::User => serde_json::from_value::<kube_scim_crds::ScimUserStatus>(v)
            .and_then(serde_json::to_value),
        ResourceKind::Group => serde_json::from_value::<kube_scim_crds::ScimGroupStatus>(v)
            .and_then(serde_json::to_value),
    };
    canon.map_err(|e| ScimError::InvalidValue(format!("the resource cannot be stored: {e}")))
}

/// The `.status` schema of the kind's CRD, as the apiserver validates it.
fn status_schema(kind: ResourceKind) -> &'static Value {
    fn of(kind: &str) -> Value {
        kube_scim_crds::crds()
            .into_iter()
            .find(|crd| crd.spec.names.kind == kind)
            .and_then(|crd| serde_json::to_value(crd).ok())
            .map(|crd| {
                crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
                    .clone()
            })
            .unwrap_or_default()
    }
    static USER: OnceLock<Value> = OnceLock::new();
    static GROUP: OnceLock<Value> = OnceLock::new();
    match kind {
        ResourceKind::User => USER.get_or_init(|| of("ScimUser")),
        ResourceKind::Group => GROUP.get_or_init(|| of("ScimGroup")),
    }
}

/// The CRD's `maxLength` and `maxItems`, checked before the apiserver is asked: it would refuse
/// the write too, but only after decoding all of it (a megabyte per request from a client that
/// sends one), and its answer cannot say which attribute is too long.
fn within_limits(schema: &Value, value: &Value, path: &str) -> Result<(), ScimError> {
    let limit = |key: &str| schema.get(key).and_then(Value::as_u64);
    match value {
        Value::String(text) => {
            // Kubernetes counts characters (code points), not bytes.
            if let Some(max) = limit("maxLength")
                && text.chars().count() as u64 > max
            {
                return Err(ScimError::InvalidValue(format!(
                    "{path} is longer than the {max} characters the cluster stores"
                )));
            }
        }
        Value::Array(items) => {
            if let Some(max) = limit("maxItems")
                && items.len() as u64 > max
            {
                return Err(ScimError::InvalidValue(format!(
                    "{path} has more than the {max} values the cluster stores"
                )));
            }
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    within_limits(item, v, &format!("{path}[{i}]"))?;
                }
            }
        }
        Value::Object(fields) => {
            for (name, v) in fields {
                let field = schema
                    .get("properties")
                    .and_then(|p| p.get(name))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(field) = field {
                    let path = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    within_limits(field, v, &path)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Stored `.status` back to a resource plus `(created, lastModified)`.
pub fn resource_from_status(
    kind: ResourceKind,
    status: &Value,
) -> Result<(Resource, String, String), ScimError> {
    let Some(obj) = status.as_object() else {
        return Err(ScimError::Internal("status is not an object".into()));
    };
    let mut m = Map::new();
    let mut created = String::new();
    let mut last_modified = String::new();
    for (k, v) in obj {
        match k.as_str() {
            "enterprise" => {
                m.insert(ENTERPRISE_URN.into(), v.clone());
            }
            "extensions" => {
                if let Some(e) = v.as_object() {
                    for (u, ev) in e {
                        m.insert(u.clone(), ev.clone());
                    }
                }
            }
            "meta" => {
                let s = |n: &str| v.get(n).and_then(Value::as_str).unwrap_or("").to_string();
                created = s("created");
                last_modified = s("lastModified");
            }
            _ => {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    let r = Resource::from_stored_value(kind, Value::Object(m))?;
    Ok((r, created, last_modified))
}

/// RFC 7386 merge patch turning `old` into `new` (objects recursively; other values replaced).
pub fn merge_diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = Map::new();
            for (k, ov) in o {
                match n.get(k) {
                    None => {
                        out.insert(k.clone(), Value::Null);
                    }
                    Some(nv) => {
                        if let Some(d) = merge_diff(ov, nv) {
                            out.insert(k.clone(), d);
                        }
                    }
                }
            }
            for (k, nv) in n {
                if !o.contains_key(k) {
                    out.insert(k.clone(), nv.clone());
                }
            }
            if out.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            }
        }
        (o, n) if o == n => None,
        (_, n) => Some(n.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_round_trips_through_status() {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "a@b.c", "active": false,
            "name": {"givenName": "A"},
            "emails": [{"value": "a@b.c", "type": "work", "primary": true}],
            ENTERPRISE_URN: {"department": "X", "manager": {"value": "m1"}},
            "urn:ietf:params:scim:schemas:extension:Contoso:2.0:User": {"badge": "7"}
        });
        let mut r = scim_protocol::validate_create(ResourceKind::User, &body).unwrap();
        r.set_id("id1");
        let st = status_json(&r, "c", "l").unwrap();
        assert_eq!(st["enterprise"]["department"], "X");
        assert_eq!(
            st["extensions"]["urn:ietf:params:scim:schemas:extension:Contoso:2.0:User"]["badge"],
            "7"
        );
        let (back, c, l) = resource_from_status(ResourceKind::User, &st).unwrap();
        assert_eq!((c.as_str(), l.as_str()), ("c", "l"));
        assert_eq!(back.attributes(), r.attributes());
    }

    #[test]
    fn values_longer_than_the_crd_allows_are_refused_naming_the_attribute() {
        let user = |body: Value| {
            let mut res = scim_protocol::validate_create(ResourceKind::User, &body).unwrap();
            res.set_id("id1");
            status_json(&res, "c", "m")
        };
        let at_limit = "é".repeat(1024);
        assert!(user(json!({"userName": "a@b.c", "displayName": at_limit})).is_ok());
        let e = user(json!({"userName": "a@b.c", "displayName": "x".repeat(1025)})).unwrap_err();
        assert!(
            matches!(&e, ScimError::InvalidValue(m)
            if m == "displayName is longer than the 1024 characters the cluster stores"),
            "{e:?}"
        );
        let e = user(json!({"userName": "a@b.c",
            "emails": [{"value": "x".repeat(100_000), "type": "work"}]}))
        .unwrap_err();
        assert!(
            matches!(&e, ScimError::InvalidValue(m) if m.starts_with("emails[0].value is longer")),
            "{e:?}"
        );
        let many: Vec<Value> = (0..65)
            .map(|i| json!({"value": format!("{i}@b.c")}))
            .collect();
        let e = user(json!({"userName": "a@b.c", "emails": many})).unwrap_err();
        assert!(
            matches!(&e, ScimError::InvalidValue(m)
            if m == "emails has more than the 64 values the cluster stores"),
            "{e:?}"
        );
    }

    #[test]
    fn merge_diff_nulls_removed_keys() {
        let d = merge_diff(
            &json!({"a": 1, "n": {"x": 1, "y": 2}, "l": [1]}),
            &json!({"n": {"x": 1}, "l": [2]}),
        )
        .unwrap();
        assert_eq!(d, json!({"a": null, "n": {"y": null}, "l": [2]}));
        assert!(merge_diff(&json!({"a": 1}), &json!({"a": 1})).is_none());
    }
}

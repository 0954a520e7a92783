//! Mapping between the protocol engine's normalized [`Resource`] and the `.status` of a
//! ScimUser / ScimGroup object (typed by `kube-scim-crds`).

use scim_protocol::{Resource, ResourceKind, ScimError};
use serde_json::{Map, Value};

/// Enterprise User extension URN; stored under `status.enterprise`.
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The `.status` JSON for a resource, canonicalized through the CRD's Rust type, so what we
/// send is exactly what the apiserver keeps (it prunes unknown fields).
pub fn status_json(res: &Resource, created: &str, last_modified: &str) -> Result<Value, ScimError> {
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
    let r = Resource::from_stored(kind, &Value::Object(m))?;
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

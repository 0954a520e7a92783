//! Discovery documents (RFC 7644 §4), all generated from the schema table.

use serde_json::{Map, Value, json};

use crate::query::list_response;
use crate::schema::{
    AttrDef, COMMON_ATTRIBUTES, ENTERPRISE_USER, GROUP, RESOURCE_TYPE_SCHEMA, ResourceKind,
    SCHEMA_SCHEMA, SERVICE_PROVIDER_CONFIG_SCHEMA, Schema, USER,
};

fn base(base_url: &str) -> &str {
    base_url.trim_end_matches('/')
}

/// `/ServiceProviderConfig`: states exactly what this engine implements.
pub fn service_provider_config(base_url: &str, max_results: usize) -> Value {
    json!({
        "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
        "documentationUri": "https://github.com/kube-scim/kube-scim",
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": max_results },
        "changePassword": { "supported": false },
        "sort": { "supported": true },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a long-lived bearer token (the Entra 'Secret Token').",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", base(base_url))
        }
    })
}

/// One `ResourceType` document.
pub fn resource_type(kind: ResourceKind, base_url: &str) -> Value {
    let ext: Vec<Value> = kind
        .extensions()
        .iter()
        .map(|s| json!({ "schema": s.id, "required": false }))
        .collect();
    let mut v = json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": kind.name(),
        "name": kind.name(),
        "endpoint": kind.endpoint(),
        "description": kind.schema().description,
        "schema": kind.schema().id,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{}/ResourceTypes/{}", base(base_url), kind.name())
        }
    });
    if !ext.is_empty() {
        v["schemaExtensions"] = Value::Array(ext);
    }
    v
}

/// `/ResourceTypes` as a ListResponse.
pub fn resource_types(base_url: &str) -> Value {
    let all = vec![
        resource_type(ResourceKind::User, base_url),
        resource_type(ResourceKind::Group, base_url),
    ];
    list_response(all, 2, 1)
}

fn attr_json(d: &AttrDef) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), d.name.into());
    m.insert("type".into(), d.ty.as_str().into());
    m.insert("multiValued".into(), d.multi_valued.into());
    m.insert("description".into(), d.description.into());
    m.insert("required".into(), d.required.into());
    m.insert("caseExact".into(), d.case_exact.into());
    m.insert("mutability".into(), d.mutability.as_str().into());
    m.insert("returned".into(), d.returned.as_str().into());
    m.insert("uniqueness".into(), d.uniqueness.as_str().into());
    if !d.canonical_values.is_empty() {
        m.insert("canonicalValues".into(), json!(d.canonical_values));
    }
    if !d.reference_types.is_empty() {
        m.insert("referenceTypes".into(), json!(d.reference_types));
    }
    if !d.sub_attributes.is_empty() {
        m.insert(
            "subAttributes".into(),
            Value::Array(d.sub_attributes.iter().map(attr_json).collect()),
        );
    }
    Value::Object(m)
}

/// One `Schema` document with complete attribute definitions. The core User and Group schemas
/// also list the common attribute `externalId`, as RFC 7643 §3.1 allows: Entra maps an
/// attribute to it by default, and Microsoft's gallery validation (`Schema_Discoverability_Test`)
/// fails an app whose `/Schemas` does not show every mapped target attribute.
pub fn schema(s: &Schema, base_url: &str) -> Value {
    let core = s.id == USER.id || s.id == GROUP.id;
    let common = COMMON_ATTRIBUTES
        .iter()
        .filter(|d| core && d.name == "externalId");
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "attributes": s.attributes.iter().chain(common).map(attr_json).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "Schema",
            "location": format!("{}/Schemas/{}", base(base_url), s.id)
        }
    })
}

/// Every schema this server serves.
pub fn all_schemas() -> [&'static Schema; 3] {
    [&USER, &ENTERPRISE_USER, &GROUP]
}

/// `/Schemas` as a ListResponse.
pub fn schemas(base_url: &str) -> Value {
    let all: Vec<Value> = all_schemas().iter().map(|s| schema(s, base_url)).collect();
    let n = all.len();
    list_response(all, n, 1)
}

/// `/Schemas/{id}` (case-insensitive id); `None` for an unknown schema.
pub fn schema_by_id(id: &str, base_url: &str) -> Option<Value> {
    all_schemas()
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(id))
        .map(|s| schema(s, base_url))
}

/// `/ResourceTypes/{name}` (case-insensitive); `None` if unknown.
pub fn resource_type_by_name(name: &str, base_url: &str) -> Option<Value> {
    [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .find(|k| k.name().eq_ignore_ascii_case(name))
        .map(|k| resource_type(k, base_url))
}

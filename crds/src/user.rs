//! [`ScimUser`]: a user provisioned through SCIM, with its SCIM attributes under `.status`.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{DirectoryRef, ResourceMeta, default_true, preserved_object_map};

/// A user provisioned by an identity provider through SCIM. Written only by the SCIM server;
/// watch these objects (select by the `kubescim.io/directory` and `kubescim.io/active` labels) to
/// provision, update or deprovision accounts in your application.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubescim.io",
    version = "v1alpha1",
    kind = "ScimUser",
    doc = "A user provisioned through SCIM. Written only by the SCIM server; its SCIM attributes are under status.",
    namespaced,
    status = "ScimUserStatus",
    shortname = "scimuser",
    shortname = "scu",
    category = "scim",
    printcolumn = r#"{"name":"UserName","type":"string","jsonPath":".status.userName"}"#,
    printcolumn = r#"{"name":"Active","type":"boolean","jsonPath":".status.active"}"#,
    printcolumn = r#"{"name":"Directory","type":"string","jsonPath":".spec.directoryRef.name"}"#,
    printcolumn = r#"{"name":"Display Name","type":"string","priority":1,"jsonPath":".status.displayName"}"#,
    printcolumn = r#"{"name":"Email","type":"string","priority":1,"jsonPath":".status.emails[0].value"}"#,
    printcolumn = r#"{"name":"External ID","type":"string","priority":1,"jsonPath":".status.externalId"}"#,
    printcolumn = r#"{"name":"Held","type":"string","priority":1,"jsonPath":".metadata.labels.kubescim\\.io/held"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ScimUserSpec {
    /// The ScimDirectory this user was provisioned through.
    pub directory_ref: DirectoryRef,
}

/// The SCIM User resource (RFC 7643 §4.1 and the enterprise extension §4.3), as last written by
/// the identity provider. Attribute names follow SCIM.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimUserStatus {
    /// SCIM `id`, assigned by the server; equals the object's name.
    #[schemars(length(max = 64))]
    pub id: String,
    /// The identity provider's own identifier (Entra: the user's objectId when mapped so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub external_id: Option<String>,
    /// Unique (case-insensitively, per directory) sign-in name, e.g. the Entra UPN.
    #[schemars(length(max = 1024))]
    pub user_name: String,
    /// False once the identity provider deprovisioned (disabled or unassigned) the user.
    #[serde(default = "default_true")]
    pub active: bool,
    /// The user's components of name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// Name suitable for display to end users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub display_name: Option<String>,
    /// Casual name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub nick_name: Option<String>,
    /// URL of the user's online profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub profile_url: Option<String>,
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub title: Option<String>,
    /// Relationship to the organisation, e.g. `Employee`, `Contractor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub user_type: Option<String>,
    /// Preferred written or spoken language, e.g. `en-US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub preferred_language: Option<String>,
    /// Default location for localisation, e.g. `en-US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub locale: Option<String>,
    /// Time zone in IANA format, e.g. `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub timezone: Option<String>,
    /// Email addresses; Entra sends the work address as `type: work`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub emails: Vec<MultiValuedAttribute>,
    /// Phone numbers (`work`, `mobile`, `fax`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub phone_numbers: Vec<MultiValuedAttribute>,
    /// Instant messaging addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub ims: Vec<MultiValuedAttribute>,
    /// URLs of photos of the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub photos: Vec<MultiValuedAttribute>,
    /// Physical mailing addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub addresses: Vec<Address>,
    /// Entitlements granted to the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub entitlements: Vec<MultiValuedAttribute>,
    /// Roles (Entra app roles; a value may itself be a JSON document, kept verbatim).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub roles: Vec<MultiValuedAttribute>,
    /// DER-encoded (base64) X.509 certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub x509_certificates: Vec<MultiValuedAttribute>,
    /// Enterprise User extension (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise: Option<EnterpriseUser>,
    /// Custom extension attributes, keyed by extension schema URN
    /// (e.g. `urn:ietf:params:scim:schemas:extension:Contoso:2.0:User`), kept as sent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "preserved_object_map")]
    pub extensions: BTreeMap<String, serde_json::Value>,
    /// SCIM resource metadata.
    #[serde(default)]
    pub meta: ResourceMeta,
}

/// Components of a user's name (RFC 7643 §4.1.1).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Name {
    /// Full name, formatted for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub formatted: Option<String>,
    /// Family (last) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub family_name: Option<String>,
    /// Given (first) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub given_name: Option<String>,
    /// Middle name(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub middle_name: Option<String>,
    /// Honorific prefix, e.g. `Ms.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub honorific_prefix: Option<String>,
    /// Honorific suffix, e.g. `III`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub honorific_suffix: Option<String>,
}

/// One value of a multi-valued attribute such as emails or phoneNumbers.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultiValuedAttribute {
    /// The value, e.g. an email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub value: Option<String>,
    /// Human-readable label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub display: Option<String>,
    /// Kind of value, e.g. `work`, `home`, `mobile`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub kind: Option<String>,
    /// Whether this is the preferred value of the attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

/// A physical mailing address (RFC 7643 §4.1.2).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// Full address, formatted for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub formatted: Option<String>,
    /// Street address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub street_address: Option<String>,
    /// City or locality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub locality: Option<String>,
    /// State or region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub region: Option<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub postal_code: Option<String>,
    /// Country (ISO 3166-1 alpha-2 per RFC 7643).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub country: Option<String>,
    /// Kind of address, e.g. `work`, `home`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub kind: Option<String>,
    /// Whether this is the preferred address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

/// Enterprise User extension attributes (RFC 7643 §4.3).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnterpriseUser {
    /// Organisation-assigned employee number (Entra: employeeId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub employee_number: Option<String>,
    /// Cost center.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub cost_center: Option<String>,
    /// Organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub organization: Option<String>,
    /// Division.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub division: Option<String>,
    /// Department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub department: Option<String>,
    /// The user's manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<Manager>,
}

/// Reference to a user's manager.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Manager {
    /// SCIM `id` of the manager's ScimUser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub value: Option<String>,
    /// URI of the manager's SCIM resource.
    #[serde(default, rename = "$ref", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub reference: Option<String>,
    /// Display name of the manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub display_name: Option<String>,
}

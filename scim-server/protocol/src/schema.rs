//! The one schema table (RFC 7643 §4, §7, §8.7.1) that drives validation, filtering, PATCH,
//! projection and the discovery documents, so they can never disagree with each other.
//!
//! Over 600 lines on purpose: most of it is the schema table itself, kept in one place so
//! nothing can read a different one.

/// Core User schema URN.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Core Group schema URN.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Enterprise User extension URN.
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// ListResponse message URN.
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// PatchOp message URN.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// SearchRequest message URN.
pub const SEARCH_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// Error message URN.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// ServiceProviderConfig schema URN.
pub const SERVICE_PROVIDER_CONFIG_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// ResourceType schema URN.
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// Schema schema URN.
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// SCIM attribute data types (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// `string`
    String,
    /// `boolean`
    Boolean,
    /// `decimal`
    Decimal,
    /// `integer`
    Integer,
    /// `dateTime` (RFC 3339 / xsd:dateTime)
    DateTime,
    /// `binary` (base64)
    Binary,
    /// `reference`
    Reference,
    /// `complex`
    Complex,
}

impl AttrType {
    /// Name used in schema discovery documents.
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

/// Attribute mutability (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// Set by the server only; ignored on input.
    ReadOnly,
    /// Freely writable.
    ReadWrite,
    /// Written once, then fixed.
    Immutable,
    /// Accepted on input, never returned (password).
    WriteOnly,
}

impl Mutability {
    /// Name used in schema discovery documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

/// When an attribute is returned (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// Always, even when `attributes` does not name it.
    Always,
    /// Never.
    Never,
    /// Unless excluded.
    Default,
    /// Only when named in `attributes`.
    Request,
}

impl Returned {
    /// Name used in schema discovery documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

/// Uniqueness (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    /// No uniqueness.
    None,
    /// Unique within the service provider (here: a directory).
    Server,
    /// Globally unique.
    Global,
}

impl Uniqueness {
    /// Name used in schema discovery documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute definition (RFC 7643 §7).
#[derive(Debug, Clone, Copy)]
pub struct AttrDef {
    /// Canonical (camelCase) name.
    pub name: &'static str,
    /// Data type.
    pub ty: AttrType,
    /// Whether the attribute is an array.
    pub multi_valued: bool,
    /// Human description for discovery.
    pub description: &'static str,
    /// Required on create/replace.
    pub required: bool,
    /// Whether string comparisons are case-sensitive.
    pub case_exact: bool,
    /// Mutability.
    pub mutability: Mutability,
    /// When returned.
    pub returned: Returned,
    /// Uniqueness.
    pub uniqueness: Uniqueness,
    /// Suggested values (informational except where `strict_canonical`).
    pub canonical_values: &'static [&'static str],
    /// Only the canonical values are accepted (case-insensitively).
    pub strict_canonical: bool,
    /// Reference types for `reference` attributes.
    pub reference_types: &'static [&'static str],
    /// Sub-attributes of a complex attribute.
    pub sub_attributes: &'static [AttrDef],
}

impl AttrDef {
    const fn new(name: &'static str, ty: AttrType, description: &'static str) -> AttrDef {
        AttrDef {
            name,
            ty,
            multi_valued: false,
            description,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: &[],
            strict_canonical: false,
            reference_types: &[],
            sub_attributes: &[],
        }
    }
    const fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    const fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    const fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    const fn unique(mut self, u: Uniqueness) -> Self {
        self.uniqueness = u;
        self
    }
    const fn canonical(mut self, v: &'static [&'static str]) -> Self {
        self.canonical_values = v;
        self
    }
    const fn strict(mut self) -> Self {
        self.strict_canonical = true;
        self
    }
    const fn refs(mut self, r: &'static [&'static str]) -> Self {
        self.reference_types = r;
        self
    }
    const fn subs(mut self, s: &'static [AttrDef]) -> Self {
        self.sub_attributes = s;
        self
    }

    /// Case-insensitive sub-attribute lookup.
    pub fn sub(&self, name: &str) -> Option<&'static AttrDef> {
        find_attr(self.sub_attributes, name)
    }

    /// Whether this is a read-only attribute the client cannot set.
    pub fn is_read_only(&self) -> bool {
        self.mutability == Mutability::ReadOnly
    }
}

/// Case-insensitive lookup in a slice of definitions.
pub fn find_attr(defs: &'static [AttrDef], name: &str) -> Option<&'static AttrDef> {
    defs.iter().find(|d| d.name.eq_ignore_ascii_case(name))
}

use AttrType as T;

const fn s(name: &'static str, d: &'static str) -> AttrDef {
    AttrDef::new(name, T::String, d)
}
const fn b(name: &'static str, d: &'static str) -> AttrDef {
    AttrDef::new(name, T::Boolean, d)
}
const fn c(name: &'static str, d: &'static str) -> AttrDef {
    AttrDef::new(name, T::Complex, d)
}
const fn r(name: &'static str, d: &'static str) -> AttrDef {
    AttrDef::new(name, T::Reference, d)
}

/// The canonical sub-attributes of a "plural" attribute (RFC 7643 §2.4) with a given type set.
macro_rules! plural_subs {
    ($value:expr, $types:expr) => {
        &[
            $value,
            s(
                "display",
                "A human-readable name, primarily used for display purposes.",
            ),
            s("type", "A label indicating the attribute's function.").canonical($types),
            b(
                "primary",
                "A Boolean value indicating the 'primary' or preferred attribute value.",
            ),
        ]
    };
}

/// `id`, `externalId`, `meta` (RFC 7643 §3.1): part of every resource, not listed in schemas.
pub static COMMON_ATTRIBUTES: &[AttrDef] = &[
    s(
        "id",
        "Unique identifier for the resource, assigned by the service provider.",
    )
    .case_exact()
    .mutability(Mutability::ReadOnly)
    .returned(Returned::Always)
    .unique(Uniqueness::Server),
    s(
        "externalId",
        "Identifier of the resource as defined by the provisioning client.",
    )
    .case_exact(),
    c("meta", "Resource metadata.")
        .mutability(Mutability::ReadOnly)
        .subs(&[
            s("resourceType", "The name of the resource type.")
                .case_exact()
                .mutability(Mutability::ReadOnly),
            AttrDef::new("created", T::DateTime, "When the resource was added.")
                .mutability(Mutability::ReadOnly),
            AttrDef::new(
                "lastModified",
                T::DateTime,
                "When the resource was last changed.",
            )
            .mutability(Mutability::ReadOnly),
            r("location", "The URI of the resource.")
                .case_exact()
                .mutability(Mutability::ReadOnly)
                .refs(&["uri"]),
            s("version", "The version (weak ETag) of the resource.")
                .case_exact()
                .mutability(Mutability::ReadOnly),
        ]),
];

/// Core User attributes (RFC 7643 §4.1, §8.7.1).
pub static USER_ATTRIBUTES: &[AttrDef] = &[
    s(
        "userName",
        "Unique identifier for the User, typically used to sign in.",
    )
    .required()
    .unique(Uniqueness::Server),
    c("name", "The components of the user's real name.").subs(&[
        s("formatted", "The full name, formatted for display."),
        s("familyName", "The family name of the User."),
        s("givenName", "The given name of the User."),
        s("middleName", "The middle name(s) of the User."),
        s("honorificPrefix", "The honorific prefix(es) of the User."),
        s("honorificSuffix", "The honorific suffix(es) of the User."),
    ]),
    s(
        "displayName",
        "The name of the User, suitable for display to end-users.",
    ),
    s("nickName", "The casual way to address the user."),
    r(
        "profileUrl",
        "A fully qualified URL pointing to the User's online profile.",
    )
    .refs(&["external"]),
    s("title", "The user's title, such as \"Vice President\"."),
    s(
        "userType",
        "Relationship between the organization and the user.",
    ),
    s(
        "preferredLanguage",
        "The User's preferred written or spoken language (RFC 7231 format).",
    ),
    s(
        "locale",
        "The User's default location for localization (e.g. en-US).",
    ),
    s(
        "timezone",
        "The User's time zone in the 'Olson' format (e.g. America/Los_Angeles).",
    ),
    b("active", "The User's administrative status."),
    s(
        "password",
        "The User's cleartext password; write-only, never returned or stored.",
    )
    .case_exact()
    .mutability(Mutability::WriteOnly)
    .returned(Returned::Never),
    c("emails", "Email addresses for the user.")
        .multi()
        .subs(plural_subs!(
            s("value", "Email address for the User."),
            &["work", "home", "other"]
        )),
    c("phoneNumbers", "Phone numbers for the User.")
        .multi()
        .subs(plural_subs!(
            s("value", "Phone number of the User."),
            &["work", "home", "mobile", "fax", "pager", "other"]
        )),
    c("ims", "Instant messaging addresses for the User.")
        .multi()
        .subs(plural_subs!(
            s("value", "Instant messaging address for the User."),
            &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]
        )),
    c("photos", "URLs of images of the User.")
        .multi()
        .subs(plural_subs!(
            r("value", "URL of a photo of the User.")
                .case_exact()
                .refs(&["external"]),
            &["photo", "thumbnail"]
        )),
    c("addresses", "A physical mailing address for this User.")
        .multi()
        .subs(&[
            s(
                "formatted",
                "The full mailing address, formatted for display.",
            ),
            s("streetAddress", "The full street address component."),
            s("locality", "The city or locality component."),
            s("region", "The state or region component."),
            s("postalCode", "The zip code or postal code component."),
            s(
                "country",
                "The country name component (ISO 3166-1 alpha-2).",
            ),
            s("type", "A label indicating the attribute's function.")
                .canonical(&["work", "home", "other"]),
            b(
                "primary",
                "A Boolean value indicating the 'primary' or preferred address.",
            ),
        ]),
    c(
        "groups",
        "Groups the user belongs to; computed by the service provider.",
    )
    .multi()
    .mutability(Mutability::ReadOnly)
    .subs(&[
        s("value", "The identifier of the User's group.").mutability(Mutability::ReadOnly),
        r("$ref", "The URI of the corresponding Group resource.")
            .mutability(Mutability::ReadOnly)
            .refs(&["User", "Group"]),
        s("display", "A human-readable name of the group.").mutability(Mutability::ReadOnly),
        s("type", "How the membership was derived.")
            .mutability(Mutability::ReadOnly)
            .canonical(&["direct", "indirect"]),
    ]),
    c("entitlements", "A list of entitlements for the User.")
        .multi()
        .subs(plural_subs!(
            s("value", "The value of an entitlement."),
            &[]
        )),
    c("roles", "A list of roles for the User.")
        .multi()
        .subs(plural_subs!(s("value", "The value of a role."), &[])),
    c(
        "x509Certificates",
        "A list of certificates issued to the User.",
    )
    .multi()
    .subs(plural_subs!(
        AttrDef::new("value", T::Binary, "The value of an X.509 certificate.").case_exact(),
        &[]
    )),
];

/// Enterprise User extension attributes (RFC 7643 §4.3).
pub static ENTERPRISE_USER_ATTRIBUTES: &[AttrDef] = &[
    s(
        "employeeNumber",
        "Numeric or alphanumeric identifier assigned to a person.",
    ),
    s("costCenter", "Identifies the name of a cost center."),
    s("organization", "Identifies the name of an organization."),
    s("division", "Identifies the name of a division."),
    s("department", "Identifies the name of a department."),
    c("manager", "The User's manager.").subs(&[
        s(
            "value",
            "The id of the SCIM resource representing the User's manager.",
        ),
        r(
            "$ref",
            "The URI of the SCIM resource representing the User's manager.",
        )
        .refs(&["User"]),
        s("displayName", "The displayName of the User's manager.").mutability(Mutability::ReadOnly),
    ]),
];

/// Core Group attributes (RFC 7643 §4.2, §8.7.1).
pub static GROUP_ATTRIBUTES: &[AttrDef] = &[
    // Unique per directory: Entra matches groups by displayName, so two with one name would
    // make its lookups ambiguous (the server has always refused the second one).
    s("displayName", "A human-readable name for the Group.")
        .required()
        .unique(Uniqueness::Server),
    c("members", "A list of members of the Group.")
        .multi()
        .subs(&[
            s("value", "Identifier of the member of this Group.")
                .case_exact()
                .mutability(Mutability::Immutable),
            r("$ref", "The URI of the corresponding member resource.")
                .mutability(Mutability::Immutable)
                .refs(&["User", "Group"]),
            s("display", "A human-readable name of the member.").mutability(Mutability::ReadOnly),
            s("type", "The type of the member.")
                .mutability(Mutability::Immutable)
                .canonical(&["User", "Group"])
                .strict(),
        ]),
];

/// A schema: URN, name and attributes.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// Schema URN.
    pub id: &'static str,
    /// Short name.
    pub name: &'static str,
    /// Description for discovery.
    pub description: &'static str,
    /// Attributes.
    pub attributes: &'static [AttrDef],
}

/// Core User schema.
pub static USER: Schema = Schema {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: USER_ATTRIBUTES,
};
/// Enterprise User extension schema.
pub static ENTERPRISE_USER: Schema = Schema {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: ENTERPRISE_USER_ATTRIBUTES,
};
/// Core Group schema.
pub static GROUP: Schema = Schema {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: GROUP_ATTRIBUTES,
};

static USER_EXTENSIONS: &[&Schema] = &[&ENTERPRISE_USER];

/// The two resource types this engine serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `/Users`
    User,
    /// `/Groups`
    Group,
}

impl ResourceKind {
    /// Resource type name (`meta.resourceType`).
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }
    /// Endpoint path segment, e.g. `/Users`.
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "/Users",
            ResourceKind::Group => "/Groups",
        }
    }
    /// The core schema.
    pub fn schema(self) -> &'static Schema {
        match self {
            ResourceKind::User => &USER,
            ResourceKind::Group => &GROUP,
        }
    }
    /// Known extension schemas for this kind.
    pub fn extensions(self) -> &'static [&'static Schema] {
        match self {
            ResourceKind::User => USER_EXTENSIONS,
            ResourceKind::Group => &[],
        }
    }
    /// The core attribute whose value the server keeps unique within a directory
    /// (`uniqueness: server`): `userName` for users, `displayName` for groups.
    pub fn unique_attr(self) -> Option<&'static AttrDef> {
        self.schema()
            .attributes
            .iter()
            .find(|a| a.uniqueness == Uniqueness::Server)
    }
    /// Case-insensitive lookup of a core or common attribute.
    pub fn core_attr(self, name: &str) -> Option<&'static AttrDef> {
        find_attr(self.schema().attributes, name).or_else(|| find_attr(COMMON_ATTRIBUTES, name))
    }
    /// Known extension schema by (case-insensitive) URN.
    pub fn extension(self, urn: &str) -> Option<&'static Schema> {
        self.extensions()
            .iter()
            .copied()
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }
    /// Attribute definition for an attribute in `schema_urn` (None = core) named `name`.
    pub fn attr(self, schema_urn: Option<&str>, name: &str) -> Option<&'static AttrDef> {
        match schema_urn {
            None => self.core_attr(name),
            Some(u) if u.eq_ignore_ascii_case(self.schema().id) => self.core_attr(name),
            Some(u) => self
                .extension(u)
                .and_then(|s| find_attr(s.attributes, name)),
        }
    }
}

/// How a URN-looking key (attribute name or path) splits into schema URN and attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UrnKey<'a> {
    /// The key is a whole schema URN (canonical spelling for known ones).
    Schema(String),
    /// The key is `<schema URN>:<attribute path>`.
    Attr(String, &'a str),
}

/// The JSON object of a request message (`what` names it in the error): its `schemas` is not
/// required (some clients omit it) but, if present, must include the message's URN `urn`.
pub(crate) fn message_body<'b>(
    body: &'b serde_json::Value,
    what: &str,
    urn: &str,
) -> Result<&'b serde_json::Map<String, serde_json::Value>, crate::error::ScimError> {
    use crate::error::ScimError;
    let Some(obj) = body.as_object() else {
        return Err(ScimError::InvalidSyntax(format!(
            "the {what} body must be a JSON object"
        )));
    };
    if let Some((_, s)) = crate::filter::eval::get_ci(obj, "schemas") {
        let ok = s.as_array().is_some_and(|a| {
            a.iter()
                .any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(urn)))
        });
        if !ok {
            return Err(ScimError::InvalidSyntax(format!(
                "'schemas' must contain \"{urn}\""
            )));
        }
    }
    Ok(obj)
}

/// Whether `u` is a well-formed schema URN we are willing to keep: `urn:` plus at least three
/// non-empty segments of ASCII letters, digits, `.`, `_` or `-`. Anything else on input is a
/// malformed URN and is ignored, which also keeps what we store unambiguous to read back.
pub(crate) fn valid_urn(u: &str) -> bool {
    let Some(head) = u.get(..4) else { return false };
    if !head.eq_ignore_ascii_case("urn:") || u.len() > 512 {
        return false;
    }
    let segs: Vec<&str> = u[4..].split(':').collect();
    segs.len() >= 3
        && segs.iter().all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// Splits `urn:...` keys from client input. Known schemas are matched by prefix (their URNs
/// contain dots, as in `2.0`, so naive splitting on '.' would be wrong); unknown ones (Entra's
/// `urn:ietf:params:scim:schemas:extension:<Name>:2.0:User:<attr>`) split at the last ':'
/// unless the last segment names a resource type, which makes the key a schema URN.
/// Malformed URNs give `None`... unless they do not start with `urn:` at all, which is also
/// `None`: the caller tells the two apart with [`is_urn_like`].
pub(crate) fn split_urn_key(kind: ResourceKind, key: &str) -> Option<UrnKey<'_>> {
    if !is_urn_like(key) {
        return None;
    }
    let mut known: Vec<&'static str> = vec![kind.schema().id];
    known.extend(kind.extensions().iter().map(|s| s.id));
    for urn in known {
        if key.len() == urn.len() && key.eq_ignore_ascii_case(urn) {
            return Some(UrnKey::Schema(urn.to_string()));
        }
        if key.len() > urn.len() + 1
            && key.is_char_boundary(urn.len())
            && key[..urn.len()].eq_ignore_ascii_case(urn)
            && key.as_bytes()[urn.len()] == b':'
        {
            return Some(UrnKey::Attr(urn.to_string(), &key[urn.len() + 1..]));
        }
    }
    let last = key.rfind(':')?;
    let tail = &key[last + 1..];
    if (tail.eq_ignore_ascii_case("User") || tail.eq_ignore_ascii_case("Group")) && valid_urn(key) {
        return Some(UrnKey::Schema(key.to_string()));
    }
    let urn = &key[..last];
    let attr_ok = {
        let mut parts = tail.splitn(2, '.');
        parts.next().is_some_and(valid_attr_name) && parts.next().is_none_or(valid_attr_name)
    };
    if valid_urn(urn) && attr_ok {
        return Some(UrnKey::Attr(urn.to_string(), tail));
    }
    None
}

/// Whether a key starts with `urn:` (any case), i.e. is meant as a URN, valid or not.
pub(crate) fn is_urn_like(key: &str) -> bool {
    key.get(..4).is_some_and(|h| h.eq_ignore_ascii_case("urn:"))
}

/// Whether `name` is a valid SCIM attribute name (RFC 7643 §2.1 ATTRNAME, plus `$ref`).
pub(crate) fn valid_attr_name(name: &str) -> bool {
    if name == "$ref" {
        return true;
    }
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

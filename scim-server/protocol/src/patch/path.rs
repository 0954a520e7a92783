//! Resolving a PATCH path: its target, sub-attributes, and Entra's unqualified extension
//! attribute names.

use super::*;

/// Parses a PATCH path string into a target.
pub fn parse_target(path: &str) -> Result<PatchTarget> {
    let path = path.trim();
    if path.is_empty() {
        return Ok(PatchTarget::Resource);
    }
    let p = parse_path(path)?;
    // `urn:...:2.0:User` parses as schema `urn:...:2.0` + attribute `User`: it names a schema.
    if p.schema.is_some()
        && p.filter.is_none()
        && p.sub_attr.is_none()
        && (p.attr.eq_ignore_ascii_case("User") || p.attr.eq_ignore_ascii_case("Group"))
    {
        return Ok(PatchTarget::Extension(path.to_string()));
    }
    Ok(PatchTarget::Path(p))
}

/// The sub-attribute `name` of `def`, or the `invalidPath` error that names both.
pub(super) fn sub_attr(def: &AttrDef, name: &str) -> Result<&'static AttrDef> {
    def.sub(name).ok_or_else(|| {
        ScimError::InvalidPath(format!("'{name}' is not a sub-attribute of '{}'", def.name))
    })
}

/// A client's value for the sub-attribute `def.name`, normalized as input.
pub(super) fn normalized_sub(
    def: &AttrDef,
    name: &str,
    raw: Value,
) -> Result<(&'static AttrDef, Option<Value>)> {
    let sd = sub_attr(def, name)?;
    let value = normalize_attr(sd, raw, Mode::Input, &|| {
        format!("{}.{}", def.name, sd.name)
    })?;
    Ok((sd, value))
}

/// Entra's legacy dialect names enterprise attributes without their URN (`"path": "manager"`):
/// an unqualified name that is no core attribute resolves to the one extension of the
/// resource type that defines it. Core attributes always win, so no valid path changes meaning.
pub(super) fn qualify(kind: ResourceKind, path: &AttrPath) -> std::borrow::Cow<'_, AttrPath> {
    if path.schema.is_some() || kind.core_attr(&path.attr).is_some() {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut defining = kind
        .extensions()
        .iter()
        .filter(|ext| crate::schema::find_attr(ext.attributes, &path.attr).is_some());
    match (defining.next(), defining.next()) {
        (Some(ext), None) => std::borrow::Cow::Owned(AttrPath {
            schema: Some(ext.id.to_string()),
            ..path.clone()
        }),
        _ => std::borrow::Cow::Borrowed(path),
    }
}

/// Builds a path from a path-less key under an optional schema URN (the key may be dotted).
pub(super) fn keyed_path(urn: Option<&str>, key: &str) -> Result<AttrPath> {
    let mut p = parse_path(key)?;
    if p.schema.is_none() {
        p.schema = urn.map(str::to_string);
    }
    Ok(p)
}

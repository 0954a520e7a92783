//! Subject names: the template a ScimGroupBinding renders for each member, the operator's
//! required prefix, and the names never bound whatever the template renders. No I/O.

use kube_scim_crds::group_binding::SubjectKind;
use kube_scim_crds::{ScimGroup, ScimGroupBinding, ScimUser};

use super::members::group_id;

/// The template of `binding`'s subject names (the default when the spec has none).
pub(super) fn subject_template(binding: &ScimGroupBinding) -> &str {
    let subject = &binding.spec.subject;
    subject.name.as_deref().unwrap_or(match subject.kind {
        SubjectKind::User => "{{userName}}",
        SubjectKind::Group => "{{displayName}}",
    })
}

/// Why the template does not satisfy the operator's required prefix, if it does not. The
/// template must begin with the prefix as literal text: an attribute value that happens to
/// begin with it proves nothing.
pub(super) fn missing_prefix(binding: &ScimGroupBinding, prefix: &str) -> Option<String> {
    let template = subject_template(binding);
    if prefix.is_empty() || template.starts_with(prefix) && !prefix.contains("{{") {
        return None;
    }
    Some(format!(
        "this operator binds only subject names beginning with {prefix:?} (Helm value groupBindings.subjectPrefix, the prefix your authenticator gives identity-provider users and groups); spec.subject.name {template:?} must begin with it, e.g. {:?}",
        format!("{prefix}{}", template.trim_start_matches(prefix))
    ))
}

/// Why a rendered subject name is never bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// In the `system:` namespace Kubernetes reserves for built-in identities
    /// (`system:masters`, `system:anonymous`, `system:authenticated`,
    /// `system:serviceaccount:<ns>:<name>`, `system:node:<name>`, ...).
    Reserved,
    /// Not a plain name: leading or trailing whitespace, or a control or invisible character.
    /// No authenticator gives a person such a name; it can only be meant to look like another.
    NotPlain,
}

impl Refusal {
    pub(super) fn explain(self) -> &'static str {
        match self {
            Refusal::Reserved => {
                "is in the system: namespace that Kubernetes reserves for built-in identities"
            }
            Refusal::NotPlain => {
                "is not a plain name (leading or trailing whitespace, control or invisible characters)"
            }
        }
    }
}

/// Whether a rendered subject name must not be bound, and why. Anyone who can name a user or
/// group in the identity provider, or holds the directory's SCIM credential, chooses the
/// attribute values a template renders; a name such as `system:masters` or
/// `system:serviceaccount:kube-system:default` would hand the role to a built-in identity.
/// RBAC compares names exactly, so only `system:` itself is reserved, but the check also folds
/// case and drops whitespace and invisible characters: a disguised `System: masters` is never
/// legitimate either, and a later normalisation anywhere must not turn it into the real one.
pub fn refusal(name: &str) -> Option<Refusal> {
    let folded: String = name
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control() && !is_invisible(*c))
        .flat_map(char::to_lowercase)
        .collect();
    if folded.starts_with("system:") {
        return Some(Refusal::Reserved);
    }
    if name.trim() != name || name.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Some(Refusal::NotPlain);
    }
    None
}

/// Zero-width and direction-control characters (Unicode format characters that render as
/// nothing), which make one name look like another.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{E0000}'..='\u{E007F}')
}

/// A template with `{{attribute}}` placeholders filled by `lookup`; None when one has no value.
pub fn render(template: &str, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let value = lookup(after[..end].trim()).filter(|v| !v.is_empty())?;
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return None;
    }
    out.push_str(rest);
    (!out.is_empty()).then_some(out)
}

pub(super) fn user_attribute(user: &ScimUser, attribute: &str) -> Option<String> {
    let status = user.status.as_ref()?;
    match attribute {
        "userName" => Some(status.user_name.clone()),
        "externalId" => status.external_id.clone(),
        "id" => Some(status.id.clone()).filter(|id| !id.is_empty()),
        "displayName" => status.display_name.clone(),
        "email" => status
            .emails
            .iter()
            .find(|e| e.primary == Some(true) && e.value.is_some())
            .or_else(|| status.emails.iter().find(|e| e.value.is_some()))
            .and_then(|e| e.value.clone()),
        _ => None,
    }
}

pub(super) fn group_attribute(group: &ScimGroup, attribute: &str) -> Option<String> {
    let status = group.status.as_ref()?;
    match attribute {
        "displayName" => Some(status.display_name.clone()),
        "externalId" => status.external_id.clone(),
        "id" => Some(group_id(group)),
        _ => None,
    }
}

//! What each identity provider (`spec.provider` of the directory) expects beyond RFC 7644, in
//! one place. Requests are accepted the same way for every provider (both Entra PATCH dialects,
//! Okta's shapes and strict RFC input are all read by one engine); only answers may differ, where
//! the RFC leaves the server a choice, and whether a read-only value a client insists on (Okta's
//! member `display`) is kept.

use kube_scim_crds::Provider;
use scim_protocol::ResourceKind;

/// How a successful PATCH is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchAnswer {
    /// 204 No Content (RFC 7644 §3.5.2 "MAY").
    NoContent,
    /// 200 with the resource, projected by `attributes` / `excludedAttributes`.
    Resource,
}

/// The answer to a successful PATCH of `kind` in a directory provisioned by `provider`.
///
/// A group's members are computed from every member object, so 204 spares that work where the
/// client does not need the body: Entra expects 204 for groups and ignores the body anyway.
/// Okta's SCIM 2.0 reference shows its PATCHes answered 200 with the resource, so Okta
/// directories always get it. Asking for `attributes` or
/// `excludedAttributes` means 200 with them for everyone, as RFC 7644 §3.5.2 requires.
pub fn patch_answer(provider: Provider, kind: ResourceKind, projection_asked: bool) -> PatchAnswer {
    if projection_asked || kind == ResourceKind::User {
        return PatchAnswer::Resource;
    }
    match provider {
        Provider::Okta => PatchAnswer::Resource,
        Provider::Entra | Provider::Generic => PatchAnswer::NoContent,
    }
}

/// Whether a member's `display` as the client sent it is kept and served back in that group.
/// RFC 7643 §2.4 makes `display` read-only, so other clients' values are ignored; Okta's group
/// push sends each member's Okta login as `display` and expects it kept.
pub fn keeps_member_display(provider: Provider) -> bool {
    provider == Provider::Okta
}

/// Longest `display` kept (an annotation value); a longer one is ignored like any read-only
/// value, so a client cannot grow member objects without bound.
pub const MAX_KEPT_DISPLAY: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_okta_gets_group_patches_answered_with_the_group() {
        use PatchAnswer::*;
        for p in [Provider::Entra, Provider::Okta, Provider::Generic] {
            assert_eq!(patch_answer(p, ResourceKind::User, false), Resource);
            assert_eq!(patch_answer(p, ResourceKind::Group, true), Resource);
        }
        assert_eq!(
            patch_answer(Provider::Okta, ResourceKind::Group, false),
            Resource
        );
        assert_eq!(
            patch_answer(Provider::Entra, ResourceKind::Group, false),
            NoContent
        );
        assert_eq!(
            patch_answer(Provider::Generic, ResourceKind::Group, false),
            NoContent
        );
    }
}

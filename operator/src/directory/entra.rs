//! Whether a directory's Entra-issued tokens are bound to one enterprise application, and that
//! application to this directory only (issue 27, defect 4).
//!
//! Entra issues the token of a non-gallery application (Secret Token left empty) with the same
//! audience for every such application of the tenant; only the calling application's id
//! (`appid`, or `azp` in a v2 token) tells them apart. So a directory with method `EntraToken`
//! must name its application(s) in `auth.entraToken.allowedAppIds`, or it is refused
//! (`EntraAppNotBound`). And since nothing in the token names the directory, one application of a
//! tenant opens one directory: of two directories naming it, the older (by creation time, then
//! namespace and name) keeps it and the other is refused (`EntraAppConflict`). The SCIM server
//! serves no directory that is not `Ready`, and itself refuses an Entra token for a directory
//! that names no application.

use kube_scim_crds::{AuthMethod, ScimDirectory};

use crate::reconcile::Check;

/// The Entra settings of `dir` that decide: its tenant (lowercase) and application ids
/// (lowercase), if it accepts Entra-issued tokens.
fn claims(dir: &ScimDirectory) -> Option<(String, Vec<String>)> {
    if !dir.spec.auth.allows(AuthMethod::EntraToken) {
        return None;
    }
    let entra = dir.spec.auth.entra_token.as_ref()?;
    Some((
        entra.tenant_id.to_ascii_lowercase(),
        entra
            .allowed_app_ids
            .iter()
            .map(|a| a.trim().to_ascii_lowercase())
            .filter(|a| !a.is_empty())
            .collect(),
    ))
}

/// Which of two directories came first: creation time, then namespace and name.
fn order_key(dir: &ScimDirectory) -> (Option<jiff::Timestamp>, String, String) {
    (
        dir.metadata.creation_timestamp.as_ref().map(|t| t.0),
        dir.metadata.namespace.clone().unwrap_or_default(),
        dir.metadata.name.clone().unwrap_or_default(),
    )
}

/// `None` when `dir` does not accept Entra-issued tokens or is bound to application(s) no older
/// directory of `all` (every directory the operator sees, `dir` possibly among them) names;
/// else the failed check that refuses it.
pub fn check<'a>(
    dir: &ScimDirectory,
    all: impl IntoIterator<Item = &'a ScimDirectory>,
) -> Option<Check> {
    let (tenant, apps) = claims(dir)?;
    if apps.is_empty() {
        return Some(Check::failed(
            "EntraAppNotBound",
            "spec.auth.entraToken.allowedAppIds is empty: Entra issues tokens with the same audience to every non-gallery application of the tenant, so without the application id any of them would open this directory. Set allowedAppIds to the Application ID of the enterprise application (Entra admin center > Enterprise applications > the application > Overview > Application ID). Entra-issued tokens open nothing until then.",
        ));
    }
    let mine = order_key(dir);
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for other in all {
        if other.metadata.uid == dir.metadata.uid && other.metadata.uid.is_some() {
            continue;
        }
        let Some((other_tenant, other_apps)) = claims(other) else {
            continue;
        };
        let shared = apps.iter().find(|a| other_apps.contains(a));
        if other_tenant == tenant
            && let Some(app) = shared
            && order_key(other) < mine
        {
            let (_, ns, name) = order_key(other);
            conflicts.push((format!("{ns}/{name}"), app.clone()));
        }
    }
    conflicts.sort();
    let (first, app) = conflicts.into_iter().next()?;
    Some(Check::failed(
        "EntraAppConflict",
        format!(
            "The Entra application {app} of tenant {tenant} already opens directory {first}: nothing in an Entra-issued token names the directory, so one application may open only one. Create another enterprise application for this directory and put its Application ID in spec.auth.entraToken.allowedAppIds, or remove {app} from one of the two. Entra-issued tokens open nothing here until then."
        ),
    ))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube_scim_crds::{AuthSpec, EntraTokenSpec, ScimDirectorySpec};

    use super::*;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const APP: &str = "11111111-2222-3333-4444-555555555555";

    fn dir(ns: &str, name: &str, created: &str, apps: &[&str]) -> ScimDirectory {
        let mut d = ScimDirectory::new(
            name,
            ScimDirectorySpec {
                auth: AuthSpec {
                    methods: vec![AuthMethod::EntraToken],
                    entra_token: Some(EntraTokenSpec {
                        tenant_id: TENANT.into(),
                        allowed_app_ids: apps.iter().map(|a| a.to_string()).collect(),
                    }),
                    oauth_client_credentials: None,
                    workload_identity_federation: None,
                },
                ..Default::default()
            },
        );
        d.metadata.namespace = Some(ns.into());
        d.metadata.uid = Some(format!("uid-{ns}-{name}"));
        d.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        d
    }

    #[test]
    fn a_directory_without_an_application_is_refused() {
        let d = dir("ns", "a", "2026-01-01T00:00:00Z", &[]);
        let c = check(&d, [&d]).unwrap();
        assert_eq!(c.reason, "EntraAppNotBound");
        assert!(c.message.contains("Application ID"), "{}", c.message);
        // Blank ids count as none.
        let blank = dir("ns", "a", "2026-01-01T00:00:00Z", &[" "]);
        assert_eq!(check(&blank, []).unwrap().reason, "EntraAppNotBound");
        // Without the method nothing is checked.
        let mut bearer = d.clone();
        bearer.spec.auth.methods = vec![AuthMethod::BearerToken];
        assert_eq!(check(&bearer, []), None);
    }

    #[test]
    fn one_application_opens_one_directory_the_older() {
        let older = dir("team-a", "a", "2026-01-01T00:00:00Z", &[APP]);
        let younger = dir(
            "team-b",
            "b",
            "2026-02-01T00:00:00Z",
            &[&APP.to_uppercase(), "99999999-2222-3333-4444-555555555555"],
        );
        let all = [&older, &younger];
        assert_eq!(check(&older, all), None);
        let c = check(&younger, all).unwrap();
        assert_eq!(c.reason, "EntraAppConflict");
        assert!(c.message.contains("team-a/a") && c.message.contains(APP));
        // Same creation time: namespace and name decide, so exactly one of them wins.
        let twin = dir("team-0", "z", "2026-01-01T00:00:00Z", &[APP]);
        assert_eq!(check(&twin, [&older, &twin]), None);
        assert!(check(&older, [&older, &twin]).is_some());
        // Another application, or another tenant, is no conflict.
        let other_app = dir(
            "team-c",
            "c",
            "2026-03-01T00:00:00Z",
            &["99999999-2222-3333-4444-555555555555"],
        );
        assert_eq!(check(&other_app, [&older, &other_app]), None);
        let mut other_tenant = younger.clone();
        other_tenant
            .spec
            .auth
            .entra_token
            .as_mut()
            .unwrap()
            .tenant_id = "00000000-86f1-41af-91ab-2d7cd011db47".into();
        assert_eq!(check(&other_tenant, [&older, &other_tenant]), None);
        // A directory that no longer accepts Entra tokens releases its application.
        let mut released = older.clone();
        released.spec.auth.methods = vec![AuthMethod::BearerToken];
        assert_eq!(check(&younger, [&released, &younger]), None);
    }
}

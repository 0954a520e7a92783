//! Which ScimDirectory a ScimGroupBinding may take its members from (issue 27, defect 2).
//!
//! Whoever can send SCIM writes to the directory decides who gets the bound role, so a binding
//! must not follow a directory that someone weaker than its author could have opened:
//!
//! - a directory whose credential is kept in a Secret (`BearerToken`, `OAuthClientCredentials`)
//!   can be driven by every Secret reader of its namespace (the built-in `edit` role): it feeds
//!   a binding only with `spec.trustDirectorySecretReaders`, which only someone allowed to bind
//!   the role can write (the chart's admission policy checks every spec write);
//! - the directory is pinned: its uid and a fingerprint of who may authenticate as its identity
//!   provider (provider, `spec.auth`, `spec.token.secretRef`) are recorded in status when the
//!   binding first sees it; a directory re-created under the same name, or whose credential
//!   configuration changed, binds nothing until `spec.directoryAcknowledgement` changes (again
//!   a spec write that the admission policy checks). ScimDirectory editors can therefore change
//!   a directory, but not what a binding grants.
//!
//! Pure: no I/O, so every rule is unit-tested (`trust_tests.rs`).

use kube::ResourceExt;
use kube_scim_crds::group_binding::{
    AcceptedDirectory, REASON_DIRECTORY_CHANGED, REASON_DIRECTORY_CREDENTIAL_SHARED,
    REASON_DIRECTORY_NOT_FOUND,
};
use kube_scim_crds::{AuthMethod, ScimDirectory, ScimGroupBinding};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::plan::{Existing, Outcome, Plan};

/// Prefix of the fingerprint: a later operator that fingerprints other fields can tell its own
/// fingerprints from these.
const FINGERPRINT_VERSION: &str = "v1";

/// The verdict on a binding's directory.
#[derive(Clone, Debug, PartialEq)]
pub struct Trust {
    /// What `status.directory` says after this reconcile.
    pub accepted: Option<AcceptedDirectory>,
    /// `None`: the directory may feed the binding. Otherwise why not: Ready False, and every
    /// binding is removed.
    pub refusal: Option<Outcome>,
}

/// Who may authenticate as the directory's identity provider, as a stable digest: the provider,
/// the whole `spec.auth` (methods, Entra tenant and applications, OAuth settings) and the
/// Secret the token comes from. Token rotation (`rotationRequest`, `gracePeriod`) is left out:
/// it changes the secret, not who may read it.
pub fn credential_fingerprint(directory: &ScimDirectory) -> String {
    let spec = &directory.spec;
    let canonical = json!({
        "provider": spec.provider,
        "auth": spec.auth,
        "tokenSecretRef": spec.token.secret_ref,
    });
    let bytes = serde_json::to_vec(&canonical).expect("JSON of plain data");
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{FINGERPRINT_VERSION}:{hex}")
}

/// The directory's methods whose credential is kept in a Kubernetes Secret of its namespace,
/// readable by that namespace's editors.
pub fn shared_secret_methods(directory: &ScimDirectory) -> Vec<AuthMethod> {
    directory
        .spec
        .auth
        .methods
        .iter()
        .copied()
        .filter(|m| {
            matches!(
                m,
                AuthMethod::BearerToken | AuthMethod::OAuthClientCredentials
            )
        })
        .collect()
}

fn method_name(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::BearerToken => "BearerToken",
        AuthMethod::EntraToken => "EntraToken",
        AuthMethod::OAuthClientCredentials => "OAuthClientCredentials",
        AuthMethod::WorkloadIdentityFederation => "WorkloadIdentityFederation",
    }
}

fn refusal(reason: &'static str, message: String) -> Option<Outcome> {
    Some(Outcome {
        ready: false,
        reason,
        message,
    })
}

const ACKNOWLEDGE: &str = "check the directory (who may change it, which credential it accepts), then change spec.directoryAcknowledgement to accept it (a spec write: it needs bind on the role in every target namespace)";

/// Decides whether `directory` (the ScimDirectory named by the binding, as the watch cache
/// holds it; `None` when there is none) may feed `binding`, and what the binding accepts.
pub fn check(binding: &ScimGroupBinding, directory: Option<&ScimDirectory>) -> Trust {
    let name = binding.spec.directory_ref.name.as_str();
    let namespace = binding.namespace().unwrap_or_default();
    let acknowledgement = binding.spec.directory_acknowledgement.clone();
    let previous = binding.status.as_ref().and_then(|s| s.directory.clone());

    let Some(directory) = directory.filter(|d| d.metadata.deletion_timestamp.is_none()) else {
        // Kept: a directory created again under this name must be accepted anew.
        return Trust {
            accepted: previous,
            refusal: refusal(
                REASON_DIRECTORY_NOT_FOUND,
                format!(
                    "ScimDirectory {name} does not exist in namespace {namespace} (or is being deleted): nothing is bound, since nobody could deprovision its members"
                ),
            ),
        };
    };
    let current = AcceptedDirectory {
        uid: directory.uid().unwrap_or_default(),
        credential_fingerprint: credential_fingerprint(directory),
        acknowledgement: acknowledgement.clone(),
    };
    // The first directory a binding sees is accepted, and so is the current one whenever its
    // author changes the acknowledgement; otherwise the recorded one stays.
    let accepted = match previous {
        Some(p) if p.acknowledgement == acknowledgement => p,
        _ => current.clone(),
    };
    let changed = if accepted.uid != current.uid {
        Some(format!(
            "ScimDirectory {name} was deleted and created again (uid {} was accepted, it is now {}): whoever created it could decide who gets the role, so nothing is bound; {ACKNOWLEDGE}",
            accepted.uid, current.uid
        ))
    } else if accepted.credential_fingerprint != current.credential_fingerprint {
        Some(format!(
            "who may authenticate as the identity provider of ScimDirectory {name} changed since this binding accepted it (provider, spec.auth or spec.token.secretRef): whoever changed it could decide who gets the role, so nothing is bound; {ACKNOWLEDGE}"
        ))
    } else {
        None
    };
    if let Some(message) = changed {
        return Trust {
            accepted: Some(accepted),
            refusal: refusal(REASON_DIRECTORY_CHANGED, message),
        };
    }
    let shared = shared_secret_methods(directory);
    if !shared.is_empty() && !binding.spec.trust_directory_secret_readers {
        let methods: Vec<&str> = shared.into_iter().map(method_name).collect();
        let role = &binding.spec.role_ref;
        return Trust {
            accepted: Some(accepted),
            refusal: refusal(
                REASON_DIRECTORY_CREDENTIAL_SHARED,
                format!(
                    "ScimDirectory {name} accepts {}, a credential kept in a Secret of namespace {namespace}: whoever can read Secrets there (the built-in edit and admin roles can) could send SCIM writes and decide who gets {} {}, so nothing is bound. Use a directory that accepts only Entra-issued tokens (auth.methods: [EntraToken]), or set spec.trustDirectorySecretReaders: true to accept that risk",
                    methods.join(" and "),
                    role.kind.as_str(),
                    role.name
                ),
            ),
        };
    }
    Trust {
        accepted: Some(accepted),
        refusal: None,
    }
}

/// The plan of a binding whose directory is refused: nothing is desired, every binding it
/// wrote is removed.
pub fn refused_plan(outcome: Outcome, existing: &[Existing]) -> Plan {
    Plan::nothing(outcome, existing)
}

#[cfg(test)]
#[path = "trust_tests.rs"]
mod tests;

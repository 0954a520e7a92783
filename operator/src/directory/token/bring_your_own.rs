//! A token the user brings in a Secret named by `spec.token.secretRef`: checked for strength,
//! published as verifiers, the previous token kept for its grace period.

use super::*;

/// A bring-your-own token: the state it gives, and the note of a `TokenChanged` event when
/// the token differs from the one published (the previous one stays valid for `grace`). A token
/// that fails [`strength::weakness`] gets no verifier: `TokenTooWeak`, and only the verifiers of
/// the previous token stay, for their grace period.
#[allow(clippy::too_many_arguments)]
pub fn bring_your_own(
    ns: &str,
    name: &str,
    key: &str,
    secret: Option<&Secret>,
    previous: &ScimDirectoryStatus,
    now: Timestamp,
    grace: Duration,
    keys: &KeyRing,
    binding: &Binding<'_>,
) -> (TokenState, Option<String>) {
    let failed = |reason: &str, message: String| {
        (
            TokenState::failed(reason, message, Some(name.to_string())),
            None,
        )
    };
    let Some(secret) = secret else {
        return failed(
            "SecretNotFound",
            format!(
                "spec.token.secretRef.name: Secret {ns}/{name} does not exist. Create it with the token under key {key:?}, or fix spec.token.secretRef.name (or remove secretRef to let the operator generate a token)."
            ),
        );
    };
    let token = match secret_token(secret, key) {
        // The Secret's other keys are not named: whoever reads the directory's status need not
        // read the Secret (issue 27).
        None => {
            return failed(
                "SecretKeyMissing",
                format!(
                    "spec.token.secretRef.key: Secret {ns}/{name} has no key {key:?}. Add the token under that key, or set spec.token.secretRef.key to the right one (`kubectl get secret {name} -n {ns} -o jsonpath='{{.data}}'` lists the keys, for whoever may read it)."
                ),
            );
        }
        Some(Err(())) => {
            return failed(
                "TokenInvalid",
                format!(
                    "spec.token.secretRef: key {key:?} of Secret {ns}/{name} is not UTF-8 text. Store the bearer token as plain text."
                ),
            );
        }
        Some(Ok(t)) if t.is_empty() => {
            return failed(
                "TokenEmpty",
                format!(
                    "spec.token.secretRef: key {key:?} of Secret {ns}/{name} is empty. Put the bearer token there."
                ),
            );
        }
        Some(Ok(t)) => t,
    };
    let is_current = |v: &TokenVerifier| tokens::is_of(keys, binding, &token, v);
    let had_current = previous
        .token_verifiers
        .iter()
        .any(|v| v.expires_at.is_none());
    let unchanged = previous
        .token_verifiers
        .iter()
        .any(|v| v.expires_at.is_none() && is_current(v));
    let carried = tokens::carry_over(&previous.token_verifiers, is_current, unchanged, now, grace);
    if let Some(weakness) = strength::weakness(&token) {
        let verifiers = tokens::publishable(&[], &carried, now, grace);
        let previous_note = match tokens::last_expiry(&verifiers) {
            Some(until) => format!(
                " The previous token keeps working until {}.",
                tokens::format_time(until)
            ),
            None => String::new(),
        };
        let message = format!(
            "spec.token.secretRef: the token in key {key:?} of Secret {ns}/{name} is too weak: {weakness}. A bring-your-own token needs at least {} characters, at least {} different ones, and no repeated piece or long run; make one with `{}` and put it in the Secret, or remove spec.token.secretRef to let the operator generate one. This token opens nothing.{previous_note}",
            strength::MIN_LENGTH,
            strength::MIN_DISTINCT,
            strength::HOW_TO_MAKE_ONE,
        );
        let state = TokenState {
            check: Check::failed("TokenTooWeak", message),
            secret_name: Some(name.to_string()),
            created: None,
            verifiers,
        };
        return (state, None);
    }
    let current = tokens::verifiers(keys, binding, &token, None);
    let fingerprint = tokens::fingerprint_of_hash(&current[0].hash);
    let verifiers = tokens::publishable(&current, &carried, now, grace);
    let created = if unchanged {
        previous.token_created.clone()
    } else if previous.token_verifiers.is_empty() {
        secret
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| tokens::format_time(t.0))
    } else {
        Some(tokens::format_time(now))
    };
    let event = (!unchanged && !previous.token_verifiers.is_empty()).then(|| {
        if had_current {
            format!(
                "The token in Secret {name} changed (fingerprint {fingerprint}); the previous token stays valid for {}.",
                duration::format(grace)
            )
        } else {
            format!("The token in Secret {name} changed (fingerprint {fingerprint}).")
        }
    });
    let state = TokenState {
        check: Check::ok(
            "SecretReferenced",
            format!("Using the token in Secret {name}, key {key:?} (fingerprint {fingerprint})"),
        ),
        secret_name: Some(name.to_string()),
        created,
        verifiers,
    };
    (state, event)
}

//! A token the operator generates into a Secret it owns: the plan (create, rotate, recreate,
//! keep, or leave a foreign Secret alone), the Secret, and the new token's verifiers.

use super::*;

/// What to do with a generated token's Secret.
#[derive(Debug, PartialEq)]
pub enum GeneratedPlan {
    /// No Secret: generate a token into a new one.
    Create,
    /// The Secret exists but belongs to something else: leave it, report it.
    Foreign,
    /// `spec.token.rotationRequest` changed: new token; the old one stays valid for the grace
    /// period among `previous`.
    Rotate { previous: Vec<TokenVerifier> },
    /// Our Secret lost its token: new token; nothing old to keep.
    Recreate,
    /// The token stands; `current` are its verifiers under the keys in force.
    Keep {
        current: Vec<TokenVerifier>,
        created: Option<String>,
        previous: Vec<TokenVerifier>,
    },
}

/// The plan for the generated token of the directory `binding`, given its Secret as read and
/// the directory's status: the previous tokens' verifiers come from the status only (see
/// [`ANNOTATION_PREVIOUS`]).
pub fn plan_generated(
    binding: &Binding<'_>,
    secret: Option<&Secret>,
    rotation: &str,
    status: &ScimDirectoryStatus,
    now: Timestamp,
    grace: Duration,
    keys: &KeyRing,
) -> GeneratedPlan {
    let Some(secret) = secret else {
        return GeneratedPlan::Create;
    };
    if !owned_by(&secret.metadata, binding.uid) {
        return GeneratedPlan::Foreign;
    }
    let token = secret_token(secret, TOKEN_KEY)
        .and_then(Result::ok)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return GeneratedPlan::Recreate;
    };
    let is_current = |v: &TokenVerifier| tokens::is_of(keys, binding, &token, v);
    let unchanged = status
        .token_verifiers
        .iter()
        .any(|v| v.expires_at.is_none() && is_current(v));
    let earlier = tokens::carry_over(&status.token_verifiers, is_current, unchanged, now, grace);
    let applied_rotation = secret
        .annotations()
        .get(ANNOTATION_ROTATION)
        .map(String::as_str)
        .unwrap_or_default();
    let current = tokens::verifiers(keys, binding, &token, None);
    if applied_rotation != rotation {
        return GeneratedPlan::Rotate {
            previous: tokens::retire(&current, &earlier, now, grace),
        };
    }
    let created = status
        .token_created
        .clone()
        .filter(|_| unchanged)
        .or_else(|| secret.annotations().get(ANNOTATION_CREATED).cloned())
        .or_else(|| {
            secret
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| tokens::format_time(t.0))
        });
    GeneratedPlan::Keep {
        current,
        created,
        previous: earlier,
    }
}

/// The Secret holding a generated `token`.
pub fn token_secret(
    name: &str,
    dir: &ScimDirectory,
    token: &str,
    rotation: &str,
    created: Timestamp,
) -> Result<Secret, Error> {
    let annotations = BTreeMap::from([
        (ANNOTATION_ROTATION.to_string(), rotation.to_string()),
        (ANNOTATION_CREATED.to_string(), tokens::format_time(created)),
    ]);
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: dir.namespace(),
            labels: Some(route::child_labels(&dir.name_any())),
            annotations: Some(annotations),
            owner_references: Some(vec![dir.controller_owner_ref(&()).ok_or(Error::Unnamed)?]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Default::default()
    })
}

/// Carries out a [`GeneratedPlan`].
#[allow(clippy::too_many_arguments)]
pub(super) async fn generate(
    dir: &ScimDirectory,
    ctx: &Context,
    secrets: &Api<Secret>,
    name: &str,
    secret: Option<Secret>,
    plan: GeneratedPlan,
    previous: &ScimDirectoryStatus,
    now: Timestamp,
    grace: Duration,
    keys: &KeyRing,
    binding: &Binding<'_>,
) -> Result<TokenState, Error> {
    let rotation = dir.spec.token.rotation_request.clone().unwrap_or_default();
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let conflict = || format!("Secret {name}");
    let (why, retired) = match plan {
        GeneratedPlan::Keep {
            current,
            created,
            previous,
        } => {
            let fingerprint = tokens::fingerprint_of_hash(&current[0].hash);
            let verifiers = tokens::publishable(&current, &previous, now, grace);
            return Ok(TokenState::present(
                "TokenPresent",
                name,
                &fingerprint,
                created,
                verifiers,
            ));
        }
        GeneratedPlan::Foreign => {
            let ns = dir.namespace().unwrap_or_default();
            return Ok(TokenState::failed(
                "SecretConflict",
                format!(
                    "Secret {ns}/{name} exists but does not belong to this directory (no ownerReference to it). Delete or rename that Secret, or use it on purpose through spec.token.secretRef."
                ),
                Some(name.to_string()),
            ));
        }
        GeneratedPlan::Create => {
            let existed_before = previous.token_secret_name.as_deref() == Some(name)
                && previous.token_fingerprint.is_some();
            let why = if existed_before {
                NewToken::SecretDeleted
            } else {
                NewToken::First
            };
            (why, Vec::new())
        }
        GeneratedPlan::Recreate => (NewToken::TokenMissing, Vec::new()),
        GeneratedPlan::Rotate { previous } => (NewToken::Rotated, previous),
    };
    let new_token = tokens::generate().map_err(Error::Random)?;
    let desired = token_secret(name, dir, &new_token, &rotation, now)?;
    match secret {
        // Create, never overwrite: a Secret that appeared meanwhile is read on the next round.
        None => {
            secrets
                .create(&params, &desired)
                .await
                .map_err(|e| Error::conflict_or(e, conflict))?;
        }
        Some(mut secret) => {
            secret.data = desired.data;
            secret.metadata.annotations = desired.metadata.annotations;
            secret
                .metadata
                .labels
                .get_or_insert_default()
                .extend(route::child_labels(&dir.name_any()));
            // `replace` carries the resourceVersion just read: a concurrent change wins and we
            // retry.
            secrets
                .replace(name, &params, &secret)
                .await
                .map_err(|e| Error::conflict_or(e, conflict))?;
        }
    }
    let current = tokens::verifiers(keys, binding, &new_token, None);
    let fingerprint = tokens::fingerprint_of_hash(&current[0].hash);
    ctx.publish(
        dir,
        why.event_type(),
        why.event_reason(),
        "Token",
        why.note(name, &fingerprint, grace),
    )
    .await;
    let verifiers = tokens::publishable(&current, &retired, now, grace);
    Ok(TokenState::present(
        why.condition_reason(),
        name,
        &fingerprint,
        Some(tokens::format_time(now)),
        verifiers,
    ))
}

/// Why a new token was generated: decides the event and the condition reason.
pub(super) enum NewToken {
    /// The directory's first token.
    First,
    /// The Secret of a published token was deleted.
    SecretDeleted,
    /// Our Secret had no token under its key.
    TokenMissing,
    /// `spec.token.rotationRequest` changed.
    Rotated,
}

impl NewToken {
    pub(super) fn event_reason(&self) -> &'static str {
        match self {
            NewToken::First => "TokenCreated",
            NewToken::SecretDeleted | NewToken::TokenMissing => "TokenRecreated",
            NewToken::Rotated => "TokenRotated",
        }
    }

    pub(super) fn condition_reason(&self) -> &'static str {
        match self {
            NewToken::First | NewToken::SecretDeleted => "TokenCreated",
            NewToken::TokenMissing => "TokenRecreated",
            NewToken::Rotated => "TokenRotated",
        }
    }

    /// A lost token is a Warning: the identity provider must be given the new one.
    pub(super) fn event_type(&self) -> EventType {
        match self {
            NewToken::SecretDeleted | NewToken::TokenMissing => EventType::Warning,
            NewToken::First | NewToken::Rotated => EventType::Normal,
        }
    }

    pub(super) fn note(&self, name: &str, fingerprint: &str, grace: Duration) -> String {
        match self {
            NewToken::First => format!(
                "Generated a bearer token in Secret {name}, key {TOKEN_KEY:?} (fingerprint {fingerprint})"
            ),
            NewToken::SecretDeleted => format!(
                "Secret {name} was deleted, so a new token was generated (fingerprint {fingerprint}); the old token no longer works. Paste the new token from Secret {name} into the identity provider."
            ),
            NewToken::TokenMissing => format!(
                "Secret {name} had no token under key {TOKEN_KEY:?}, so a new token was generated (fingerprint {fingerprint}). Paste it into the identity provider."
            ),
            NewToken::Rotated => format!(
                "spec.token.rotationRequest changed: new token in Secret {name} (fingerprint {fingerprint}); the previous token stays valid for {}.",
                duration::format(grace)
            ),
        }
    }
}

//! The one error type of every reconcile, and the tests for API errors the controllers make.

/// What can fail in a reconcile.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("no random bytes from the operating system: {0}")]
    Random(getrandom::Error),
    #[error("object has no namespace or name")]
    Unnamed,
    #[error("{0} was changed concurrently; retrying")]
    Conflict(String),
}

impl Error {
    /// Label of the failure metric.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(s)) => format!("api_{}", s.code),
            Error::Kube(_) => "api_client".into(),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer".into(),
            },
            Error::Random(_) => "random".into(),
            Error::Unnamed => "unnamed".into(),
            Error::Conflict(_) => "conflict".into(),
        }
    }

    /// The apiserver refused the operator (RBAC), wherever in the reconcile.
    pub fn is_forbidden(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(s)) => s.is_forbidden(),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.is_forbidden(),
                kube::runtime::finalizer::Error::AddFinalizer(kube::Error::Api(s))
                | kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(s)) => {
                    s.is_forbidden()
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// A compare-and-swap write lost (`what` changed since it was read, or was created
    /// meanwhile): retried, not reported.
    pub fn conflict_or(e: kube::Error, what: impl FnOnce() -> String) -> Error {
        match &e {
            kube::Error::Api(s) if s.is_conflict() || s.is_already_exists() => {
                Error::Conflict(what())
            }
            _ => Error::Kube(e),
        }
    }
}

// kube's `Status` helpers (`is_not_found()`, ...) go by reason: a body that is no `Status`
// (the plain-text "404 page not found" of a kind whose CRD is not installed) comes back with
// the reason "Failed to parse error data" and only its code, and kube-core 5's code fallback
// never applies (it asks whether the reason it looks for, not the one received, is known). So
// the code is checked too, as client-go does.

/// Whether a kube error is a 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found() || s.code == 404)
}

/// Whether a kube error is a 403.
pub fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_forbidden() || s.code == 403)
}

/// Whether a kube error is a 422 (e.g. a change of an immutable field).
pub fn is_invalid(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_invalid() || s.code == 422)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status::failure("x", reason).with_code(code)))
    }

    #[test]
    fn api_errors_are_told_by_reason_or_by_code() {
        assert!(is_not_found(&api(404, "NotFound")));
        // What kube makes of a plain-text 404: kube's own helper misses it.
        let plain = api(404, "Failed to parse error data");
        assert!(is_not_found(&plain));
        let kube::Error::Api(s) = &plain else {
            unreachable!()
        };
        assert!(
            !s.is_not_found(),
            "kube-core fixed its code fallback: drop ours"
        );
        assert!(!is_not_found(&api(409, "Conflict")));
        assert!(is_forbidden(&api(403, "Forbidden")) && !is_forbidden(&api(404, "NotFound")));
        assert!(is_invalid(&api(422, "Invalid")) && !is_invalid(&api(409, "Conflict")));
    }

    #[test]
    fn a_lost_compare_and_swap_is_a_conflict_and_other_errors_stay_api_errors() {
        let e = Error::conflict_or(api(409, "Conflict"), || "the Secret".into());
        assert!(matches!(e, Error::Conflict(ref w) if w == "the Secret"));
        assert_eq!(e.metric_label(), "conflict");
        let e = Error::conflict_or(api(500, "InternalError"), || unreachable!());
        assert_eq!(e.metric_label(), "api_500");
        assert!(Error::from(api(403, "Forbidden")).is_forbidden());
    }
}

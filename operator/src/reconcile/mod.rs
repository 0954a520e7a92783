//! What every controller of the operator shares (the ScimDirectory controller in
//! `directory/`, the ScimGroupBinding controller in `group_binding/`, the ScimWebhook
//! deliverer in `webhook/`), so each of them writes its conditions and status, and tells API
//! errors apart, the same way:
//!
//! - [`condition`]: an outcome ([`Check`]) as a condition: the one `lastTransitionTime` rule,
//!   the one message cap;
//! - [`status`]: the one status write (server-side apply, one field manager per controller);
//! - [`error`]: the one reconcile error type, and the API error tests kube's helpers miss;
//! - [`predicate`]: which changes of an object call for a reconcile, as one hash;
//! - for unit tests: `fake_apiserver` (the apiserver every controller's tests run against) and
//!   `test_stores` (caches that have listed).
//!
//! A leaf: it imports nothing from the controllers.

pub mod condition;
pub mod error;
#[cfg(test)]
pub mod fake_apiserver;
pub mod predicate;
pub mod status;
#[cfg(test)]
pub mod test_stores;

pub use condition::{Check, condition};
pub use error::{Error, is_forbidden, is_invalid, is_not_found};
pub use status::manager;

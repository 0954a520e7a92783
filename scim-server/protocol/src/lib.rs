//! SCIM 2.0 (RFC 7643 / RFC 7644) protocol engine for kube-scim.
//!
//! Pure and synchronous: no I/O, no Kubernetes. The HTTP server parses requests into the
//! types here, asks the engine to validate / filter / patch / project, and stores the
//! resulting [`Resource`]s wherever it likes. Every Microsoft Entra ID dialect described in
//! the project notes is accepted on every request.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod discovery;
pub mod error;
pub mod etag;
pub mod filter;
pub mod patch;
pub mod query;
pub mod resource;
pub mod schema;

pub use error::ScimError;
pub use etag::{Precondition, check_if_match, check_if_none_match, etag, parse_etag};
pub use filter::{AttrPath, CompareOp, Filter, IndexHint, Literal};
pub use patch::{MemberRef, MembershipDelta, PatchOp, PatchOpKind, PatchOutcome, PatchRequest};
pub use query::{ListQuery, SortOrder, list_response, project};
pub use resource::{Meta, Resource, validate_create, validate_replace};
pub use schema::ResourceKind;

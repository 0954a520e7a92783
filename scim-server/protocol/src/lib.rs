//! SCIM 2.0 (RFC 7643 / RFC 7644) protocol engine for kube-scim.
//!
//! Pure and synchronous: no I/O, no Kubernetes. The HTTP server parses requests into the
//! types here, asks the engine to validate / filter / patch / project, and stores the
//! resulting [`Resource`]s wherever it likes. Every Microsoft Entra ID dialect described in
//! the project notes is accepted on every request.
//!
//! ```
//! use scim_protocol::{Filter, IndexHint, ListQuery, Meta, PatchRequest, ResourceKind, validate_create};
//! use serde_json::json;
//!
//! // POST /Users
//! let mut user = validate_create(ResourceKind::User, &json!({
//!     "userName": "bjensen@contoso.com", "active": "True",
//!     "emails": [{"type": "work", "value": "bjensen@contoso.com", "primary": true}],
//! }))?;
//! let _password = user.take_password(); // kube-scim drops it
//! user.set_id("2819c223");
//! user.set_meta(&Meta { version: "1".into(), ..Meta::default() });
//!
//! // GET /Users?filter=userName eq "BJENSEN@contoso.com"
//! let q = ListQuery::from_query_pairs([("filter", r#"userName eq "BJENSEN@contoso.com""#)])?;
//! let hints = q.filter.as_ref().map(Filter::index_hints).unwrap_or_default();
//! assert_eq!(hints, vec![IndexHint::UserName("BJENSEN@contoso.com".into())]);
//! let page = q.run(ResourceKind::User, [&user], 100)?;
//! assert_eq!(page["totalResults"], 1);
//!
//! // PATCH /Users/2819c223 (Entra legacy dialect)
//! let req = PatchRequest::parse(&json!({"Operations": [
//!     {"op": "Replace", "path": "active", "value": "False"}]}))?;
//! let outcome = req.apply(&user)?;
//! assert_eq!(outcome.resource.active(), Some(false));
//! # Ok::<(), scim_protocol::ScimError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod discovery;
pub mod error;
pub mod etag;
pub mod filter;
pub mod list;
pub mod patch;
pub mod query;
pub mod resource;
pub mod schema;

pub use error::ScimError;
pub use etag::{Precondition, check_if_match, check_if_none_match, etag, parse_etag};
pub use filter::{AttrPath, CompareOp, Filter, IndexHint, Literal};
pub use list::{Candidate, CandidateSource};
pub use patch::{
    MemberRef, MembershipDelta, PatchOp, PatchOpKind, PatchOutcome, PatchRequest,
    sent_member_displays,
};
pub use query::{ListQuery, SortOrder, list_response, project};
pub use resource::{Meta, Resource, validate_create, validate_replace};
pub use schema::ResourceKind;

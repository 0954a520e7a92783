//! kube-scim operator: reconciles each ScimDirectory into a bearer-token Secret (or reads a
//! bring-your-own one, refused when weak), keyed token verifiers in status, an Ingress route, the Tenant URL and
//! user/group counts. See `operator/README.md` for flags, design and RBAC, and
//! docs/ARCHITECTURE.md for where things go.

pub mod config;
pub mod directory;
pub mod events;
pub mod group_binding;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod route;
pub mod strength;
pub mod token;
pub mod watch;
pub mod webhook;

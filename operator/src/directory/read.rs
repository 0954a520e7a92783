//! What a ScimDirectory reconcile starts from, gathered before anything is decided: the token's
//! Secret and the directory's status as the apiserver has them, the route objects, and the
//! other directories (for the Entra application rule). The counts are not here: they are taken
//! under the status lock, in [`super::status::write`], as the counts refresher writes them too.

use std::sync::Arc;

use kube::ResourceExt;
use kube_scim_crds::ScimDirectory;

use super::context::Context;
use super::{route, token};
use crate::reconcile::Error;

/// Every input of one reconcile.
pub struct Observed {
    pub token: token::Observed,
    pub route: route::Existing,
    /// The other directories of the shared store (the Entra application rule compares them).
    pub directories: Vec<Arc<ScimDirectory>>,
}

/// Reads every input of one reconcile; writes nothing.
pub async fn read(dir: &ScimDirectory, ctx: &Context) -> Result<Observed, Error> {
    dir.namespace().ok_or(Error::Unnamed)?;
    dir.uid().ok_or(Error::Unnamed)?;
    Ok(Observed {
        token: token::read(dir, ctx).await?,
        route: route::read(dir, ctx).await?,
        directories: ctx.directories.state(),
    })
}

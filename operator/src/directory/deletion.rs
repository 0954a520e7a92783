//! The deletion policy. `Delete`: the directory owns its ScimUsers and ScimGroups and the
//! garbage collector removes them with it. `Retain`: a finalizer releases them (drops their
//! ownerReference) before the directory goes. The same finalizer removes a Gateway route's
//! ReferenceGrant, which lives in the SCIM server's namespace and so cannot be owned by the
//! directory. The finalizer exists only where it is needed.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use kube_scim_crds::{DeletionPolicy, ScimDirectory, ScimGroup, ScimUser};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::context::{Context, owned_by};
use crate::reconcile::{Error, is_not_found};

/// Finalizer of directories with `deletionPolicy: Retain` or a ReferenceGrant (the name predates
/// the second use; it is kept so that directories of earlier versions are still released).
pub const FINALIZER: &str = "kubescim.io/retain-users-and-groups";

/// How a reconcile treats the directory's lifecycle.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Through the finalizer helper: it adds the finalizer, then applies, or cleans up when
    /// the directory is being deleted. For `Retain`, and while a finalizer is still present.
    WithFinalizer,
    /// Being deleted without our finalizer: nothing to do, the garbage collector works.
    AwaitGone,
    /// A live `Delete` directory: apply.
    Apply,
}

fn has_finalizer(dir: &ScimDirectory) -> bool {
    dir.finalizers().iter().any(|f| f == FINALIZER)
}

/// The plan for `dir`; `needs_grant`: its route needs a ReferenceGrant in another namespace.
pub fn plan(dir: &ScimDirectory, needs_grant: bool) -> Plan {
    if dir.spec.deletion_policy == DeletionPolicy::Retain || needs_grant || has_finalizer(dir) {
        Plan::WithFinalizer
    } else if dir.metadata.deletion_timestamp.is_some() {
        Plan::AwaitGone
    } else {
        Plan::Apply
    }
}

/// A directory switched from Retain to Delete (or away from a cross-namespace Gateway route)
/// keeps a finalizer it no longer needs: the merge patch that drops it (a compare-and-swap on
/// the resourceVersion), if any. Called after the route part removed an unneeded grant.
pub fn finalizer_removal(dir: &ScimDirectory, needs_grant: bool) -> Option<Value> {
    let live_delete = dir.spec.deletion_policy == DeletionPolicy::Delete
        && !needs_grant
        && dir.metadata.deletion_timestamp.is_none();
    if !live_delete || !has_finalizer(dir) {
        return None;
    }
    let remaining: Vec<&String> = dir
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    Some(json!({"metadata": {
        "resourceVersion": dir.metadata.resource_version,
        "finalizers": remaining,
    }}))
}

/// Carries out [`finalizer_removal`]: `patch` is its answer.
pub async fn remove_finalizer(
    dir: &ScimDirectory,
    ctx: &Context,
    patch: Option<Value>,
) -> Result<(), Error> {
    let Some(patch) = patch else {
        return Ok(());
    };
    let api: Api<ScimDirectory> = ctx.api(&dir.namespace().ok_or(Error::Unnamed)?);
    api.patch(
        &dir.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| Error::conflict_or(e, || "finalizers".into()))?;
    Ok(())
}

/// Before a `Retain` directory goes: removes its ownerReference from each of its ScimUsers and
/// ScimGroups, so the garbage collector keeps them.
pub async fn cleanup(dir: Arc<ScimDirectory>, ctx: &Context) -> Result<Action, Error> {
    super::route::remove_reference_grant(&dir, ctx).await?;
    if dir.spec.deletion_policy != DeletionPolicy::Retain {
        return Ok(Action::await_change());
    }
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let uid = dir.uid().ok_or(Error::Unnamed)?;
    let users = release::<ScimUser>(ctx.api(&ns), &uid).await?;
    let groups = release::<ScimGroup>(ctx.api(&ns), &uid).await?;
    ctx.publish(
        &dir,
        EventType::Normal,
        "Retained",
        "Delete",
        format!("deletionPolicy Retain: released {users} ScimUsers and {groups} ScimGroups from the directory; they stay in namespace {ns}"),
    )
    .await;
    Ok(Action::await_change())
}

/// The merge patch that drops the ownerReference to `uid` from an object it owns, if it does
/// (a compare-and-swap on the resourceVersion).
pub fn release_patch(meta: &ObjectMeta, uid: &str) -> Option<Value> {
    if !owned_by(meta, uid) {
        return None;
    }
    let remaining: Vec<OwnerReference> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.uid != uid)
        .cloned()
        .collect();
    Some(json!({"metadata": {
        "resourceVersion": meta.resource_version,
        "ownerReferences": remaining,
    }}))
}

async fn release<K>(api: Api<K>, uid: &str) -> Result<usize, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut released = 0;
    for item in api.list_metadata(&Default::default()).await? {
        let Some(patch) = release_patch(&item.metadata, uid) else {
            continue;
        };
        let name = item.name_any();
        match api
            .patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => released += 1,
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(Error::conflict_or(e, || format!("{} {name}", K::kind(&())))),
        }
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube_scim_crds::ScimDirectorySpec;

    fn dir(policy: DeletionPolicy, finalizers: &[&str], deleting: bool) -> ScimDirectory {
        let mut d = ScimDirectory::new(
            "d",
            ScimDirectorySpec {
                deletion_policy: policy,
                ..Default::default()
            },
        );
        d.metadata.resource_version = Some("7".into());
        d.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        if deleting {
            d.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        }
        d
    }

    #[test]
    fn the_finalizer_is_used_only_where_retain_needs_it() {
        use DeletionPolicy::{Delete, Retain};
        assert_eq!(plan(&dir(Retain, &[], false), false), Plan::WithFinalizer);
        assert_eq!(
            plan(&dir(Delete, &[FINALIZER], false), false),
            Plan::WithFinalizer
        );
        assert_eq!(plan(&dir(Delete, &[], true), false), Plan::AwaitGone);
        assert_eq!(plan(&dir(Delete, &["other"], false), false), Plan::Apply);
        // A cross-namespace Gateway route's grant needs the finalizer even with Delete.
        assert_eq!(plan(&dir(Delete, &[], false), true), Plan::WithFinalizer);
    }

    #[test]
    fn switching_to_delete_drops_only_our_finalizer() {
        use DeletionPolicy::{Delete, Retain};
        let patch = finalizer_removal(&dir(Delete, &["other", FINALIZER], false), false).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"resourceVersion": "7", "finalizers": ["other"]}})
        );
        assert!(finalizer_removal(&dir(Retain, &[FINALIZER], false), false).is_none());
        assert!(finalizer_removal(&dir(Delete, &[FINALIZER], true), false).is_none());
        assert!(finalizer_removal(&dir(Delete, &[], false), false).is_none());
        assert!(finalizer_removal(&dir(Delete, &[FINALIZER], false), true).is_none());
    }

    #[test]
    fn release_drops_only_the_directory_owner() {
        let owner = |uid: &str| OwnerReference {
            uid: uid.into(),
            ..Default::default()
        };
        let meta = ObjectMeta {
            resource_version: Some("3".into()),
            owner_references: Some(vec![owner("dir"), owner("other")]),
            ..Default::default()
        };
        let patch = release_patch(&meta, "dir").unwrap();
        assert_eq!(patch["metadata"]["ownerReferences"][0]["uid"], "other");
        assert_eq!(
            patch["metadata"]["ownerReferences"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(release_patch(&meta, "nobody").is_none());
    }
}

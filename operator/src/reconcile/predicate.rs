//! The predicate of every controller's watch: which changes of its object call for a reconcile
//! (not its own status write), as a hash for `WatchStreamExt::predicate_filter`.

use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// A hash of `key` (the fields of an object whose change calls for a reconcile), or `None`
/// when it does not serialize (then every change passes).
pub fn hash(key: &impl Serialize) -> Option<u64> {
    let text = serde_json::to_string(key).ok()?;
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    Some(hasher.finish())
}

/// What of every object's metadata calls for a reconcile: its identity, a spec change, and the
/// finalizer and deletion steps. A part of each controller's key.
pub fn lifecycle(meta: &ObjectMeta) -> impl Serialize + '_ {
    (
        &meta.uid,
        meta.generation,
        &meta.finalizers,
        &meta.deletion_timestamp,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_hashes_the_same_and_another_one_differently() {
        assert_eq!(hash(&("uid", Some(1))), hash(&("uid", Some(1))));
        assert_ne!(hash(&("uid", Some(1))), hash(&("uid", Some(2))));
        assert!(hash(&("uid", Some(1))).is_some());
    }
}

//! Splitting a large group's subjects over several bindings, and the bindings' names. No I/O.

use k8s_openapi::api::rbac::v1::Subject;
use sha2::{Digest, Sha256};

/// Subjects of one RoleBinding are kept below this many bytes (estimated as JSON). etcd refuses
/// objects above 1.5 MiB; the margin covers metadata, managedFields and long names.
pub const BINDING_BUDGET_BYTES: usize = 256 * 1024;

/// At most this many bindings per target (1024 x 256 KiB of subjects is far beyond any group).
const MAX_PARTS: usize = 1024;

/// Estimated JSON size of a subject in a binding.
fn subject_bytes(subject: &Subject) -> usize {
    subject.name.len() + subject.kind.len() + 64
}

/// Splits sorted subjects into as few parts as keep each under [`BINDING_BUDGET_BYTES`]. A
/// subject's part is chosen by a hash of its name (the number of parts is a power of two), so
/// adding or removing one member rewrites only the one binding that holds it. Always at least
/// one part (an empty group keeps one binding without subjects).
pub fn split(subjects: &[Subject]) -> Vec<Vec<Subject>> {
    let total: usize = subjects.iter().map(subject_bytes).sum();
    let mut parts = 1;
    while parts < MAX_PARTS && parts * BINDING_BUDGET_BYTES < total {
        parts *= 2;
    }
    loop {
        let mut buckets: Vec<Vec<Subject>> = vec![Vec::new(); parts];
        let mut sizes = vec![0usize; parts];
        for subject in subjects {
            let digest = Sha256::digest(subject.name.as_bytes());
            let hash = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
            let index = (hash % parts as u64) as usize;
            sizes[index] += subject_bytes(subject);
            buckets[index].push(subject.clone());
        }
        if parts >= MAX_PARTS || sizes.iter().all(|s| *s <= BINDING_BUDGET_BYTES) {
            return buckets;
        }
        parts *= 2;
    }
}

/// `kube-scim:<namespace>:<name>`: colons cannot occur in namespace or object names, so two
/// ScimGroupBindings never share a binding name; too long a name is cut and made unique by a
/// hash.
pub fn base_name(namespace: &str, name: &str) -> String {
    let full = format!("kube-scim:{namespace}:{name}");
    if full.len() <= 200 {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", &full[..180])
}

/// Name of part `index` of a split binding: the base name, then `:1`, `:2`, ...
pub fn part_name(base: &str, index: usize) -> String {
    if index == 0 {
        base.to_string()
    } else {
        format!("{base}:{index}")
    }
}

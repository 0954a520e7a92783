//! The checked-in CRD YAML must be exactly what the Rust types generate.

#[test]
fn checked_in_crd_yaml_matches_the_rust_types() {
    let generated = kube_scim_crdgen::render();
    for path in kube_scim_crdgen::checked_in_paths() {
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{} differs from the CRDs generated from crds/src/: run `make crds` and commit the result",
            path.display()
        );
    }
}

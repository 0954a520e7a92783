//! The checked-in CRD YAML must be exactly what the Rust types generate.

#[test]
fn checked_in_crd_yaml_matches_the_rust_types() {
    let generated = kube_scim_crds::yaml::render();
    for path in kube_scim_crds::yaml::checked_in_paths() {
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{} differs from the CRDs generated from crds/src/lib.rs: run `make crds` and commit the result",
            path.display()
        );
    }
}

#[test]
fn user_and_group_crds_have_no_status_subresource_but_directory_webhook_and_group_binding_do() {
    for crd in kube_scim_crds::crds() {
        let has_status = crd.spec.versions[0]
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some());
        let kind = crd.spec.names.kind.as_str();
        assert_eq!(
            has_status,
            kind == "ScimDirectory" || kind == "ScimWebhook" || kind == "ScimGroupBinding",
            "{kind}: status subresource"
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["scim".to_string()][..]),
            "{kind}"
        );
    }
}

//! The CRDs as `crds()` returns them (the YAML drift test is crds/crdgen/tests/drift.rs).

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

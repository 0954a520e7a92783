//! What a platform team reads before installing (issue 32 item 4): the CHANGELOG names no
//! version that has no tag, README and the chart README install the published chart by version
//! and verify its signature, and SECURITY.md says how to report a vulnerability.

use std::process::Command;

use kube_scim_tests::repo_root;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_changelog_names_only_tagged_versions() {
    let changelog = read("CHANGELOG.md");
    assert!(changelog.contains("\n## [Unreleased]\n"), "no Unreleased");
    let tags = Command::new("git")
        .current_dir(repo_root())
        .args(["tag", "--list", "v*"])
        .output()
        .expect("git tag");
    let tags = String::from_utf8(tags.stdout).unwrap();
    for line in changelog.lines() {
        let Some(heading) = line.strip_prefix("## [") else {
            continue;
        };
        let version = heading.split(']').next().unwrap();
        if version == "Unreleased" {
            continue;
        }
        assert!(
            tags.lines().any(|t| t == format!("v{version}")),
            "CHANGELOG.md has a section for {version}, but there is no tag v{version}"
        );
    }
    for line in changelog.lines().filter(|l| l.starts_with('[')) {
        if let Some((name, _)) = line.split_once("]: ")
            && name != "[Unreleased"
        {
            let version = name.trim_start_matches('[');
            assert!(
                tags.lines().any(|t| t == format!("v{version}")),
                "CHANGELOG.md links the release {version}, which has no tag"
            );
        }
    }
}

#[test]
fn readmes_install_the_published_chart_and_verify_signatures() {
    for path in ["README.md", "charts/kube-scim/README.md"] {
        let text = read(path);
        for needle in [
            "helm install kube-scim oci://ghcr.io/kube-scim/charts/kube-scim --version",
            "cosign verify",
            "--certificate-oidc-issuer https://token.actions.githubusercontent.com",
            ".github/workflows/release.yaml@refs/tags/v",
            "gh attestation verify",
        ] {
            assert!(text.contains(needle), "{path} lacks `{needle}`");
        }
    }
}

#[test]
fn security_policy_says_where_to_report() {
    let text = read("SECURITY.md");
    assert!(
        text.contains("https://github.com/kube-scim/kube-scim/security/advisories/new"),
        "{text}"
    );
}

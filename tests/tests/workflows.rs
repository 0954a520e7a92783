//! The GitHub Actions workflows (`.github/workflows`): every file passes the pinned actionlint
//! (with shellcheck on the `run:` scripts when `shellcheck` is on PATH; without it, that check is
//! switched off explicitly rather than skipped silently), every third-party action is pinned to a
//! commit, and the release workflow publishes what the README promises: both images from
//! images/Dockerfile for two platforms, signed with cosign, and the chart as a signed OCI artifact.

use std::path::{Path, PathBuf};
use std::process::Command;

use kube_scim_tests::{actionlint, repo_root};
use serde_norway::Value;

fn workflow_files() -> Vec<PathBuf> {
    let dir = repo_root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflow in {}", dir.display());
    files
}

fn load(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The steps of one job of a workflow (none for a job that calls a workflow of this repository).
fn steps<'a>(workflow: &'a Value, job: &str) -> &'a [Value] {
    if workflow["jobs"][job]["uses"]
        .as_str()
        .is_some_and(|used| used.starts_with("./.github/workflows/"))
    {
        return &[];
    }
    workflow["jobs"][job]["steps"]
        .as_sequence()
        .unwrap_or_else(|| panic!("job {job} has no steps"))
}

/// Every `run:` script of a job, one after the other.
fn scripts(workflow: &Value, job: &str) -> String {
    steps(workflow, job)
        .iter()
        .filter_map(|step| step["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `uses:` of a job.
fn uses(workflow: &Value, job: &str) -> Vec<String> {
    steps(workflow, job)
        .iter()
        .filter_map(|step| step["uses"].as_str().map(str::to_owned))
        .collect()
}

fn assert_contains(haystack: &str, needle: &str, what: &str) {
    assert!(
        haystack.contains(needle),
        "{what} lacks `{needle}`:\n{haystack}"
    );
}

#[test]
fn workflows_pass_actionlint() {
    let mut cmd = Command::new(actionlint().expect("actionlint builds"));
    cmd.current_dir(repo_root()).arg("-no-color");
    if !on_path("shellcheck") {
        eprintln!("shellcheck is not on PATH: actionlint runs without it");
        cmd.arg("-shellcheck=");
    }
    let out = cmd
        .args(workflow_files())
        .output()
        .expect("actionlint starts");
    assert!(
        out.status.success(),
        "actionlint failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn third_party_actions_are_pinned_to_commits() {
    for path in workflow_files() {
        let workflow = load(&path);
        let jobs = workflow["jobs"].as_mapping().expect("jobs");
        for (job, _) in jobs {
            let job = job.as_str().expect("job name");
            for action in uses(&workflow, job) {
                if action.starts_with("./") {
                    continue;
                }
                let (_, reference) = action
                    .split_once('@')
                    .unwrap_or_else(|| panic!("{}: {action} has no ref", path.display()));
                assert!(
                    reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{}: job {job} uses {action}, not pinned to a full commit SHA",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn release_publishes_signed_multi_arch_images_and_the_chart() {
    let root = repo_root();
    let release = load(&root.join(".github/workflows/release.yaml"));

    let tags = &release["on"]["push"]["tags"];
    assert!(
        tags.as_sequence()
            .is_some_and(|tags| tags.iter().any(|tag| tag.as_str() == Some("v*"))),
        "release runs on v* tags: {tags:?}"
    );
    for (permission, level) in [
        ("contents", "read"),
        ("packages", "write"),
        ("id-token", "write"),
    ] {
        assert_eq!(
            release["permissions"][permission].as_str(),
            Some(level),
            "permissions.{permission}"
        );
    }
    assert_eq!(
        release["jobs"]["images"]["needs"].as_str(),
        Some("binaries")
    );
    assert_eq!(release["jobs"]["chart"]["needs"].as_str(), Some("images"));

    // Static binaries for both architectures.
    let matrix = release["jobs"]["binaries"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .expect("binaries matrix");
    for (arch, target) in [
        ("amd64", "x86_64-unknown-linux-musl"),
        ("arm64", "aarch64-unknown-linux-musl"),
    ] {
        assert!(
            matrix
                .iter()
                .any(|entry| entry["arch"].as_str() == Some(arch)
                    && entry["target"].as_str() == Some(target)),
            "binaries matrix lacks {arch} ({target}): {matrix:?}"
        );
    }
    let build = scripts(&release, "binaries");
    assert_contains(&build, "cargo build --release --locked", "binaries job");
    assert_contains(
        &build,
        "-p kube-scim-operator -p kube-scim-server",
        "binaries job",
    );

    // Both images from images/Dockerfile (its stages are the targets), two platforms, signed.
    let dockerfile = std::fs::read_to_string(root.join("images/Dockerfile")).expect("Dockerfile");
    let images = scripts(&release, "images");
    assert_contains(&images, "bash images/build.sh --context ctx", "images job");
    assert_contains(&images, "-f images/Dockerfile", "images job");
    assert_contains(&images, "--target", "images job");
    assert_contains(&images, "--platform linux/amd64,linux/arm64", "images job");
    assert_contains(&images, "--push", "images job");
    assert_contains(&images, "--metadata-file", "images job");
    assert_contains(&images, "cosign sign --yes", "images job");
    for target in ["kube-scim-operator", "kube-scim-server"] {
        assert_contains(&images, target, "images job");
        assert_contains(
            &dockerfile,
            &format!("FROM base AS {target}\n"),
            "images/Dockerfile",
        );
    }
    let image_actions = uses(&release, "images");
    for action in ["docker/setup-buildx-action@", "sigstore/cosign-installer@"] {
        assert!(
            image_actions.iter().any(|used| used.starts_with(action)),
            "images job does not use {action}: {image_actions:?}"
        );
    }

    // The chart as a signed OCI artifact, versioned by the tag.
    let chart = scripts(&release, "chart");
    assert_contains(&chart, "helm package charts/kube-scim", "chart job");
    assert_contains(&chart, "--app-version", "chart job");
    assert_contains(&chart, "helm registry login ghcr.io", "chart job");
    assert_contains(&chart, "helm push", "chart job");
    assert_contains(&chart, "oci://", "chart job");
    assert_contains(&chart, "cosign sign --yes", "chart job");
    assert!(
        uses(&release, "chart")
            .iter()
            .any(|used| used.starts_with("sigstore/cosign-installer@")),
        "chart job does not install cosign"
    );
}

#[test]
fn release_is_gated_on_ci_attests_sboms_and_provenance_and_publishes_the_crate() {
    let root = repo_root();
    let release = load(&root.join(".github/workflows/release.yaml"));
    let ci = load(&root.join(".github/workflows/ci.yaml"));

    // CI (`make test`) runs on the tag's commit first; nothing is built before it passes.
    assert_eq!(
        release["jobs"]["ci"]["uses"].as_str(),
        Some("./.github/workflows/ci.yaml")
    );
    assert!(
        ci["on"].get("workflow_call").is_some(),
        "ci.yaml must be callable"
    );
    assert_eq!(release["jobs"]["binaries"]["needs"].as_str(), Some("ci"));
    assert_eq!(
        release["permissions"]["attestations"].as_str(),
        Some("write")
    );
    assert_contains(
        &scripts(&release, "binaries"),
        "cargo build --release",
        "binaries job",
    );
    assert_eq!(
        release["jobs"]["binaries"]["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|step| step["name"].as_str() == Some("Build"))
            .and_then(|step| step["env"]["KUBE_SCIM_GIT_COMMIT"].as_str()),
        Some("${{ github.sha }}"),
        "build_info's git_commit"
    );

    // An SBOM and build provenance for both images and the chart, pushed to the registry.
    for (job, subjects) in [
        ("images", &["kube-scim-operator", "kube-scim-server"][..]),
        ("chart", &["charts/kube-scim"][..]),
    ] {
        let steps = steps(&release, job);
        for subject in subjects {
            for action in ["actions/attest-sbom@", "actions/attest-build-provenance@"] {
                assert!(
                    steps.iter().any(|step| {
                        step["uses"].as_str().is_some_and(|u| u.starts_with(action))
                            && step["with"]["subject-name"]
                                .as_str()
                                .is_some_and(|n| n.ends_with(&format!("/{subject}")))
                            && step["with"]["push-to-registry"].as_bool() == Some(true)
                    }),
                    "{job}: no {action} step for {subject}"
                );
            }
        }
    }
    assert_contains(&scripts(&release, "images"), "--sbom=true", "images job");
    assert_contains(
        &scripts(&release, "images"),
        "--provenance=mode=max",
        "images job",
    );

    // The CRD crate, after the images and the chart.
    assert_eq!(release["jobs"]["crate"]["needs"].as_str(), Some("chart"));
    assert_contains(
        &scripts(&release, "crate"),
        "cargo publish --locked -p kube-scim-crds",
        "crate job",
    );
}

#[test]
fn dependabot_updates_every_pinned_ecosystem() {
    let root = repo_root();
    let config = load(&root.join(".github/dependabot.yml"));
    let updates = config["updates"].as_sequence().expect("updates");
    let covered = |ecosystem: &str, dir: &str| {
        updates.iter().any(|u| {
            u["package-ecosystem"].as_str() == Some(ecosystem)
                && (u["directory"].as_str() == Some(dir)
                    || u["directories"]
                        .as_sequence()
                        .is_some_and(|ds| ds.iter().any(|d| d.as_str() == Some(dir))))
        })
    };
    assert!(covered("github-actions", "/"), "github-actions");
    // Every lockfile or module of the repository.
    let files = Command::new("git")
        .current_dir(&root)
        .args(["ls-files", "*Cargo.lock", "*go.mod", "*requirements.txt"])
        .output()
        .expect("git ls-files");
    let files = String::from_utf8(files.stdout).unwrap();
    assert!(files.contains("Cargo.lock"), "{files}");
    for file in files.lines() {
        let (dir, name) = file.rsplit_once('/').unwrap_or(("", file));
        let ecosystem = match name {
            "Cargo.lock" => "cargo",
            "go.mod" => "gomod",
            _ => "pip",
        };
        assert!(
            covered(ecosystem, &format!("/{dir}")),
            "{file}: no {ecosystem} update for /{dir} in .github/dependabot.yml"
        );
    }
}

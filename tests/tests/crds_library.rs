//! `kube-scim-crds` is a library another application can depend on (issue 32 item 2): a tiny
//! consumer crate outside this workspace builds against a *different* k8s-openapi version feature
//! than the workspace's binaries pick (k8s-openapi allows exactly one per build, so a library that
//! picked one would fail here), uses `ScimUser`, and its dependency tree has no kube client,
//! runtime, TLS stack or YAML serializer.
//!
//! The consumer depends on the crate as `cargo package` packs it, i.e. what crates.io would
//! serve: this build is the publish check too (`make publish-check` is the same check through
//! cargo's own verification build, which `make test` does not repeat).
//!
//! Offline, from the local registry cache, with the workspace's Cargo.lock as the starting point;
//! the consumer's target dir lives under target/ so later runs reuse it.

use std::path::{Path, PathBuf};
use std::process::Command;

use kube_scim_tests::repo_root;

const CONSUMER_MAIN: &str = r#"
use kube::Resource;
use kube_scim_crds::ScimUser;

fn main() {
    let user: ScimUser = serde_json::from_value(serde_json::json!({
        "apiVersion": "kubescim.io/v1alpha1",
        "kind": "ScimUser",
        "metadata": {"name": "u-1", "namespace": "team-a"},
        "spec": {"directoryRef": {"name": "entra"}},
        "status": {"id": "1", "userName": "ada@example.com", "active": true}
    }))
    .expect("a ScimUser parses");
    let status = user.status.as_ref().expect("status");
    println!(
        "{} {} {} crds={}",
        ScimUser::api_version(&()),
        ScimUser::kind(&()),
        status.user_name,
        kube_scim_crds::crds().len()
    );
}
"#;

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // Settings of this workspace's build must not leak into the consumer's.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "K8S_OPENAPI_ENABLED_VERSION",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_consumer(dir: &Path, crds: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            r#"[package]
name = "crds-consumer"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
kube-scim-crds = {{ path = "{crds}" }}
# The application's choice, not the library's; the workspace's binaries pick v1_36.
k8s-openapi = {{ version = "0.29", features = ["v1_33"] }}
kube = {{ version = "5.0", default-features = false, features = ["derive"] }}
serde_json = "1"

# Not a member of the kube-scim workspace that encloses target/.
[workspace]
"#,
            crds = crds.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), CONSUMER_MAIN).unwrap();
    // Same versions as the workspace, so that the offline build finds them in the cache.
    std::fs::copy(repo_root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
}

/// `kube-scim-crds` packed by `cargo package` and unpacked into `dir`; returns the crate's root.
fn packaged_crds(dir: &Path) -> PathBuf {
    let mut package = cargo();
    package.current_dir(repo_root()).args([
        "package",
        "--offline",
        "--no-verify",
        "--allow-dirty",
        "-p",
        "kube-scim-crds",
        "--target-dir",
    ]);
    package.arg(dir.join("target"));
    run(package, "cargo package -p kube-scim-crds");
    let packed = std::fs::read_dir(dir.join("target/package"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "crate"))
        .expect("cargo package wrote a .crate");
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let mut untar = Command::new("tar");
    untar.arg("-xzf").arg(&packed).arg("-C").arg(&unpacked);
    run(untar, "unpacking the .crate");
    let root = unpacked.join(packed.file_stem().unwrap());
    assert!(
        root.join("Cargo.toml").is_file(),
        "{} holds no Cargo.toml",
        root.display()
    );
    root
}

#[test]
fn an_application_builds_against_another_k8s_openapi_version_and_uses_scim_user() {
    let work = repo_root().join("target/crds-consumer");
    let top = work.join(format!("crate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&top);
    let crds = packaged_crds(&top.join("package"));
    let dir = top.join("consumer");
    write_consumer(&dir, &crds);

    let mut build = cargo();
    build
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", work.join("target"))
        .args(["run", "--offline", "--quiet"]);
    let output = run(build, "building and running the consumer crate");
    assert_eq!(
        output.trim(),
        "kubescim.io/v1alpha1 ScimUser ada@example.com crds=5",
        "consumer output"
    );

    let mut tree = cargo();
    tree.current_dir(&dir).args([
        "tree",
        "--offline",
        "-e",
        "normal,build",
        "--prefix",
        "none",
        "--format",
        "{p} {f}",
    ]);
    let tree = run(tree, "cargo tree of the consumer");
    let _ = std::fs::remove_dir_all(&top);
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        assert!(
            ![
                "kube-client",
                "kube-runtime",
                "rustls",
                "hyper",
                "tokio",
                "serde_yaml",
                "serde_norway",
                "openssl",
                "k8s-openapi-codegen-common",
            ]
            .contains(&name),
            "kube-scim-crds pulls {line} into an application:\n{tree}"
        );
        if name == "k8s-openapi" {
            assert!(
                line.contains("v1_33") && !line.contains("v1_36"),
                "k8s-openapi features: {line}"
            );
        }
    }
    assert!(
        tree.lines().any(|l| l.starts_with("kube-scim-crds ")),
        "{tree}"
    );
}

//! Writes the generated CRD YAML. `cargo run -p kube-scim-crds --bin crdgen` rewrites
//! `crds/yaml/kube-scim-crds.yaml`; `--check` fails instead when the file differs.

use std::process::ExitCode;

fn main() -> ExitCode {
    let path = kube_scim_crds::yaml::checked_in_path();
    let generated = kube_scim_crds::yaml::render();
    if std::env::args().any(|a| a == "--check") {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != generated {
            eprintln!("{} is out of date: run `make crds`", path.display());
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::write(&path, generated) {
        eprintln!("cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {}", path.display());
    ExitCode::SUCCESS
}

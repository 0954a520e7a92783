//! Writes the generated CRD YAML. `make crds` (`cargo run -p kube-scim-crdgen`) rewrites
//! `crds/yaml/kube-scim-crds.yaml` and the Helm chart's copy; `--check` fails instead when a
//! file differs.

use std::process::ExitCode;

fn main() -> ExitCode {
    let generated = kube_scim_crdgen::render();
    let check = std::env::args().any(|a| a == "--check");
    let mut status = ExitCode::SUCCESS;
    for path in kube_scim_crdgen::checked_in_paths() {
        if check {
            if std::fs::read_to_string(&path).unwrap_or_default() != generated {
                eprintln!("{} is out of date: run `make crds`", path.display());
                status = ExitCode::FAILURE;
            }
        } else if let Err(e) = std::fs::write(&path, &generated) {
            eprintln!("cannot write {}: {e}", path.display());
            status = ExitCode::FAILURE;
        } else {
            println!("wrote {}", path.display());
        }
    }
    status
}

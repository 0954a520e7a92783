//! kube-scim operator (reconciliation comes with the operator issue).

fn main() {
    eprintln!("kube-scim-operator: not implemented yet");
    std::process::exit(2);
}

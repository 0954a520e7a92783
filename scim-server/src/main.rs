//! kube-scim SCIM server (HTTP and storage come with the scim-server issue).

fn main() {
    eprintln!("kube-scim-server: not implemented yet");
    std::process::exit(2);
}

//! Certificates of a test plane: its CA, the apiserver's serving certificate, the admin's and
//! each component's client certificate, and the ServiceAccount signing key, made per run.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::ADMIN_USER;

/// The `kubernetes` Service's address (the first of [`crate::SERVICE_CIDR`]).
pub(crate) const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

/// File name of the plane's CA certificate in its directory.
pub(crate) const CA_FILE: &str = "ca.crt";

/// A new CA named `common_name`: its issuer and its certificate as PEM.
fn certificate_authority(common_name: &str) -> anyhow::Result<(Issuer<'static, KeyPair>, String)> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    Ok((Issuer::new(ca_params, ca_key), ca_cert.pem()))
}

/// A CA for the test's own TLS endpoints (a route controller's https listeners): what an
/// organisation's issuer would be, made per run.
pub struct WebCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM), for clients to trust.
    pub certificate: String,
}

impl WebCa {
    pub fn new() -> anyhow::Result<WebCa> {
        let (issuer, certificate) = certificate_authority("kube-scim test web CA")?;
        Ok(WebCa {
            issuer,
            certificate,
        })
    }

    /// A serving certificate for `hosts`: (certificate PEM, private key PEM).
    pub fn serving(&self, hosts: &[&str]) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(DnType::CommonName, hosts.first().copied().unwrap_or("test"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Certificates of one plane, written as PEM files into its directory.
pub(crate) struct Pki {
    issuer: Issuer<'static, KeyPair>,
    pub(crate) admin_cert: PathBuf,
    pub(crate) admin_key: PathBuf,
    pub(crate) controller_manager_cert: PathBuf,
    pub(crate) controller_manager_key: PathBuf,
}

impl Pki {
    /// Certificates for a plane whose apiserver listens on `address`.
    pub(crate) fn write(dir: &Path, address: IpAddr) -> anyhow::Result<Pki> {
        let (issuer, ca_pem) = certificate_authority("kube-scim test CA")?;

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
        ])?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        serving
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(KUBERNETES_SERVICE_IP)));
        if address != IpAddr::V4(Ipv4Addr::LOCALHOST) {
            serving.subject_alt_names.push(SanType::IpAddress(address));
        }
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let admin_key = KeyPair::generate()?;
        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin
            .distinguished_name
            .push(DnType::CommonName, ADMIN_USER);
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &issuer)?;

        // kube-controller-manager has its own identity, and its controllers use ServiceAccount
        // credentials, as in a real cluster: the garbage collector deletes as
        // system:serviceaccount:kube-system:generic-garbage-collector.
        let kcm_key = KeyPair::generate()?;
        let mut kcm = CertificateParams::new(Vec::<String>::new())?;
        kcm.distinguished_name
            .push(DnType::CommonName, "system:kube-controller-manager");
        kcm.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let kcm_cert = kcm.signed_by(&kcm_key, &issuer)?;

        let sa_key = KeyPair::generate()?;

        let write = |name: &str, pem: String| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, pem)?;
            Ok(path)
        };
        write(CA_FILE, ca_pem)?;
        let pki = Pki {
            issuer,
            admin_cert: write("admin.crt", admin_cert.pem())?,
            admin_key: write("admin.key", admin_key.serialize_pem())?,
            controller_manager_cert: write("kcm.crt", kcm_cert.pem())?,
            controller_manager_key: write("kcm.key", kcm_key.serialize_pem())?,
        };
        write("apiserver.crt", serving_cert.pem())?;
        write("apiserver.key", serving_key.serialize_pem())?;
        write("sa.key", sa_key.serialize_pem())?;
        write("sa.pub", sa_key.public_key_pem())?;
        Ok(pki)
    }

    /// A client certificate for `user` (CN) in `group` (O), written as `<name>.crt`/`.key`.
    pub(crate) fn client_certificate(
        &self,
        dir: &Path,
        name: &str,
        user: &str,
        group: Option<&str>,
    ) -> anyhow::Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        if let Some(group) = group {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        let (cert_path, key_path) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        Ok((cert_path, key_path))
    }
}

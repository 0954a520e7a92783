//! The process's rustls crypto provider. kube's client uses ring; reqwest (0.13) takes the
//! process default and would otherwise fall back to aws-lc, a second TLS crypto library (one
//! that Debian's musl-gcc cannot build), so it is built without one and every process
//! installs ring before its first HTTP client.

/// Makes ring the process's rustls provider unless one is installed already. Call it before
/// building a `reqwest::Client`: without a provider, building one panics.
pub fn install_crypto_provider() {
    // Err only means a provider is installed already (ring: it is the only one linked).
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn ring_is_the_process_provider() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("installed");
        let ring = rustls::crypto::ring::default_provider();
        assert_eq!(
            provider.cipher_suites.len(),
            ring.cipher_suites.len(),
            "the installed provider is ring's"
        );
    }
}

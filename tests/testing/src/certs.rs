//! Certificates for TLS test servers, generated at test time with `rcgen`.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its private key, in PEM, with the files they were written to.
#[derive(Clone)]
pub struct CertKey {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
    /// File holding [`cert_pem`](Self::cert_pem).
    pub cert_file: PathBuf,
    /// File holding [`key_pem`](Self::key_pem).
    pub key_file: PathBuf,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// The certificates of one TLS test server, written to its directory:
///
/// * [`ca`](Self::ca): the test CA, which signed the server and client certificates (the
///   server's `--tls-ca-cert-file`, and the CA a client must trust);
/// * [`server`](Self::server): the server's certificate, for `127.0.0.1` and `localhost`;
/// * [`client`](Self::client): a client certificate signed by the CA (mutual TLS);
/// * [`other_ca`](Self::other_ca) and [`rogue_client`](Self::rogue_client): a second CA that
///   signed nothing the server knows, and a client certificate it signed (the wrong CA on either
///   side).
#[derive(Debug, Clone)]
pub struct TestCerts {
    /// The CA that signed the server and client certificates (its key is not kept on disk).
    pub ca: CertKey,
    /// The server certificate (`127.0.0.1`, `localhost`).
    pub server: CertKey,
    /// A client certificate signed by [`ca`](Self::ca).
    pub client: CertKey,
    /// A CA unrelated to the server.
    pub other_ca: CertKey,
    /// A client certificate signed by [`other_ca`](Self::other_ca): the server rejects it.
    pub rogue_client: CertKey,
}

impl TestCerts {
    /// Generates the certificates (ECDSA P-256) and writes them into `dir`.
    ///
    /// # Panics
    /// If generation or writing fails.
    pub fn generate(dir: &Path) -> TestCerts {
        TestCerts::generate_for(dir, &["127.0.0.1", "localhost"])
    }

    /// Like [`generate`](Self::generate), with a server certificate naming `names` only (IP
    /// addresses or DNS names), e.g. `&["localhost"]` for a server whose certificate does not
    /// name its IP address.
    ///
    /// # Panics
    /// If generation or writing fails, or `names` is empty.
    pub fn generate_for(dir: &Path, names: &[&str]) -> TestCerts {
        assert!(
            !names.is_empty(),
            "a server certificate names at least one host"
        );
        let (ca, ca_issuer) = new_ca("cache-testing CA", dir, "ca");
        let (other_ca, other_issuer) = new_ca("cache-testing other CA", dir, "other-ca");
        let server = new_leaf(
            &ca_issuer,
            names[0],
            names,
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                // Redis also presents this certificate as a client (replication, cluster bus).
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            dir,
            "server",
        );
        let client = new_leaf(
            &ca_issuer,
            "cache-client",
            &[],
            &[ExtendedKeyUsagePurpose::ClientAuth],
            dir,
            "client",
        );
        let rogue_client = new_leaf(
            &other_issuer,
            "rogue-client",
            &[],
            &[ExtendedKeyUsagePurpose::ClientAuth],
            dir,
            "rogue-client",
        );
        TestCerts {
            ca,
            server,
            client,
            other_ca,
            rogue_client,
        }
    }
}

fn new_ca(name: &str, dir: &Path, file: &str) -> (CertKey, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new())
        .unwrap_or_else(|e| panic!("CA parameters: {e}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("CA key: {e}"));
    let cert = params
        .self_signed(&key)
        .unwrap_or_else(|e| panic!("CA certificate: {e}"));
    let out = write(dir, file, cert.pem(), key.serialize_pem());
    (out, Issuer::new(params, key))
}

fn new_leaf(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    names: &[&str],
    usages: &[ExtendedKeyUsagePurpose],
    dir: &Path,
    file: &str,
) -> CertKey {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params =
        CertificateParams::new(names).unwrap_or_else(|e| panic!("{file} parameters: {e}"));
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages.to_vec();
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("{file} key: {e}"));
    let cert = params
        .signed_by(&key, issuer)
        .unwrap_or_else(|e| panic!("{file} certificate: {e}"));
    write(dir, file, cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, cert_pem: String, key_pem: String) -> CertKey {
    let cert_file = dir.join(format!("{name}.crt"));
    let key_file = dir.join(format!("{name}.key"));
    fs::write(&cert_file, &cert_pem)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", cert_file.display()));
    fs::write(&key_file, &key_pem)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", key_file.display()));
    CertKey {
        cert_pem,
        key_pem,
        cert_file,
        key_file,
    }
}

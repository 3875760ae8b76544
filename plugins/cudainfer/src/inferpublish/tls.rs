//! The rustls client configuration of `mqtts://` locations: the CA file's
//! certificates, else the system's roots; and what to say when the broker's
//! certificate fails verification.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::CertificateError;

#[derive(Debug)]
pub enum TlsError {
    CaFile { path: PathBuf, reason: String },
    NoRoots(String),
    Config(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::CaFile { path, reason } => write!(
                f,
                "cannot use the CA file '{}': {reason}: set ca-file to a PEM file of the broker's CA certificate(s)",
                path.display()
            ),
            TlsError::NoRoots(why) => write!(
                f,
                "no CA certificates for mqtts:// (the system's could not be loaded: {why}): set ca-file"
            ),
            TlsError::Config(e) => write!(f, "TLS set-up failed: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_err = |reason: String| TlsError::CaFile {
                path: path.to_path_buf(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_err(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ca_err(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_err("it holds no PEM certificate".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "none found".into());
                return Err(TlsError::NoRoots(why));
            }
        }
    }
    // ring rather than rustls' default aws-lc-rs: no cmake-built C library.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A broker certificate that failed verification, said in terms of what
/// to change: rustls names the check ("UnknownIssuer"), not the setting.
pub struct Rejected<'a> {
    pub error: &'a CertificateError,
    /// The element's ca-file; none: the system's roots were used.
    pub ca_file: Option<&'a Path>,
}

impl fmt::Display for Rejected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CertificateError as E;
        write!(f, "the broker's TLS certificate was rejected (")?;
        match self.error {
            // Debug: these variants' Display is their bare name.
            E::UnknownIssuer | E::BadSignature => write!(f, "{:?}", self.error)?,
            other => write!(f, "{other}")?,
        }
        write!(f, "): ")?;
        match (self.error, self.ca_file) {
            (E::UnknownIssuer | E::BadSignature, Some(path)) => write!(
                f,
                "no CA certificate in ca-file '{}' signed it: set ca-file to a PEM file of the CA that \
                 signed the broker's certificate",
                path.display()
            ),
            (E::UnknownIssuer | E::BadSignature, None) => write!(
                f,
                "none of the system's CA certificates signed it (ca-file is unset): set ca-file to a PEM \
                 file of the CA that signed the broker's certificate"
            ),
            (E::NotValidForName | E::NotValidForNameContext { .. }, _) => write!(
                f,
                "it is not issued for the location's host: use a host name or address the certificate names"
            ),
            (
                E::Expired | E::ExpiredContext { .. } | E::NotValidYet | E::NotValidYetContext { .. },
                _,
            ) => write!(
                f,
                "it is outside its validity period: renew the broker's certificate or check this machine's clock"
            ),
            _ => write!(f, "check the broker's certificate and ca-file"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(error: CertificateError, ca_file: Option<&Path>) -> String {
        Rejected {
            error: &error,
            ca_file,
        }
        .to_string()
    }

    #[test]
    fn rejections_name_the_check_and_what_to_set() {
        let ca = Path::new("/etc/broker-ca.pem");
        assert_eq!(
            said(CertificateError::UnknownIssuer, Some(ca)),
            "the broker's TLS certificate was rejected (UnknownIssuer): no CA certificate in ca-file \
             '/etc/broker-ca.pem' signed it: set ca-file to a PEM file of the CA that signed the broker's \
             certificate"
        );
        assert!(said(CertificateError::BadSignature, None).contains(
            "(BadSignature): none of the system's CA certificates signed it (ca-file is unset)"
        ));
        assert!(said(CertificateError::NotValidForName, Some(ca))
            .ends_with("it is not issued for the location's host: use a host name or address the certificate names"));
        assert!(said(CertificateError::Expired, None).contains("renew the broker's certificate"));
        assert!(said(CertificateError::Revoked, Some(ca))
            .ends_with("check the broker's certificate and ca-file"));
    }
}

//! TLS to PostgreSQL, as the store URL's `sslmode` and `sslrootcert` ask, with libpq's meaning
//! (rustls with aws-lc-rs underneath):
//!
//! - `disable`: no TLS.
//! - `prefer` (the default, as in libpq): TLS if the server offers it, else plain; the server's
//!   certificate is not checked (it only keeps passive listeners out).
//! - `require`: TLS or no connection; the certificate is not checked, unless `sslrootcert` is
//!   given (then as `verify-ca`, as libpq does).
//! - `verify-ca`: TLS, with a certificate issued by a trusted root (`sslrootcert`, a PEM file,
//!   or the system's roots), whatever name it is for.
//! - `verify-full`: as `verify-ca`, and the certificate is for the host in the URL: what a
//!   fleet on a network it does not own should use.
//!
//! tokio-postgres itself knows only `disable`, `prefer` and `require`, so both parameters are
//! taken out of the URL before it reads the rest.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{Result, StoreError};

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS if offered, certificate not checked.
    Prefer,
    /// TLS, certificate not checked.
    Require,
    /// TLS, certificate chain checked.
    VerifyCa,
    /// TLS, certificate chain and host name checked.
    VerifyFull,
}

/// The TLS part of a store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) mode: TlsMode,
    /// PEM file of the roots to trust (`sslrootcert`), instead of the system's.
    pub(crate) root_cert: Option<PathBuf>,
}

/// Splits `url` into the URL tokio-postgres reads (without `sslmode` and `sslrootcert`) and the
/// TLS settings; `None` for an `sslmode` libpq does not know (`allow` is refused too: it never
/// protects anything a store needs protected).
pub(crate) fn split_url(url: &str) -> Option<(String, TlsSettings)> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut settings = TlsSettings {
        mode: TlsMode::Prefer,
        root_cert: None,
    };
    let mut mode_given = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", value)) => mode_given = Some(value),
            Some(("sslrootcert", value)) => {
                // Escaped as URL parameters are: a path may hold spaces or `&`.
                let path = percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .ok()?;
                settings.root_cert = Some(PathBuf::from(path.as_ref()));
            }
            _ => kept.push(pair),
        }
    }
    settings.mode = match mode_given {
        None | Some("prefer") => TlsMode::Prefer,
        Some("disable") => TlsMode::Disable,
        Some("require") if settings.root_cert.is_some() => TlsMode::VerifyCa,
        Some("require") => TlsMode::Require,
        Some("verify-ca") => TlsMode::VerifyCa,
        Some("verify-full") => TlsMode::VerifyFull,
        Some(_) => return None,
    };
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Some((url, settings))
}

impl TlsSettings {
    /// What tokio-postgres is told to negotiate.
    pub(crate) fn ssl_mode(&self) -> SslMode {
        match self.mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        }
    }

    /// The connector that checks the server as the mode asks (unused for `disable`).
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Rejected(format!("TLS set-up: {e}")))?;
        let config = if self.mode == TlsMode::VerifyFull {
            builder.with_webpki_verifier(self.chain_verifier(provider)?)
        } else {
            let chain = (self.mode == TlsMode::VerifyCa)
                .then(|| self.chain_verifier(provider.clone()))
                .transpose()?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(LibpqVerifier {
                    chain,
                    algorithms: provider.signature_verification_algorithms,
                }))
        }
        .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// A verifier of the certificate chain (and name) against [`roots`](Self::roots).
    fn chain_verifier(&self, provider: Arc<CryptoProvider>) -> Result<Arc<WebPkiServerVerifier>> {
        WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots()?), provider)
            .build()
            .map_err(|e| StoreError::Rejected(format!("TLS set-up: {e}")))
    }

    /// The roots to trust: `sslrootcert`'s, or the system's.
    fn roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        let (certs, source) = match &self.root_cert {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        StoreError::Rejected(format!(
                            "sslrootcert {}: not a readable PEM file of certificates ({e})",
                            path.display()
                        ))
                    })?;
                (certs, path.display().to_string())
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                (found.certs, "the system's certificate store".to_owned())
            }
        };
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(StoreError::Rejected(format!(
                "no trusted root certificates in {source} (sslrootcert=PATH names a PEM file)"
            )));
        }
        Ok(roots)
    }
}

/// The checks of `prefer`, `require` (no certificate check: the connection is encrypted and the
/// handshake signed by the certificate's key, whoever issued it, as libpq has it) and
/// `verify-ca` (`chain`: the issuer is checked as `verify-full` checks it, the name is not).
#[derive(Debug)]
struct LibpqVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_keeps_what_tokio_postgres_reads_and_gives_up_the_tls_part() {
        let (url, tls) = split_url("postgres://u:p@h/db").unwrap();
        assert_eq!(url, "postgres://u:p@h/db");
        assert_eq!(tls.mode, TlsMode::Prefer);
        let (url, tls) = split_url(
            "postgres://u@h/db?connect_timeout=5&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem&application_name=a",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u@h/db?connect_timeout=5&application_name=a"
        );
        assert_eq!(
            tls,
            TlsSettings {
                mode: TlsMode::VerifyFull,
                root_cert: Some(PathBuf::from("/etc/ca x.pem")),
            }
        );
        for (mode, expected) in [
            ("disable", TlsMode::Disable),
            ("prefer", TlsMode::Prefer),
            ("require", TlsMode::Require),
            ("verify-ca", TlsMode::VerifyCa),
        ] {
            let (url, tls) = split_url(&format!("postgres://h/db?sslmode={mode}")).unwrap();
            assert_eq!((url.as_str(), tls.mode), ("postgres://h/db", expected));
        }
        // libpq: `require` with a root certificate checks the chain.
        let (_, tls) = split_url("postgres://h/db?sslmode=require&sslrootcert=ca.pem").unwrap();
        assert_eq!(tls.mode, TlsMode::VerifyCa);
        for bad in [
            "postgres://h/db?sslmode=allow",
            "postgres://h/db?sslmode=verify",
        ] {
            assert_eq!(split_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn roots_must_be_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let settings = TlsSettings {
            mode: TlsMode::VerifyFull,
            root_cert: Some(path),
        };
        let Err(e) = settings.connector() else {
            panic!("a file without certificates gave a connector");
        };
        assert!(e.to_string().contains("ca.pem"), "{e}");
    }
}

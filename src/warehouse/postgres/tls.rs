//! TLS to PostgreSQL with rustls and the ring provider already in the build: `verify-full`
//! checks the chain (bundled Mozilla roots, or `sslrootcert`) and the host name; `require`
//! and `prefer` encrypt without authenticating the server, as libpq does.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::config::{PgConfig, SslMode};
use crate::warehouse::WarehouseError;

/// The connector for `cfg.sslmode` (unused by the driver with `disable`).
pub fn connector(cfg: &PgConfig) -> Result<MakeRustlsConnect, WarehouseError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(cfg, e.to_string()))?;
    let config = match cfg.sslmode {
        SslMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            match &cfg.sslrootcert {
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                Some(path) => {
                    let certs = CertificateDer::pem_file_iter(path)
                        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                        .map_err(|e| {
                            tls_error(
                                cfg,
                                format!("cannot read sslrootcert {}: {e}", path.display()),
                            )
                        })?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(tls_error(
                            cfg,
                            format!("sslrootcert {} holds no usable certificate", path.display()),
                        ));
                    }
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

fn tls_error(cfg: &PgConfig, reason: String) -> WarehouseError {
    WarehouseError::Unusable {
        at: cfg.at(),
        what: "cannot connect",
        reason,
        fix: "point sslrootcert at a PEM file with the server's CA",
    }
}

/// libpq's `require`: any certificate is accepted (no authentication), but the handshake
/// signatures are still checked, so the session is encrypted to whoever holds that key.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

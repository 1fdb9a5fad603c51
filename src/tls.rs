//! HTTPS: the certificate and key, loaded from PEM files or, for a first
//! run, generated as a self-signed pair so `--tls` works with no set-up.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Names every generated certificate covers, so local use just works.
const DEFAULT_SANS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} holds no PEM {what}: {detail}")]
    Pem {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error(
        "{present} exists but {missing} does not: provide both, or remove {present} to generate a new self-signed pair"
    )]
    Incomplete { present: PathBuf, missing: PathBuf },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate and key are not usable together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What was loaded, for the start-up log.
pub struct Loaded {
    pub acceptor: TlsAcceptor,
    /// True when this start generated the pair.
    pub generated: bool,
}

/// Loads `cert` and `key`, generating a self-signed pair (for localhost,
/// 127.0.0.1, ::1 and `extra_sans`) when neither exists.
pub fn load_or_generate(
    cert: &Path,
    key: &Path,
    extra_sans: &[String],
) -> Result<Loaded, TlsError> {
    let generated = match (cert.exists(), key.exists()) {
        (true, true) => false,
        (false, false) => {
            generate(cert, key, extra_sans)?;
            true
        }
        (true, false) => return Err(incomplete(cert, key)),
        (false, true) => return Err(incomplete(key, cert)),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(cert, "certificate", e))?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.to_owned(),
            what: "certificate",
            detail: "the file is empty".into(),
        });
    }
    let private_key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, "private key", e))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Loaded {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        generated,
    })
}

fn generate(cert: &Path, key: &Path, extra_sans: &[String]) -> Result<(), TlsError> {
    let sans: Vec<String> = DEFAULT_SANS
        .iter()
        .map(|s| (*s).to_owned())
        .chain(extra_sans.iter().cloned())
        .collect();
    let pair = rcgen::generate_simple_self_signed(sans)?;
    write(cert, pair.cert.pem().as_bytes(), false)?;
    write(key, pair.signing_key.serialize_pem().as_bytes(), true)?;
    Ok(())
}

fn write(path: &Path, contents: &[u8], secret: bool) -> Result<(), TlsError> {
    let error = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(error)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    io::Write::write_all(&mut options.open(path).map_err(error)?, contents).map_err(error)
}

fn incomplete(present: &Path, missing: &Path) -> TlsError {
    TlsError::Incomplete {
        present: present.to_owned(),
        missing: missing.to_owned(),
    }
}

fn pem_error(path: &Path, what: &'static str, error: rustls::pki_types::pem::Error) -> TlsError {
    match error {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Read {
            path: path.to_owned(),
            source,
        },
        other => TlsError::Pem {
            path: path.to_owned(),
            what,
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_loads() {
        let dir = std::env::temp_dir().join(format!("signal-tls-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (cert, key) = (dir.join("ssl/server.crt"), dir.join("ssl/server.key"));
        let first = load_or_generate(&cert, &key, &["example.test".into()]).unwrap();
        assert!(first.generated);
        let pem = fs::read_to_string(&cert).unwrap();
        let second = load_or_generate(&cert, &key, &[]).unwrap();
        assert!(!second.generated);
        assert_eq!(fs::read_to_string(&cert).unwrap(), pem, "not regenerated");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is private to its owner");
        }
        fs::remove_file(&key).unwrap();
        assert!(matches!(
            load_or_generate(&cert, &key, &[]),
            Err(TlsError::Incomplete { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}

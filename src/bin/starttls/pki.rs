//! A throw-away CA and server certificate, made on the spot for `serve` and `demo`.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

pub struct Pki {
    pub ca_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
}

/// A CA and a certificate for `name`, `localhost`, 127.0.0.1 and ::1.
pub fn make(name: &str) -> Result<Pki, String> {
    let err = |e: rcgen::Error| format!("cannot make a certificate: {e}");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "starttls throw-away CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(err)?).map_err(err)?;
    let mut names = vec![name.to_owned()];
    for n in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_owned());
        }
    }
    let mut params = CertificateParams::new(names).map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.signed_by(&key, &ca).map_err(err)?;
    Ok(Pki {
        ca_pem: ca.pem(),
        chain_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes the CA certificate into a new private directory (mode 0700, never one that already
/// exists: another user could have made it to swap the file) and returns the file's path.
pub fn write_ca(ca_pem: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut last_error = None;
    for attempt in 0..16u32 {
        let name = format!("starttls-{}-{:08x}", std::process::id(), nanos ^ attempt);
        let dir = std::env::temp_dir().join(name);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                let path = dir.join("ca.pem");
                std::fs::write(&path, ca_pem)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
    Err(format!(
        "cannot create a private directory in {}: {}",
        std::env::temp_dir().display(),
        last_error.map_or_else(String::new, |e| e.to_string())
    ))
}

/// Removes the directory `write_ca` made for `ca_path`.
pub fn remove_ca(ca_path: &std::path::Path) {
    if let Some(dir) = ca_path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

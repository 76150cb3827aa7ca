//! Asks GnuPG for a key by fingerprint, so `--sign-by FINGERPRINT` signs
//! with the user's own keyring (`$GNUPGHOME`, else `~/.gnupg`) as podman
//! does. The passphrase goes to gpg through a pipe, never in its arguments
//! or environment.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Why gpg could not give a key.
#[derive(Debug, thiserror::Error)]
pub enum GpgError {
    #[error("cannot run gpg: {0}; install GnuPG (gpg) to sign with --sign-by")]
    Missing(std::io::Error),
    #[error("invalid fingerprint {0:?}: expected the hex fingerprint of a key, as `gpg --list-keys` shows it")]
    BadFingerprint(String),
    #[error("gpg has no {what} key {fingerprint} in its keyring; list the keys with `gpg --list-secret-keys`")]
    Unknown { what: &'static str, fingerprint: String },
    #[error("gpg could not export secret key {fingerprint}: {message}; check the passphrase")]
    Passphrase { fingerprint: String, message: String },
    #[error("gpg failed exporting key {fingerprint}: {message}")]
    Failed { fingerprint: String, message: String },
    #[error("talking to gpg: {0}")]
    Io(std::io::Error),
}

fn check_fingerprint(fingerprint: &str) -> Result<&str, GpgError> {
    let f = fingerprint.strip_prefix("0x").unwrap_or(fingerprint);
    if f.len() < 8 || f.len() > 64 || !f.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(GpgError::BadFingerprint(fingerprint.chars().take(80).collect()));
    }
    Ok(f)
}

fn run(
    home: Option<&Path>,
    args: &[&str],
    stdin: Option<&[u8]>,
    fingerprint: &str,
    what: &'static str,
) -> Result<Vec<u8>, GpgError> {
    let mut cmd = Command::new("gpg");
    if let Some(h) = home {
        cmd.env("GNUPGHOME", h);
    }
    cmd.args(["--batch", "--no-tty", "--quiet"]).args(args);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(GpgError::Missing)?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // gpg may exit before reading (unknown key): a broken pipe is fine.
        let _ = pipe.write_all(data).and_then(|_| pipe.write_all(b"\n"));
    }
    let mut err = Vec::new();
    let mut stderr = child.stderr.take().ok_or_else(|| GpgError::Io(std::io::Error::other("no stderr pipe")))?;
    let reader = std::thread::spawn(move || {
        let _ = stderr.by_ref().take(64 << 10).read_to_end(&mut err);
        err
    });
    let mut out = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.by_ref().take(16 << 20).read_to_end(&mut out).map_err(GpgError::Io)?;
    }
    let status = child.wait().map_err(GpgError::Io)?;
    let err = reader.join().unwrap_or_default();
    let message = String::from_utf8_lossy(&err).trim().replace('\n', "; ");
    let fingerprint = fingerprint.to_owned();
    if !status.success() {
        let lower = message.to_lowercase();
        if what == "secret"
            && (lower.contains("bad passphrase") || lower.contains("no passphrase") || lower.contains("passphrase"))
        {
            return Err(GpgError::Passphrase { fingerprint, message });
        }
        if lower.contains("nothing exported") || lower.contains("not found") {
            return Err(GpgError::Unknown { what, fingerprint });
        }
        return Err(GpgError::Failed {
            fingerprint,
            message: if message.is_empty() { status.to_string() } else { message },
        });
    }
    if out.is_empty() {
        // gpg 2.2 exits 0 with "WARNING: nothing exported" for unknown keys.
        return Err(GpgError::Unknown { what, fingerprint });
    }
    Ok(out)
}

/// The secret key `fingerprint` (binary OpenPGP, unprotected by gpg's
/// export so the passphrase is checked here, by gpg).
pub fn export_secret_key(fingerprint: &str, passphrase: Option<&str>) -> Result<Vec<u8>, GpgError> {
    export_secret_key_in(None, fingerprint, passphrase)
}

/// [`export_secret_key`] from the keyring in `home` (else `$GNUPGHOME`).
pub fn export_secret_key_in(
    home: Option<&Path>,
    fingerprint: &str,
    passphrase: Option<&str>,
) -> Result<Vec<u8>, GpgError> {
    let f = check_fingerprint(fingerprint)?;
    let pass = passphrase.unwrap_or("");
    run(
        home,
        &["--pinentry-mode", "loopback", "--passphrase-fd", "0", "--export-secret-keys", f],
        Some(pass.as_bytes()),
        fingerprint,
        "secret",
    )
}

/// The public key `fingerprint` (binary OpenPGP).
pub fn export_public_key(fingerprint: &str) -> Result<Vec<u8>, GpgError> {
    export_public_key_in(None, fingerprint)
}

/// [`export_public_key`] from the keyring in `home` (else `$GNUPGHOME`).
pub fn export_public_key_in(home: Option<&Path>, fingerprint: &str) -> Result<Vec<u8>, GpgError> {
    let f = check_fingerprint(fingerprint)?;
    run(home, &["--export", f], None, fingerprint, "public")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testdir::TestDir;

    /// Whether gpg runs here; tests that need it say so and pass when not.
    pub(crate) fn have_gpg() -> bool {
        Command::new("gpg")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Makes a key in `home` (a GNUPGHOME) and returns its fingerprint.
    pub(crate) fn make_key(home: &Path, passphrase: &str, algo: &str) -> String {
        std::fs::set_permissions(home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let st = Command::new("gpg")
            .env("GNUPGHOME", home)
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                passphrase,
                "--quick-gen-key",
                "Img Test <img@example.com>",
                algo,
                "sign",
                "never",
            ])
            .status()
            .unwrap();
        assert!(st.success());
        let out = Command::new("gpg")
            .env("GNUPGHOME", home)
            .args(["--batch", "--with-colons", "--list-secret-keys"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap().to_string()
    }

    /// Stops the gpg-agent a test's home started.
    pub(crate) fn stop_agent(home: &Path) {
        let _ = Command::new("gpgconf").env("GNUPGHOME", home).args(["--kill", "gpg-agent"]).status();
    }

    #[test]
    fn exports_keys_and_names_each_failure() {
        if !have_gpg() {
            eprintln!("gpg is not installed: skipping");
            return;
        }
        let home = TestDir::new("gpg-export");
        let fpr = make_key(&home, "secret words", "ed25519");
        let h = Some(&*home);
        {
            let public = export_public_key_in(h, &fpr).unwrap();
            assert_eq!(crate::trust::simple::Keyring::parse(&public).unwrap().fingerprints(), vec![fpr.clone()]);
            let err = export_secret_key_in(h, &fpr, Some("wrong")).unwrap_err();
            assert!(matches!(err, GpgError::Passphrase { .. }), "{err}");
            let secret = export_secret_key_in(h, &fpr, Some("secret words")).unwrap();
            assert!(!secret.is_empty());
            let err = export_secret_key_in(h, "0123456789ABCDEF0123456789ABCDEF01234567", None).unwrap_err();
            assert!(matches!(err, GpgError::Unknown { .. }), "{err}");
            let err = export_public_key("not-hex; rm -rf").unwrap_err();
            assert!(matches!(err, GpgError::BadFingerprint(_)), "{err}");
        }
        stop_agent(&home);
    }
}

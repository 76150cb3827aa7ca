//! Who may do what in `img serve`: passwords (argon2id, PHC strings),
//! bearer tokens (the user's name, the generation of their password and an
//! expiry, signed with HMAC-SHA256 under a key of the serving process),
//! `Authorization` headers, and the access a caller has to a repository.
//! Tokens carry no rights: grants are looked up at every request, so a
//! change takes effect at once; a token dies with its user's password (a
//! new password, or the user removed and made again, is a new generation).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a caller may do in a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    None,
    Pull,
    /// Pull, push and delete.
    Push,
}

impl Access {
    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "pull" => Some(Access::Pull),
            "push" => Some(Access::Push),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Access::None => "none",
            Access::Pull => "pull",
            Access::Push => "push",
        }
    }
}

/// What decides a caller's access to one repository.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// No user is defined: the registry is open to everyone.
    pub open: bool,
    pub admin: bool,
    /// The caller's grants: (scope, access), a scope being a namespace or
    /// `namespace/repository`.
    pub grants: &'a [(String, String)],
    /// The namespace's visibility (None: it was not made, so private).
    pub namespace_public: Option<bool>,
    /// The repository's own visibility, which wins over the namespace's.
    pub repository_public: Option<bool>,
}

/// The access `facts` give on `namespace/repository`.
pub fn access(namespace: &str, repository: &str, facts: &Facts) -> Access {
    if facts.open || facts.admin {
        return Access::Push;
    }
    let full = format!("{namespace}/{repository}");
    let mut a = Access::None;
    for (scope, what) in facts.grants {
        if scope == namespace || *scope == full {
            a = a.max(Access::parse(what).unwrap_or(Access::None));
        }
    }
    let public = facts.repository_public.or(facts.namespace_public).unwrap_or(false);
    if public {
        a = a.max(Access::Pull);
    }
    a
}

/// Hashes a password for storing (argon2id, a random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt_bytes = random_bytes(16).map_err(|e| format!("reading random bytes: {e}"))?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `password` matches a stored hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// `n` bytes from the kernel's random source.
pub fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

/// Credentials a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic {
        user: String,
        password: String,
    },
    Bearer(String),
    /// An `Authorization` header that could not be read.
    Malformed,
}

/// Reads an `Authorization` header.
pub fn credentials(header: Option<&str>) -> Credentials {
    let Some(h) = header else { return Credentials::Anonymous };
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest) else { return Credentials::Malformed };
        let Ok(s) = String::from_utf8(raw) else { return Credentials::Malformed };
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Credentials::Basic { user: u.to_string(), password: p.to_string() },
            _ => Credentials::Malformed,
        }
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Credentials::Bearer(rest.to_string())
    } else {
        Credentials::Malformed
    }
}

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks tokens.
pub struct Tokens {
    key: Vec<u8>,
}

impl Tokens {
    pub fn new(key: Vec<u8>) -> Tokens {
        Tokens { key }
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(payload);
        m.finalize().into_bytes().to_vec()
    }

    /// A token of `kind` ("access" or "refresh") for `user` ("" for an
    /// anonymous caller) of password generation `gen`, valid until `expires`.
    pub fn issue(&self, kind: &str, user: &str, gen: &str, expires: i64) -> String {
        let payload = serde_json::json!({ "typ": kind, "sub": user, "gen": gen, "exp": expires }).to_string();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}", b64.encode(payload.as_bytes()), b64.encode(self.mac(payload.as_bytes())))
    }

    /// The user and password generation a token of `kind` names, if it is
    /// genuine and not expired at `now`.
    pub fn check(&self, kind: &str, token: &str, now: i64) -> Option<(String, String)> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (p, s) = token.split_once('.')?;
        let payload = b64.decode(p).ok()?;
        let sig = b64.decode(s).ok()?;
        let mut m = HmacSha256::new_from_slice(&self.key).ok()?;
        m.update(&payload);
        m.verify_slice(&sig).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&payload).ok()?;
        let exp = v.get("exp")?.as_i64()?;
        if exp <= now || v.get("typ")?.as_str()? != kind {
            return None;
        }
        Some((v.get("sub")?.as_str()?.to_string(), v.get("gen")?.as_str()?.to_string()))
    }
}

/// The generation of a stored password hash: it changes with every new
/// password (each hash has its own salt), so tokens that carry it die
/// with the password.
pub fn generation(stored_hash: &str) -> String {
    use sha2::Digest;
    let d = Sha256::digest(stored_hash.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The `scope` values of a token request: `repository:NAME:ACTIONS`.
pub fn parse_scope(s: &str) -> Option<(String, Vec<String>)> {
    let rest = s.strip_prefix("repository:")?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some((name.to_string(), actions.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn access_follows_grants_and_visibility() {
        let none = g(&[]);
        let private = Facts { namespace_public: Some(false), grants: &none, ..Default::default() };
        assert_eq!(access("team", "app", &private), Access::None);
        let unknown = Facts { grants: &none, ..Default::default() };
        assert_eq!(access("team", "app", &unknown), Access::None, "a namespace not made is private");
        let public = Facts { namespace_public: Some(true), grants: &none, ..Default::default() };
        assert_eq!(access("team", "app", &public), Access::Pull);
        let repo_private = Facts { namespace_public: Some(true), repository_public: Some(false), ..public.clone() };
        assert_eq!(access("team", "app", &repo_private), Access::None, "the repository's visibility wins");
        let repo_public = Facts { namespace_public: Some(false), repository_public: Some(true), ..public.clone() };
        assert_eq!(access("team", "app", &repo_public), Access::Pull);
        let grants = g(&[("team", "pull"), ("team/app", "push"), ("other", "push")]);
        let granted = Facts { grants: &grants, namespace_public: Some(false), ..Default::default() };
        assert_eq!(access("team", "app", &granted), Access::Push);
        assert_eq!(access("team", "web", &granted), Access::Pull);
        assert_eq!(access("teams", "app", &granted), Access::None, "a scope is a whole name, not a prefix");
        let prefix = g(&[("tea", "push")]);
        assert_eq!(access("team", "app", &Facts { grants: &prefix, ..Default::default() }), Access::None);
        assert_eq!(access("x", "y", &Facts { open: true, ..Default::default() }), Access::Push);
        assert_eq!(access("x", "y", &Facts { admin: true, ..Default::default() }), Access::Push);
    }

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("s3cret"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("s3cret ", &h));
        assert!(!verify_password("s3cret", "not a hash"));
        assert_ne!(hash_password("s3cret").unwrap(), h, "salted");
    }

    #[test]
    fn tokens_are_checked_for_signature_and_expiry() {
        let t = Tokens::new(b"key-one".to_vec());
        let tok = t.issue("access", "alice", "g1", 1000);
        assert_eq!(t.check("access", &tok, 999), Some(("alice".into(), "g1".into())));
        assert_eq!(t.check("refresh", &tok, 999), None, "an access token is not a refresh token");
        assert_eq!(t.check("access", &tok, 1000), None, "expired");
        assert_eq!(Tokens::new(b"key-two".to_vec()).check("access", &tok, 1), None, "another key");
        let (p, s) = tok.split_once('.').unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let forged = b64.encode(br#"{"typ":"access","sub":"admin","gen":"g1","exp":1000}"#);
        assert_eq!(t.check("access", &format!("{forged}.{s}"), 1), None, "payload changed");
        assert_eq!(t.check("access", p, 1), None);
        assert_eq!(t.check("access", "", 1), None);
    }

    #[test]
    fn authorization_headers_are_read() {
        assert_eq!(credentials(None), Credentials::Anonymous);
        assert_eq!(
            credentials(Some("Basic YWxpY2U6cDpx")),
            Credentials::Basic { user: "alice".into(), password: "p:q".into() }
        );
        assert_eq!(credentials(Some("bearer abc")), Credentials::Bearer("abc".into()));
        assert_eq!(credentials(Some("Basic !!!")), Credentials::Malformed);
        assert_eq!(credentials(Some("Basic OnBhc3M=")), Credentials::Malformed, "no user name");
        assert_eq!(credentials(Some("Digest x")), Credentials::Malformed);
    }

    proptest::proptest! {
        /// Any Authorization header reads without panicking; any token
        /// string but a genuine one is refused.
        #[test]
        fn hostile_credentials_and_tokens_are_refused(h in "\\PC{0,80}", t in "[A-Za-z0-9._-]{0,80}") {
            let _ = credentials(Some(&h));
            let tokens = Tokens::new(b"k".to_vec());
            proptest::prop_assert_eq!(tokens.check("access", &t, 0), None);
        }
    }

    /// Found: a token kept working after its user's password changed, and
    /// after the user was removed and added again.
    #[test]
    fn token_survives_password_change_no_more() {
        let one = hash_password("one").unwrap();
        let again = hash_password("one").unwrap();
        assert_ne!(generation(&one), generation(&again), "the same password again is a new generation");
        assert_eq!(generation(&one), generation(&one));
        assert_eq!(generation(&one).len(), 16);
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(
            parse_scope("repository:team/app:pull,push"),
            Some(("team/app".into(), vec!["pull".into(), "push".into()]))
        );
        assert_eq!(parse_scope("registry:catalog:*"), None);
    }
}

//! One entry per parser of untrusted bytes, for the fuzz targets in
//! `fuzz/` (cargo fuzz, nightly) and for the regression test that replays
//! the inputs kept in `testdata/fuzz/<target>/` (stable). Each entry only
//! has to return: an error is fine, a panic or a hang is the bug.

/// The targets, by name.
pub const TARGETS: &[&str] = &[
    "reference",
    "digest",
    "document",
    "config",
    "challenge",
    "template",
    "registries_conf",
    "daemon_json",
    "dockerfile",
    "dockerignore",
    "http_head",
    "route",
    "layer_tar",
    "estargz_toc",
    "zstd_chunked_toc",
    "policy",
    "registries_d",
    "pgp_keyring",
    "simple_signature",
    "sigstore_signature",
    "pg_server",
    "upload_state",
];

/// Feeds `data` to the parser named `target`. Unknown names panic (a
/// mistake in the caller, not an input).
pub fn run(target: &str, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match target {
        "reference" => {
            if let Ok(r) = crate::reference::Reference::parse(&text) {
                let _ = r.to_string();
            }
        }
        "digest" => {
            let _ = crate::digest::Digest::parse(&text);
        }
        "document" => {
            let _ = crate::image::parse_document("input", data, None);
            let _ = crate::image::parse_document("input", data, Some(crate::image::OCI_INDEX));
        }
        "config" => {
            let _ = crate::image::parse_config("input", data);
        }
        "challenge" => {
            let _ = crate::registry::challenge::parse(&text);
        }
        "template" => {
            if let Ok(t) = img_gotemplate::Template::parse(&text) {
                let _ = t.execute(&serde_json::json!({"Id": "x", "Config": {"Env": ["A=1"]}, "RepoTags": ["a:1"]}));
            }
        }
        "registries_conf" => {
            let mut c = crate::registry::config::Config::default();
            let _ = crate::registry::config::parse_registries_conf("input", &text, &mut c);
        }
        "daemon_json" => {
            let mut c = crate::registry::config::Config::default();
            let _ = crate::registry::config::parse_isulad_daemon_json("input", &text, &mut c);
        }
        "dockerfile" => {
            let _ = crate::dockerfile::parse(data);
        }
        "dockerignore" => {
            if let Ok(m) = crate::dockerignore::Matcher::parse(&text) {
                let _ = m.excluded("a/b/c.txt");
            }
        }
        #[cfg(feature = "serve")]
        "http_head" => {
            let a: std::net::SocketAddr = "127.0.0.1:1".parse().expect("an address");
            let _ = crate::serve::http::parse_head(data, a, a, false);
        }
        #[cfg(feature = "serve")]
        "route" => {
            let (path, query) = text.split_once('?').unwrap_or((&text, ""));
            let _ = crate::serve::route::parse(path);
            let _ = crate::serve::route::query(query);
            let _ = crate::serve::route::byte_range(&text, 1000);
        }
        "layer_tar" => {
            let _ = crate::mount::scan::scan(data, 0, "input");
        }
        "estargz_toc" => {
            // A registry's bytes: the footer, the TOC's JSON, and the tree
            // a lazy mount builds from its entries (names, links, chunks).
            let _ = crate::layerindex::estargz::parse_footer(data);
            let _ = crate::layerindex::estargz::parse_toc(data, None);
            if let Ok(entries) = crate::layerindex::estargz::toc_entries(data) {
                let _ = crate::mount::lazy::toc_layer(&entries, 0, data.len() as u64, "input");
            }
        }
        "zstd_chunked_toc" => {
            let _ = crate::layerindex::zstd_chunked::parse_footer(data);
            let _ = crate::layerindex::zstd_chunked::parse_position(&text);
            let pos = crate::layerindex::zstd_chunked::Position {
                offset: 0,
                len: data.len() as u64,
                ulen: (data.len() as u64).saturating_mul(4),
            };
            let _ = crate::layerindex::zstd_chunked::read_toc(data, pos, &crate::digest::Digest::of_bytes(data));
        }
        "policy" => {
            // A policy that parses must write out and read back the same.
            use crate::trust::{policy::Policy, Transport};
            if let Ok(p) = Policy::parse("input", &text) {
                let again = Policy::parse("input", &p.to_json()).expect("a written policy parses");
                assert_eq!(again.default, p.default);
                assert_eq!(again.transports, p.transports);
                let _ = p.requirements_for(Transport::Docker, "a.example.com:5000/ns/app:1");
                let _ = p.requirements_for(Transport::Oci, "/srv/images/app:1");
                let _ = p.describe();
            }
        }
        "registries_d" => {
            use crate::trust::registries_d::{lookaside_url, RegistriesD};
            if let Ok(r) = RegistriesD::from_files([("input", &*text)]) {
                let reference = crate::reference::Reference::parse("a.example.com/ns/app:1").expect("a reference");
                let s = r.for_reference(&reference);
                if let Some(base) = s.lookaside {
                    let _ = lookaside_url(&base, &reference, &crate::digest::Digest::of_bytes(data), 0);
                }
                let _ = r.lookaside_for_scope("a.example.com");
            }
        }
        "pgp_keyring" => {
            if let Ok(k) = crate::trust::simple::Keyring::parse(data) {
                let _ = k.fingerprints();
            }
        }
        "simple_signature" => {
            // A signed message checked against a fixed keyring: the message
            // parser, decompression and the payload parser all run.
            static RING: std::sync::OnceLock<crate::trust::simple::Keyring> = std::sync::OnceLock::new();
            let ring = RING.get_or_init(crate::trust::simple::fuzz_keyring);
            let _ = crate::trust::simple::verify(data, ring);
            let _ = crate::trust::simple::parse_payload(data);
        }
        #[cfg(feature = "serve")]
        "pg_server" => crate::pg::replay_server(data),
        #[cfg(feature = "serve")]
        "upload_state" => {
            if let Some(st) = crate::serve::backend::sha256::State::from_bytes(data) {
                let _ = st.finish();
            }
        }
        "sigstore_signature" => {
            use crate::trust::sigstore;
            let _ = sigstore::PublicKey::parse_pem(data);
            let _ = sigstore::PublicKey::from_der(data);
            let _ = sigstore::parse_payload(data);
            if let Ok((payload, annotations)) = sigstore::parse_sigstore_file(data) {
                static KEY: std::sync::OnceLock<sigstore::PublicKey> = std::sync::OnceLock::new();
                let key = KEY.get_or_init(|| sigstore::PrivateKey::generate().public_key());
                let _ = sigstore::verify_with_key(&payload, &annotations, key);
                let _ = sigstore::verify_with_key_and_rekor(&payload, &annotations, key, key);
                let _ = sigstore::verify_with_fulcio(&payload, &annotations, b"", "issuer", "email", key);
            }
        }
        other => panic!("no fuzz target {other:?}"),
    }
}

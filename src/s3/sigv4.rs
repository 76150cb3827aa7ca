//! AWS Signature Version 4 for S3: the `Authorization` header of a request
//! and the query of a pre-signed URL. Pure: the caller gives the time.
//!
//! The canonical request is METHOD, the URI-encoded path (each byte outside
//! `A-Za-z0-9-._~` as `%XX`, `/` kept: S3 does not encode twice), the sorted
//! encoded query, the lower-case sorted headers, the signed header names and
//! the payload's hash; the string to sign hashes it under the date, region
//! and service scope; the key is the secret HMAC-chained through the scope.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload hash of a request whose body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The longest validity S3 accepts for a pre-signed URL (7 days).
pub const MAX_PRESIGN_SECS: u64 = 604_800;
const SERVICE: &str = "s3";

/// Who signs, and where.
pub struct Signer<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
}

/// One request to sign: `path` is the raw path (`/bucket/key`), encoded
/// here; `query` holds raw names and values; `headers` are the headers to
/// sign besides `x-amz-date` and `x-amz-content-sha256`, which are added.
pub struct Request<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    pub payload_hash: &'a str,
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length; new_from_slice cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `20130524T000000Z` for seconds since the epoch.
pub fn amz_date(unix: i64) -> String {
    crate::timefmt::format_rfc3339(unix).replace(['-', ':'], "")
}

/// Percent-encodes every byte outside `A-Za-z0-9-._~`; `/` too when
/// `slash` is set (query parts), not in paths.
pub fn uri_encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b'/' if !slash => out.push('/'),
            _ => {
                out.push('%');
                out.push_str(&format!("{b:02X}"));
            }
        }
    }
    out
}

/// The query string as signed and as sent: encoded names and values,
/// sorted by name then value.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> =
        query.iter().map(|(k, v)| (uri_encode(k, true), uri_encode(v, true))).collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Header value as signed: trimmed, inner runs of spaces made one.
fn canonical_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn scope(date: &str, region: &str) -> String {
    format!("{date}/{region}/{SERVICE}/aws4_request")
}

fn signing_key(secret: &str, date: &str, region: &str) -> [u8; 32] {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, SERVICE.as_bytes());
    hmac(&k, b"aws4_request")
}

/// The canonical request and the signed header names (`host;x-amz-date`).
fn canonical_request(req: &Request, headers: &[(String, String)]) -> (String, String) {
    let mut hs: Vec<(String, String)> =
        headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), canonical_value(v))).collect();
    hs.sort();
    let signed = hs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    let canon_headers: String = hs.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(req.path, false),
        canonical_query(req.query),
        canon_headers,
        signed,
        req.payload_hash
    );
    (text, signed)
}

fn signature(signer: &Signer, amz_date: &str, canonical: &str) -> String {
    let date = &amz_date[..8.min(amz_date.len())];
    let to_sign =
        format!("{ALGORITHM}\n{amz_date}\n{}\n{}", scope(date, signer.region), sha256_hex(canonical.as_bytes()));
    hex(&hmac(&signing_key(signer.secret_key, date, signer.region), to_sign.as_bytes()))
}

/// The headers to add to `req` at time `unix`: `x-amz-date`,
/// `x-amz-content-sha256` and `authorization`.
pub fn sign_headers(signer: &Signer, req: &Request, unix: i64) -> Vec<(String, String)> {
    let date = amz_date(unix);
    let mut headers: Vec<(String, String)> = vec![("host".into(), req.host.to_string())];
    headers.extend(req.headers.iter().cloned());
    headers.push(("x-amz-content-sha256".into(), req.payload_hash.to_string()));
    headers.push(("x-amz-date".into(), date.clone()));
    let (canonical, signed) = canonical_request(req, &headers);
    let sig = signature(signer, &date, &canonical);
    let auth = format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={signed}, Signature={sig}",
        signer.access_key,
        scope(&date[..8], signer.region)
    );
    vec![
        ("x-amz-date".into(), date),
        ("x-amz-content-sha256".into(), req.payload_hash.to_string()),
        ("authorization".into(), auth),
    ]
}

/// The query of a pre-signed URL for `req` (only `host` signed, payload
/// unsigned), valid `expires` seconds from `unix` (capped at 7 days).
pub fn presign_query(signer: &Signer, req: &Request, unix: i64, expires: u64) -> String {
    let date = amz_date(unix);
    let mut query: Vec<(String, String)> = req.query.to_vec();
    query.push(("X-Amz-Algorithm".into(), ALGORITHM.into()));
    query.push(("X-Amz-Credential".into(), format!("{}/{}", signer.access_key, scope(&date[..8], signer.region))));
    query.push(("X-Amz-Date".into(), date.clone()));
    query.push(("X-Amz-Expires".into(), expires.clamp(1, MAX_PRESIGN_SECS).to_string()));
    query.push(("X-Amz-SignedHeaders".into(), "host".into()));
    let headers = vec![("host".to_string(), req.host.to_string())];
    let with_query = Request { query: &query, payload_hash: UNSIGNED_PAYLOAD, ..*req };
    let (canonical, _) = canonical_request(&with_query, &headers);
    let sig = signature(signer, &date, &canonical);
    format!("{}&X-Amz-Signature={sig}", canonical_query(&query))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of AWS's "Signature Calculations for the Authorization
    // Header" and "Query Parameters" pages of the S3 API reference.
    const SIGNER: Signer = Signer {
        access_key: "AKIAIOSFODNN7EXAMPLE",
        secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region: "us-east-1",
    };
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    // 2013-05-24T00:00:00Z
    const T: i64 = 1_369_353_600;

    fn auth(headers: &[(String, String)]) -> &str {
        &headers.iter().find(|(k, _)| k == "authorization").unwrap().1
    }

    #[test]
    fn dates_are_basic_iso8601() {
        assert_eq!(amz_date(T), "20130524T000000Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
    }

    #[test]
    fn get_object_example() {
        let extra = vec![("range".to_string(), "bytes=0-9".to_string())];
        let req = Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test.txt",
            query: &[],
            headers: &extra,
            payload_hash: EMPTY,
        };
        let h = sign_headers(&SIGNER, &req, T);
        assert_eq!(
            auth(&h),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn put_object_example() {
        let body = b"Welcome to Amazon S3.";
        let hash = sha256_hex(body);
        assert_eq!(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
        let extra = vec![
            ("date".to_string(), "Fri, 24 May 2013 00:00:00 GMT".to_string()),
            ("x-amz-storage-class".to_string(), "REDUCED_REDUNDANCY".to_string()),
        ];
        let req = Request {
            method: "PUT",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test$file.text",
            query: &[],
            headers: &extra,
            payload_hash: &hash,
        };
        let h = sign_headers(&SIGNER, &req, T);
        assert!(
            auth(&h).ends_with("Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
            "{}",
            auth(&h)
        );
    }

    #[test]
    fn list_objects_example() {
        let query = vec![("max-keys".to_string(), "2".to_string()), ("prefix".to_string(), "J".to_string())];
        let req = Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path: "/",
            query: &query,
            headers: &[],
            payload_hash: EMPTY,
        };
        let h = sign_headers(&SIGNER, &req, T);
        assert!(
            auth(&h).ends_with("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
            "{}",
            auth(&h)
        );
    }

    #[test]
    fn presigned_get_example() {
        let req = Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test.txt",
            query: &[],
            headers: &[],
            payload_hash: UNSIGNED_PAYLOAD,
        };
        let q = presign_query(&SIGNER, &req, T, 86400);
        assert_eq!(
            q,
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn presign_caps_the_validity() {
        let req = Request {
            method: "GET",
            host: "h",
            path: "/b/k",
            query: &[],
            headers: &[],
            payload_hash: UNSIGNED_PAYLOAD,
        };
        assert!(presign_query(&SIGNER, &req, T, 10 * MAX_PRESIGN_SECS).contains("X-Amz-Expires=604800&"));
        assert!(presign_query(&SIGNER, &req, T, 0).contains("X-Amz-Expires=1&"));
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("a b/c~d_e.f-g", false), "a%20b/c~d_e.f-g");
        assert_eq!(uri_encode("a b/c", true), "a%20b%2Fc");
        assert_eq!(uri_encode("é+=&?", true), "%C3%A9%2B%3D%26%3F");
        let q = vec![
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "".to_string()),
            ("a b".to_string(), "x/y".to_string()),
        ];
        assert_eq!(canonical_query(&q), "a=&a%20b=x%2Fy&b=2");
        assert_eq!(canonical_value("  a   b  "), "a b");
    }
}

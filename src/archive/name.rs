//! Tar entry names as strings and back: names are bytes, the code that
//! cleans and matches them works on strings, and no name may be changed or
//! confused with another on the way.

/// Entry names are bytes; the code that cleans and matches them works on
/// strings. `name_string` maps any bytes to a string and `name_bytes` maps
/// it back exactly: bytes that are not UTF-8, and the bytes of the code
/// points U+F700..=U+F7FF themselves, become U+F700 + byte, so no name is
/// changed or confused with another (ASCII, `/` and `.` included, is never
/// escaped).
pub fn name_string(b: &[u8]) -> String {
    let esc =
        |s: &mut String, byte: u8| s.push(char::from_u32(0xF700 + u32::from(byte)).expect("a private-use code point"));
    let mut s = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            if ('\u{F700}'..='\u{F7FF}').contains(&c) {
                let mut buf = [0u8; 4];
                for &byte in c.encode_utf8(&mut buf).as_bytes() {
                    esc(&mut s, byte);
                }
            } else {
                s.push(c);
            }
        }
        for &byte in chunk.invalid() {
            esc(&mut s, byte);
        }
    }
    s
}

/// The bytes `name_string` made `s` from.
pub fn name_bytes(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        if ('\u{F700}'..='\u{F7FF}').contains(&c) {
            out.push((c as u32 - 0xF700) as u8);
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

/// The path a tar header gets for name `s` (made by `name_string`).
pub fn name_path(s: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    std::path::PathBuf::from(std::ffi::OsString::from_vec(name_bytes(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn names_map_to_strings_and_back_exactly(b in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let s = name_string(&b);
            proptest::prop_assert_eq!(name_bytes(&s), b.clone());
            // What cleaning looks at is kept: slashes and dots stay where they were.
            let slashes = |v: &[u8]| v.iter().enumerate().filter(|(_, &c)| c == b'/').count();
            proptest::prop_assert_eq!(s.matches('/').count(), slashes(&b));
        }
    }

    #[test]
    fn names_that_are_not_utf8_or_look_escaped_stay_apart() {
        let names: [&[u8]; 5] =
            [b"caf\xe9", "caf\u{f7e9}".as_bytes(), b"\xef\x9f\xa9", b"a/\xff/b", "plain/\u{e9}".as_bytes()];
        let strings: Vec<String> = names.iter().map(|n| name_string(n)).collect();
        for (n, s) in names.iter().zip(&strings) {
            assert_eq!(&name_bytes(s), n);
        }
        let distinct: std::collections::HashSet<&String> = strings.iter().collect();
        assert_eq!(distinct.len(), names.len());
        assert_eq!(name_string("plain/\u{e9}".as_bytes()), "plain/\u{e9}", "valid UTF-8 is kept as it is");
    }
}

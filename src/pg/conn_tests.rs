//! The connection against a scripted server: good exchanges give what they
//! should, and hostile bytes give errors, never panics.

use super::super::url;
use super::super::wire::Stream;
use super::*;
use proptest::prelude::*;

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn auth(code: u32, rest: &[u8]) -> Vec<u8> {
    let mut b = code.to_be_bytes().to_vec();
    b.extend_from_slice(rest);
    frame(b'R', &b)
}

fn ready(s: u8) -> Vec<u8> {
    frame(b'Z', &[s])
}

fn data_row(cols: &[Option<&[u8]>]) -> Vec<u8> {
    let mut b = (cols.len() as u16).to_be_bytes().to_vec();
    for c in cols {
        match c {
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
        }
    }
    frame(b'D', &b)
}

fn error(sev: &str, code: &str, msg: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (t, v) in [(b'S', sev), (b'V', sev), (b'C', code), (b'M', msg)] {
        b.push(t);
        b.extend_from_slice(v.as_bytes());
        b.push(0);
    }
    b.push(0);
    frame(b'E', &b)
}

fn complete(tag: &str) -> Vec<u8> {
    let mut b = tag.as_bytes().to_vec();
    b.push(0);
    frame(b'C', &b)
}

fn scripted(parts: &[Vec<u8>]) -> Conn {
    Conn::over(Stream::Script(io::Cursor::new(parts.concat())), "test".into())
}

fn cfg() -> Config {
    url::parse("postgres://img@127.0.0.1:5432/img").unwrap()
}

const PW: fn() -> Password = || Password::Given("pw".into());

#[test]
fn startup_with_md5_and_cleartext() {
    let ps = frame(b'S', b"server_version\x0015.0\x00");
    let key = frame(b'K', &[0, 0, 0, 1, 0, 0, 0, 2]);
    for a in [auth(5, &[1, 2, 3, 4]), auth(3, b"")] {
        let mut c = scripted(&[a, auth(0, b""), ps.clone(), key.clone(), ready(b'I')]);
        c.startup(&cfg(), &PW()).unwrap();
        assert!(!c.is_broken());
    }
}

#[test]
fn startup_errors() {
    let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (vec![error("FATAL", "28P01", "password authentication failed")], "28P01"),
        (vec![auth(7, b"")], "authentication method"),
        (vec![auth(10, b"SCRAM-SHA-256-PLUS\0\0")], "offers only"),
        (vec![auth(10, b"SCRAM-SHA-256\0\0"), auth(12, b"v=x")], "no SASL continue"),
        (vec![auth(10, b"SCRAM-SHA-256\0\0"), auth(11, b"r=x,s=QQ==,i=4096")], "nonce"),
        (vec![auth(10, b"SCRAM-SHA-256\0\0"), auth(11, b"r=x,s=QQ==,i=99999999")], "iterations"),
        (vec![auth(0, b""), complete("x")], "out of place"),
        (vec![auth(0, b"")], "connection closed"),
        (vec![], "connection closed"),
    ];
    for (parts, want) in cases {
        let mut c = scripted(&parts);
        let e = c.startup(&cfg(), &PW()).unwrap_err();
        assert!(e.to_string().contains(want), "{want}: {e}");
        assert!(c.is_broken(), "{want}");
    }
}

#[test]
fn query_rows_and_counts() {
    let desc = {
        let mut b = 2u16.to_be_bytes().to_vec();
        for name in ["a", "b"] {
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(&[0; 1 + 4 + 2 + 4 + 2 + 4 + 2]);
        }
        frame(b'T', &b)
    };
    let mut c = scripted(&[
        frame(b'1', b""),
        frame(b'2', b""),
        desc,
        data_row(&[Some(b"1"), None]),
        frame(b'N', b"Mnotice\0\0"),
        data_row(&[Some(b"\\x00ff"), Some(b"t")]),
        complete("SELECT 2"),
        ready(b'I'),
        frame(b'1', b""),
        frame(b'2', b""),
        frame(b'n', b""),
        complete("INSERT 0 3"),
        ready(b'I'),
    ]);
    let rows = c.query("select", &[Param::Int(1), Param::Null, "x".into()]).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].i64(0).unwrap(), 1);
    assert_eq!(rows[0].text(1), None);
    assert_eq!(rows[1].bytes(0).unwrap(), vec![0, 255]);
    assert!(rows[1].bool(1).unwrap());
    assert_eq!(c.execute("insert", &[]).unwrap(), 3);
}

#[test]
fn errors_keep_the_connection_unless_fatal() {
    let mut c = scripted(&[
        error("ERROR", "23505", "duplicate key"),
        ready(b'I'),
        error("FATAL", "57P01", "terminating connection due to administrator command"),
    ]);
    let e = c.execute("insert", &[]).unwrap_err();
    assert!(e.is_unique_violation(), "{e}");
    assert!(!c.is_broken());
    let e = c.execute("insert", &[]).unwrap_err();
    assert_eq!(e.code(), Some("57P01"));
    assert!(e.is_unavailable() && c.is_broken());
    let e = c.execute("insert", &[]).unwrap_err();
    assert!(e.is_unavailable() && e.to_string().contains("failed earlier"), "{e}");
}

#[test]
fn transactions_roll_back_and_retry() {
    // BEGIN, the statement fails with a serialization failure, ROLLBACK;
    // then BEGIN, the statement, COMMIT.
    let mut c = scripted(&[
        complete("BEGIN"),
        ready(b'T'),
        error("ERROR", "40001", "could not serialize access"),
        ready(b'E'),
        complete("ROLLBACK"),
        ready(b'I'),
        complete("BEGIN"),
        ready(b'T'),
        complete("UPDATE 1"),
        ready(b'T'),
        complete("COMMIT"),
        ready(b'I'),
    ]);
    let mut runs = 0;
    let n = c
        .transaction(|c| {
            runs += 1;
            c.execute("update", &[])
        })
        .unwrap();
    assert_eq!((n, runs), (1, 2));
    // An error swallowed inside leaves the transaction failed: no COMMIT.
    let mut c = scripted(&[
        complete("BEGIN"),
        ready(b'T'),
        error("ERROR", "22P02", "bad input"),
        ready(b'E'),
        complete("ROLLBACK"),
        ready(b'I'),
    ]);
    let e = c.transaction(|c| Ok(c.execute("x", &[]).is_err())).unwrap_err();
    assert!(e.to_string().contains("rolled back"), "{e}");
}

#[test]
fn query_opt_counts() {
    let one = |v: &[u8]| data_row(&[Some(v)]);
    let mut c = scripted(&[one(b"1"), one(b"2"), complete("SELECT 2"), ready(b'I'), complete("SELECT 0"), ready(b'I')]);
    assert!(c.query_opt("q", &[]).unwrap_err().to_string().contains("returned 2"));
    assert_eq!(c.query_opt("q", &[]).unwrap(), None);
}

#[test]
fn bad_answers_break_the_connection() {
    let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (vec![data_row(&[Some(b"\xff")]), ready(b'I')], "not UTF-8"),
        (vec![frame(b'D', &[0, 2, 0, 0, 0, 9, b'x'])], "does not add up"),
        (vec![ready(b'X')], "transaction status"),
        (vec![frame(b'G', &[0, 0, 0])], "COPY"),
        (vec![auth(0, b"")], "out of place"),
        (vec![vec![b'Z', 0x7f, 0, 0, 0]], "over the limit"),
    ];
    for (parts, want) in cases {
        let mut c = scripted(&parts);
        let e = c.query("q", &[]).unwrap_err();
        assert!(e.to_string().contains(want), "{want}: {e}");
        assert!(c.is_broken(), "{want}");
    }
}

#[test]
fn nothing_is_sent_for_bad_statements() {
    let mut c = scripted(&[]);
    let e = c.execute("a\0b", &[]).unwrap_err();
    assert!(e.to_string().contains("NUL"), "{e}");
    let many = vec![Param::Null; 40000];
    assert!(c.execute("x", &many).unwrap_err().to_string().contains("40000 parameters"));
    assert!(!c.is_broken());
}

#[test]
fn idle_checks() {
    let mut c = scripted(&[]);
    assert!(!c.check_idle(), "a closed connection is not idle");
    let mut c = scripted(&[frame(b'S', b"a\0b\0")]);
    assert!(!c.check_idle(), "status, then closed");
    let mut c = scripted(&[error("FATAL", "57P01", "terminating")]);
    assert!(!c.check_idle());
}

#[test]
fn tags_and_iterations() {
    assert_eq!(rows_affected("INSERT 0 3"), 3);
    assert_eq!(rows_affected("UPDATE 7"), 7);
    assert_eq!(rows_affected("CREATE TABLE"), 0);
    assert_eq!(rows_affected("SELECT x"), 0);
    assert_eq!(scram_iterations(b"r=a,s=b,i=4096"), Some(4096));
    assert_eq!(scram_iterations(b"r=a,s=b"), None);
    assert_eq!(scram_iterations(b"\xff"), None);
}

/// A message a hostile server might send: a known tag (or any byte) and a
/// short random body, framed with a correct length so parsing goes deep.
fn hostile_frame() -> impl Strategy<Value = Vec<u8>> {
    let tags = prop_oneof![
        Just(b'R'),
        Just(b'Z'),
        Just(b'D'),
        Just(b'T'),
        Just(b'E'),
        Just(b'N'),
        Just(b'C'),
        Just(b'S'),
        Just(b'K'),
        Just(b'1'),
        Just(b'2'),
        Just(b'n'),
        Just(b'G'),
        any::<u8>(),
    ];
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..24),
        (0u32..14, proptest::collection::vec(any::<u8>(), 0..24)).prop_map(|(a, rest)| {
            let mut b = a.to_be_bytes().to_vec();
            b.extend(rest);
            b
        }),
    ];
    (tags, body).prop_map(|(t, b)| frame(t, &b))
}

proptest! {
    #[test]
    fn hostile_servers_never_panic(
        frames in proptest::collection::vec(hostile_frame(), 0..12),
        raw in proptest::collection::vec(any::<u8>(), 0..64),
        ok_start in any::<bool>(),
    ) {
        let mut parts = Vec::new();
        if ok_start {
            parts.push(auth(0, b""));
            parts.push(ready(b'I'));
        }
        parts.extend(frames);
        parts.push(raw);
        replay_server(&parts.concat());
    }
}

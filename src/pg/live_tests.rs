//! Against a real PostgreSQL server; ignored unless asked for:
//!
//! ```sh
//! tests/support/postgres.sh run cargo test --lib pg:: -- --ignored
//! ```
//!
//! which starts a server and sets IMG_TEST_PG_URL (role `img`, SCRAM,
//! password in PGPASSWORD), IMG_TEST_PG_SOCKET_URL (the Unix socket),
//! IMG_TEST_PG_MD5_URL and IMG_TEST_PG_MD5_PASSWORD (a role stored as md5),
//! IMG_TEST_PG_DIR and IMG_TEST_PG_SUPPORT (to restart and stop it).

use super::{Conn, Param, PgError, Pool};
use std::sync::RwLock;
use std::time::Duration;

/// Tests that restart or stop the server take it exclusively.
static SERVER: RwLock<()> = RwLock::new(());

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests with tests/support/postgres.sh run cargo test ...")
    })
}

fn url() -> String {
    env("IMG_TEST_PG_URL")
}

/// Runs a function of tests/support/postgres.sh on the test server.
fn server(action: &str) {
    let support = std::env::var("IMG_TEST_PG_SUPPORT")
        .unwrap_or_else(|_| format!("{}/tests/support/postgres.sh", env!("CARGO_MANIFEST_DIR")));
    let st = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source '{support}' && {action}"))
        .env("PG_DIR", env("IMG_TEST_PG_DIR"))
        .status()
        .unwrap();
    assert!(st.success(), "{action} failed");
}

#[test]
#[ignore]
fn connects_with_scram_md5_and_the_socket() {
    let _g = SERVER.read().unwrap_or_else(|e| e.into_inner());
    let mut c = Conn::connect(&url()).unwrap();
    let r = c.query_one("SELECT current_user, version()", &[]).unwrap();
    assert_eq!(r.str(0).unwrap(), "img");
    assert!(r.str(1).unwrap().starts_with("PostgreSQL"));

    let md5 = env("IMG_TEST_PG_MD5_URL");
    let mut c = Conn::connect_with_password(&md5, &env("IMG_TEST_PG_MD5_PASSWORD")).unwrap();
    assert_eq!(c.query_one("SELECT current_user", &[]).unwrap().str(0).unwrap(), "img_md5");

    let mut c = Conn::connect(&env("IMG_TEST_PG_SOCKET_URL")).unwrap();
    assert_eq!(c.query_one("SELECT 1", &[]).unwrap().i64(0).unwrap(), 1);

    for u in [url(), md5] {
        let e = Conn::connect_with_password(&u, "wrong").err().unwrap();
        assert_eq!(e.code(), Some("28P01"), "{e}");
        assert!(!e.is_unavailable());
    }
}

#[test]
#[ignore]
fn parameters_of_every_kind_and_null() {
    let _g = SERVER.read().unwrap_or_else(|e| e.into_inner());
    let mut c = Conn::connect(&url()).unwrap();
    c.batch("CREATE TEMP TABLE p (t text, i int8, j int4, b bool, y bytea)").unwrap();
    let s = String::from("owned é");
    let n = c
        .execute(
            "INSERT INTO p VALUES ($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10)",
            &[
                "it's \"quoted\" \\ ü".into(),
                i64::MIN.into(),
                7u64.into(),
                true.into(),
                (&b"\x00\x01"[..]).into(),
                (&s).into(),
                Param::Null,
                None::<i64>.into(),
                Some(false).into(),
                None::<&[u8]>.into(),
            ],
        )
        .unwrap();
    assert_eq!(n, 2);
    let rows = c.query("SELECT t, i, j, b, y FROM p ORDER BY b DESC", &[]).unwrap();
    assert_eq!(rows.len(), 2);
    let (a, b) = (&rows[0], &rows[1]);
    assert_eq!(a.str(0).unwrap(), "it's \"quoted\" \\ ü");
    assert_eq!(a.i64(1).unwrap(), i64::MIN);
    assert_eq!(a.i64(2).unwrap(), 7);
    assert!(a.bool(3).unwrap());
    assert_eq!(a.bytes(4).unwrap(), vec![0, 1]);
    assert_eq!(b.str(0).unwrap(), "owned é");
    assert_eq!((b.text(1), b.text(2), b.text(4)), (None, None, None));
    assert!(b.i64(1).is_err());
    assert!(!b.bool(3).unwrap());
    // Parameters whose type the server infers from their use.
    let r = c
        .query_one(
            "SELECT $1 + 1, $2 = 'x', $3::text IS NULL, $4::int8",
            &[41.into(), "x".into(), Param::Null, "9".into()],
        )
        .unwrap();
    assert_eq!((r.i64(0).unwrap(), r.bool(1).unwrap(), r.bool(2).unwrap()), (42, true, true));
    assert_eq!(r.i64(3).unwrap(), 9);
    assert_eq!(c.query_opt("SELECT 1 WHERE false", &[]).unwrap(), None);
    assert_eq!(c.execute("UPDATE p SET j = 1 WHERE b", &[]).unwrap(), 1);
    // A bad statement is an error with its code; the connection goes on.
    let e = c.query("SELEC 1", &[]).unwrap_err();
    assert_eq!(e.code(), Some("42601"), "{e}");
    let e = c.query("SELECT $1::int8", &["x".into()]).unwrap_err();
    assert_eq!(e.code(), Some("22P02"), "{e}");
    assert!(!c.is_broken());
    assert_eq!(c.query("SELECT 1", &[]).unwrap().len(), 1);
}

#[test]
#[ignore]
fn bytea_round_trips_every_byte() {
    let _g = SERVER.read().unwrap_or_else(|e| e.into_inner());
    let mut c = Conn::connect(&url()).unwrap();
    let all: Vec<u8> = (0..=255u8).collect();
    let r = c.query_one("SELECT $1::bytea, length($1)", &[(&all).into()]).unwrap();
    assert_eq!(r.bytes(0).unwrap(), all);
    assert_eq!(r.i64(1).unwrap(), 256);
    c.batch("CREATE TEMP TABLE b (y bytea)").unwrap();
    let big: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i * 7 % 251) as u8).collect();
    c.execute("INSERT INTO b VALUES ($1), ($2)", &[(&all).into(), (&big).into()]).unwrap();
    let rows = c.query("SELECT y FROM b ORDER BY length(y)", &[]).unwrap();
    assert_eq!(rows[0].bytes(0).unwrap(), all);
    assert_eq!(rows[1].bytes(0).unwrap(), big);
}

#[test]
#[ignore]
fn unique_violations_transactions_and_batches() {
    let _g = SERVER.read().unwrap_or_else(|e| e.into_inner());
    let mut c = Conn::connect(&url()).unwrap();
    c.batch(
        "CREATE TEMP TABLE u (k text PRIMARY KEY, n int8 NOT NULL);
         CREATE TEMP SEQUENCE tries;
         INSERT INTO u VALUES ('a', 1);",
    )
    .unwrap();
    let e = c.execute("INSERT INTO u VALUES ($1, 2)", &["a".into()]).unwrap_err();
    assert!(e.is_unique_violation(), "{e}");
    assert!(!e.is_unavailable() && !c.is_broken());

    // An error inside rolls back what was done before it.
    let e = c
        .transaction(|c| {
            c.execute("INSERT INTO u VALUES ('b', 1)", &[])?;
            c.execute("INSERT INTO u VALUES ('a', 1)", &[])
        })
        .unwrap_err();
    assert!(e.is_unique_violation());
    let count = |c: &mut Conn| c.query_one("SELECT count(*) FROM u", &[]).unwrap().i64(0).unwrap();
    assert_eq!(count(&mut c), 1);
    // An error of the caller's rolls back too.
    let r: Result<(), PgError> = c.transaction(|c| {
        c.execute("INSERT INTO u VALUES ('c', 1)", &[])?;
        Err(c.query("SELECT 1/0", &[]).unwrap_err())
    });
    assert_eq!(r.unwrap_err().code(), Some("22012"));
    assert_eq!(count(&mut c), 1);
    // Serialization failures are retried: two fail, the third commits.
    let v = c
        .transaction(|c| {
            c.execute("INSERT INTO u VALUES ('d', 1)", &[])?;
            let n = c.query_one("SELECT nextval('tries')", &[])?.i64(0)?;
            if n < 3 {
                c.batch("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")?;
            }
            Ok(n)
        })
        .unwrap();
    assert_eq!(v, 3);
    assert_eq!(count(&mut c), 2);
    // Retries stop after five tries.
    let mut runs = 0;
    let e = c
        .transaction(|c| {
            runs += 1;
            c.batch("DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$")
        })
        .unwrap_err();
    assert_eq!((e.code(), runs), (Some("40P01"), 5));

    // A batch is one implicit transaction: a failing statement undoes it.
    let e = c.batch("INSERT INTO u VALUES ('e', 1); INSERT INTO u VALUES ('a', 1);").unwrap_err();
    assert!(e.is_unique_violation());
    assert_eq!(count(&mut c), 2);
    c.batch("INSERT INTO u VALUES ('e', 1); UPDATE u SET n = n + 1;").unwrap();
    assert_eq!(c.query_one("SELECT sum(n) FROM u", &[]).unwrap().i64(0).unwrap(), 6);
    c.batch("").unwrap();
}

#[test]
#[ignore]
fn the_pool_bounds_and_shares_connections() {
    let _g = SERVER.read().unwrap_or_else(|e| e.into_inner());
    let pool = Pool::new(&format!("{}?connect_timeout=2&application_name=img-test", url()), 2).unwrap();
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                for _ in 0..10 {
                    let n = pool.with(|c| c.query_one("SELECT 1 FROM pg_sleep(0.002)", &[])?.i64(0));
                    assert_eq!(n.unwrap(), 1);
                    assert!(pool.open() <= 2);
                }
            });
        }
    });
    let n = pool
        .with(|c| c.query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'img-test'", &[])?.i64(0))
        .unwrap();
    assert!((1..=2).contains(&n), "{n} connections");
    // All busy for longer than the wait: an error, not a hang.
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let hold = |tx: std::sync::mpsc::Sender<()>| {
            pool.with(|c| {
                tx.send(()).unwrap();
                c.execute("SELECT pg_sleep(3)", &[])
            })
        };
        let a = s.spawn({
            let tx = tx.clone();
            move || hold(tx)
        });
        let b = s.spawn(move || hold(tx));
        rx.recv().unwrap();
        rx.recv().unwrap();
        let t = std::time::Instant::now();
        let e = pool.with(|c| c.execute("SELECT 1", &[])).unwrap_err();
        assert!(e.is_unavailable() && e.to_string().contains("busy"), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(1900));
        a.join().unwrap().unwrap();
        b.join().unwrap().unwrap();
    });
    // A panic inside gives nothing back broken.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.with(|c| -> Result<(), PgError> {
            c.batch("BEGIN")?;
            panic!("inside")
        })
    }));
    assert!(r.is_err());
    assert!(pool.with(|c| c.execute("SELECT 1", &[])).is_ok());
}

#[test]
#[ignore]
fn a_restarted_server_gives_one_error_then_the_pool_reconnects() {
    let _g = SERVER.write().unwrap_or_else(|e| e.into_inner());
    let pool = Pool::new(&url(), 4).unwrap();
    let pid = |c: &mut Conn| c.query_one("SELECT pg_backend_pid()", &[])?.i64(0);
    let before = pool.with(pid).unwrap();
    let mut conn = Conn::connect(&url()).unwrap();
    assert_eq!(conn.query("SELECT 1", &[]).unwrap().len(), 1);

    // A statement running while the server goes down.
    std::thread::scope(|s| {
        let busy = s.spawn(|| {
            let mut c = Conn::connect(&url()).unwrap();
            let e = c.execute("SELECT pg_sleep(30)", &[]).unwrap_err();
            (e, c.is_broken())
        });
        std::thread::sleep(Duration::from_millis(500));
        server("pg_restart");
        let (e, broken) = busy.join().unwrap();
        assert!(e.is_unavailable() && broken, "{e}");
    });

    // An idle connection of one's own: one error, then it says it is broken.
    let e = conn.query("SELECT 1", &[]).unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(conn.is_broken());
    assert!(conn.query("SELECT 1", &[]).unwrap_err().is_unavailable());

    // The pool notices its idle connection died and connects afresh.
    let after = pool.with(pid).unwrap();
    assert_ne!(before, after);

    // Server down: errors that say so, quickly; up again: served again.
    server("pg_stop_server");
    for _ in 0..3 {
        let e = pool.with(pid).unwrap_err();
        assert!(e.is_unavailable(), "{e}");
    }
    let e = Conn::connect(&url()).err().unwrap();
    assert!(e.is_unavailable(), "{e}");
    server("pg_start_server");
    assert!(pool.with(pid).is_ok());
    assert!(pool.open() <= 4);
}

//! A small synchronous PostgreSQL client: protocol 3.0 over TCP (loopback)
//! or a Unix socket, without TLS; password, md5 and SCRAM-SHA-256
//! authentication; statements with text parameters (the extended query
//! protocol) and batches (the simple one); transactions retried on
//! serialization failures and deadlocks; a bounded pool of connections.
//!
//! Wire messages and SCRAM come from `postgres-protocol` (sans-IO); this
//! module does the IO. Input from the server is bounded: a message over
//! 64 MiB, or a query's rows over 256 MiB, is an error; nothing the server
//! sends makes it panic. Every socket read and write has a timeout (30 s).
//!
//! ```no_run
//! use img::pg::{Pool, Param};
//! let pool = Pool::new("postgres://img@127.0.0.1:5432/img", 8)?;
//! let n = pool.with(|c| c.execute("DELETE FROM t WHERE k = $1", &["x".into()]))?;
//! let rows = pool.with(|c| c.query("SELECT k, n FROM t WHERE n > $1", &[Param::Int(1)]))?;
//! # Ok::<(), img::pg::PgError>(())
//! ```

mod conn;
mod error;
mod passfile;
mod pool;
mod url;
mod value;
mod wire;

#[cfg(test)]
mod live_tests;

#[doc(hidden)]
pub use conn::replay_server;
pub use conn::Conn;
pub use error::PgError;
pub use pool::Pool;
pub use url::{parse as parse_url, Config, Host};
pub use value::{Param, Row};

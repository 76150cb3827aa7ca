//! The one error type of the client: what failed, with the server's
//! SQLSTATE when the server said so.

use std::io;

/// What kind of failure an error is; decides `is_unavailable` and whether
/// the connection can still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// The URL, the password source or an argument is wrong; nothing was sent.
    Config,
    /// The socket failed: refused, reset, closed or timed out.
    Io,
    /// The server sent bytes that are not the protocol.
    Protocol,
    /// The server answered with an ErrorResponse.
    Server,
    /// A value in a row is not what the caller asked for.
    Value,
    /// The pool had no connection to give within its wait.
    PoolTimeout,
    /// The connection failed earlier and cannot be used.
    Broken,
}

/// An error of the PostgreSQL client.
#[derive(thiserror::Error, Debug)]
#[error("{message}")]
pub struct PgError {
    kind: Kind,
    message: String,
    code: Option<String>,
    fatal: bool,
}

impl PgError {
    pub(super) fn new(kind: Kind, message: impl Into<String>) -> PgError {
        PgError { kind, message: message.into(), code: None, fatal: false }
    }

    pub(super) fn config(message: impl Into<String>) -> PgError {
        PgError::new(Kind::Config, message)
    }

    pub fn value(message: impl Into<String>) -> PgError {
        PgError::new(Kind::Value, message)
    }

    pub(super) fn protocol(target: &str, what: impl std::fmt::Display) -> PgError {
        PgError::new(
            Kind::Protocol,
            format!(
                "postgres at {target}: the server broke the protocol ({what}): check that \
                 the address is a postgresql server"
            ),
        )
    }

    pub(super) fn io(target: &str, e: &io::Error) -> PgError {
        let next = match e.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => {
                "check that the server is running and listens there"
            }
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                "the server did not answer in time; check that it is running and not overloaded"
            }
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => "the server closed the connection; it may be restarting",
            _ => "check that the server is running",
        };
        let what = match e.kind() {
            io::ErrorKind::UnexpectedEof => "connection closed".to_string(),
            io::ErrorKind::WouldBlock => "timed out".to_string(),
            _ => e.to_string(),
        };
        PgError::new(Kind::Io, format!("postgres at {target}: {what}: {next}"))
    }

    pub(super) fn server(target: &str, code: Option<String>, fatal: bool, message: String) -> PgError {
        PgError { kind: Kind::Server, message: format!("postgres at {target}: {message}"), code, fatal }
    }

    /// The server ended the session with this error (severity FATAL or
    /// PANIC): the connection is gone.
    pub(super) fn is_fatal(&self) -> bool {
        self.fatal
    }

    /// The SQLSTATE the server gave, such as `23505`.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// A row with the same unique key exists (SQLSTATE 23505).
    pub fn is_unique_violation(&self) -> bool {
        self.code() == Some("23505")
    }

    /// The transaction lost against another one and may succeed when run
    /// again: serialization failure (40001) or deadlock (40P01).
    pub fn is_retryable(&self) -> bool {
        matches!(self.code(), Some("40001" | "40P01"))
    }

    /// The database cannot be reached now: the connection was refused,
    /// reset, closed or timed out, the server is shutting down or starting
    /// (57P01, 57P02, 57P03), a connection exception (08xxx), or the pool had
    /// no connection to give in time.
    pub fn is_unavailable(&self) -> bool {
        match self.kind {
            Kind::Io | Kind::Broken | Kind::PoolTimeout => true,
            Kind::Server => match self.code() {
                Some(c) => matches!(c, "57P01" | "57P02" | "57P03") || c.starts_with("08"),
                None => false,
            },
            Kind::Config | Kind::Protocol | Kind::Value => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_by_kind_and_code() {
        let s = |c: &str| PgError::server("t", Some(c.into()), false, "m".into());
        assert!(s("57P01").is_unavailable());
        assert!(s("57P03").is_unavailable());
        assert!(s("08006").is_unavailable());
        assert!(!s("23505").is_unavailable());
        assert!(s("23505").is_unique_violation());
        assert!(s("40P01").is_retryable());
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(PgError::io("t", &e).is_unavailable());
        assert!(!PgError::protocol("t", "x").is_unavailable());
        assert!(!PgError::config("x").is_unavailable());
        assert_eq!(PgError::config("x").code(), None);
    }
}

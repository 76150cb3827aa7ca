//! One connection: startup and authentication, the extended query
//! protocol for statements with parameters, the simple one for batches,
//! and transactions.

use super::error::{Kind, PgError};
use super::passfile;
use super::url::{self, Config, Host};
use super::value::{Param, Row};
use super::wire::{self, ReadError, Stream};
use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::backend::{ErrorFields, Message};
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The most a query's rows may take in memory (roughly).
const MAX_RESULT: usize = 256 << 20;
/// More SCRAM iterations than this are refused: the client would spend
/// seconds of CPU on a server's say-so.
const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;
/// How many times `transaction` runs its closure at most.
const TRANSACTION_TRIES: u32 = 5;

/// Where the password comes from when the server asks for one.
#[derive(Clone)]
pub(super) enum Password {
    /// `PGPASSWORD`, else the password file.
    FromEnv,
    Given(String),
}

/// A connection to a PostgreSQL server.
pub struct Conn {
    reader: BufReader<Stream>,
    out: BytesMut,
    target: String,
    broken: bool,
    /// The transaction status of the last ReadyForQuery: `I` idle, `T` in a
    /// transaction, `E` in a failed transaction.
    status: u8,
}

impl Conn {
    /// Connects to `postgres://USER@HOST[:PORT]/DB[?host=/run/postgresql&
    /// application_name=..&connect_timeout=S]`.
    ///
    /// The password, if the server asks for one, comes from `PGPASSWORD` or
    /// the password file (`PGPASSFILE`, else `~/.pgpass`), as libpq reads
    /// them; a password in the URL is refused (it would be in the process's
    /// arguments). There is no TLS: `sslmode=require` is refused.
    pub fn connect(url: &str) -> Result<Conn, PgError> {
        Conn::open(&url::parse(url)?, &Password::FromEnv)
    }

    /// Connects with a password the caller read from somewhere else.
    pub fn connect_with_password(url: &str, password: &str) -> Result<Conn, PgError> {
        Conn::open(&url::parse(url)?, &Password::Given(password.to_string()))
    }

    pub(super) fn open(cfg: &Config, pw: &Password) -> Result<Conn, PgError> {
        let target = cfg.target();
        let stream = match &cfg.host {
            Host::Tcp(h) => {
                let addrs = (h.as_str(), cfg.port).to_socket_addrs().map_err(|e| PgError::io(&target, &e))?;
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
                let mut found = None;
                for a in addrs {
                    match TcpStream::connect_timeout(&a, cfg.connect_timeout) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let s = found.ok_or_else(|| PgError::io(&target, &last))?;
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
            Host::Unix(dir) => {
                Stream::Unix(UnixStream::connect(cfg.socket_path(dir)).map_err(|e| PgError::io(&target, &e))?)
            }
        };
        stream.set_timeout(Some(cfg.connect_timeout)).map_err(|e| PgError::io(&target, &e))?;
        let mut conn = Conn::over(stream, target);
        conn.startup(cfg, pw)?;
        conn.set_timeout(url::DEFAULT_TIMEOUT)?;
        Ok(conn)
    }

    pub(super) fn over(stream: Stream, target: String) -> Conn {
        Conn {
            reader: BufReader::with_capacity(64 << 10, stream),
            out: BytesMut::new(),
            target,
            broken: false,
            status: b'I',
        }
    }

    /// How long one read or write on the socket may wait (30 s unless
    /// set): a statement that runs longer fails and breaks the connection.
    pub fn set_timeout(&mut self, d: Duration) -> Result<(), PgError> {
        let d = d.max(Duration::from_millis(1));
        let r = self.reader.get_ref().set_timeout(Some(d));
        r.map_err(|e| self.fail_io(e))
    }

    /// The connection failed (the server went away, broke the protocol, or
    /// ended the session); drop it and open another.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Runs one statement with parameters and returns the number of rows
    /// it affected (inserted, updated, deleted, selected); rows it returns
    /// are dropped.
    pub fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, PgError> {
        self.extended(sql, params, false).map(|(_, n)| n)
    }

    /// Runs one statement with parameters and returns its rows.
    pub fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>, PgError> {
        self.extended(sql, params, true).map(|(rows, _)| rows)
    }

    /// Runs one statement that returns no row or one; more is an error.
    pub fn query_opt(&mut self, sql: &str, params: &[Param]) -> Result<Option<Row>, PgError> {
        let mut rows = self.query(sql, params)?;
        if rows.len() > 1 {
            return Err(PgError::value(format!(
                "postgres: a query meant to return at most one row returned {}: add a LIMIT \
                 or a unique condition",
                rows.len()
            )));
        }
        Ok(rows.pop())
    }

    /// Runs one statement that returns exactly one row.
    pub fn query_one(&mut self, sql: &str, params: &[Param]) -> Result<Row, PgError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| PgError::value("postgres: a query meant to return one row returned none"))
    }

    /// Runs several statements separated by `;`, without parameters (the
    /// simple query protocol; for migrations). Without an explicit
    /// transaction in it, the batch is one implicit transaction.
    pub fn batch(&mut self, sql: &str) -> Result<(), PgError> {
        self.usable()?;
        self.out.clear();
        frontend::query(sql, &mut self.out).map_err(|e| self.encode_error(e))?;
        self.send()?;
        self.results(false).map(|_| ())
    }

    /// Runs `f` between BEGIN and COMMIT, rolling back if it fails. When the
    /// transaction loses a serialization conflict (40001) or a deadlock
    /// (40P01), it is run again, at most 5 times in all. Isolation is READ
    /// COMMITTED unless `f` first runs `SET TRANSACTION ISOLATION LEVEL ...`.
    pub fn transaction<T>(&mut self, mut f: impl FnMut(&mut Conn) -> Result<T, PgError>) -> Result<T, PgError> {
        self.usable()?;
        if self.status != b'I' {
            return Err(PgError::value("postgres: a transaction was begun inside another one: end the first"));
        }
        let mut tries = 1;
        loop {
            let r = self.batch("BEGIN").and_then(|_| {
                let v = f(self)?;
                self.commit()?;
                Ok(v)
            });
            let e = match r {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if !self.broken && self.status != b'I' {
                let _ = self.batch("ROLLBACK");
            }
            if !e.is_retryable() || self.broken || tries >= TRANSACTION_TRIES {
                return Err(e);
            }
            let jitter = u64::from(rand::random::<u8>() % 16);
            std::thread::sleep(Duration::from_millis((5 << tries) + jitter));
            tries += 1;
        }
    }

    fn commit(&mut self) -> Result<(), PgError> {
        match self.status {
            b'T' => self.batch("COMMIT"),
            b'E' => Err(PgError::value(
                "postgres: a statement in the transaction failed and its error was not \
                 returned; the transaction is rolled back",
            )),
            _ => Err(PgError::value(
                "postgres: the transaction was ended inside transaction(): leave COMMIT and \
                 ROLLBACK to it",
            )),
        }
    }

    /// Between statements, outside a transaction.
    pub(super) fn status_idle(&self) -> bool {
        self.status == b'I'
    }

    /// Marks the connection unusable (its state is unknown).
    pub(super) fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Whether an idle connection is still good: looks, without waiting,
    /// whether the server closed it or ended the session meanwhile.
    pub(super) fn check_idle(&mut self) -> bool {
        loop {
            if self.broken || self.status != b'I' {
                return false;
            }
            if self.reader.buffer().is_empty() {
                if self.reader.get_ref().set_nonblocking(true).is_err() {
                    self.broken = true;
                    return false;
                }
                let r = self.reader.fill_buf().map(|b| b.len());
                if self.reader.get_ref().set_nonblocking(false).is_err() {
                    self.broken = true;
                    return false;
                }
                match r {
                    Ok(0) => {
                        self.broken = true;
                        return false;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(_) => {
                        self.broken = true;
                        return false;
                    }
                }
            }
            match self.read() {
                Ok(Message::ParameterStatus(_) | Message::NoticeResponse(_) | Message::NotificationResponse(_)) => {
                    continue
                }
                Ok(_) | Err(_) => {
                    self.broken = true;
                    return false;
                }
            }
        }
    }

    fn extended(&mut self, sql: &str, params: &[Param], keep: bool) -> Result<(Vec<Row>, u64), PgError> {
        self.usable()?;
        if params.len() > i16::MAX as usize {
            return Err(PgError::value(format!(
                "postgres: {} parameters cannot be sent, at most 32767: split the statement",
                params.len()
            )));
        }
        self.out.clear();
        let r = frontend::parse("", sql, params.iter().map(Param::type_oid), &mut self.out);
        r.map_err(|e| self.encode_error(e))?;
        let r = frontend::bind(
            "",
            "",
            params.iter().map(Param::format),
            params,
            |p, buf| Ok(if p.write(buf) { IsNull::No } else { IsNull::Yes }),
            None::<i16>,
            &mut self.out,
        );
        if r.is_err() {
            self.out.clear();
            return Err(PgError::value(
                "postgres: a parameter cannot be sent (one is over 2 GiB): send less at a time",
            ));
        }
        frontend::describe(b'P', "", &mut self.out).map_err(|e| self.encode_error(e))?;
        frontend::execute("", 0, &mut self.out).map_err(|e| self.encode_error(e))?;
        frontend::sync(&mut self.out);
        self.send()?;
        self.results(keep)
    }

    /// Reads the answer to one Sync or simple Query, up to ReadyForQuery.
    fn results(&mut self, keep: bool) -> Result<(Vec<Row>, u64), PgError> {
        let mut rows = Vec::new();
        let mut affected = 0;
        let mut failed: Option<PgError> = None;
        let mut size = 0usize;
        let mut columns: Option<usize> = None;
        loop {
            match self.read()? {
                Message::ParseComplete
                | Message::BindComplete
                | Message::CloseComplete
                | Message::NoData
                | Message::EmptyQueryResponse
                | Message::PortalSuspended
                | Message::ParameterStatus(_)
                | Message::NoticeResponse(_)
                | Message::NotificationResponse(_) => {}
                Message::RowDescription(d) => {
                    let n = d.fields().count();
                    columns = Some(n.map_err(|e| self.bad(format!("row description: {e}")))?);
                }
                Message::DataRow(body) => {
                    if !keep || failed.is_some() {
                        continue;
                    }
                    size = size.saturating_add(body.buffer().len() + 64);
                    if size > MAX_RESULT {
                        self.broken = true;
                        return Err(PgError::value(format!(
                            "postgres at {}: the rows of a query are over {} MiB: select less \
                             at a time",
                            self.target,
                            MAX_RESULT >> 20
                        )));
                    }
                    let row = Row::from_body(&body).map_err(|m| self.bad(m))?;
                    if columns.is_some_and(|c| c != row.len()) {
                        return Err(self.bad("a row whose columns differ from its description"));
                    }
                    rows.push(row);
                }
                Message::CommandComplete(c) => {
                    let tag = c.tag().map_err(|e| self.bad(format!("command tag: {e}")))?;
                    affected = rows_affected(tag);
                }
                Message::ErrorResponse(b) => {
                    let e = self.server_error(b.fields());
                    if e.is_fatal() {
                        return Err(e);
                    }
                    failed.get_or_insert(e);
                }
                Message::ReadyForQuery(b) => {
                    if !matches!(b.status(), b'I' | b'T' | b'E') {
                        return Err(self.bad("a transaction status that is not I, T or E"));
                    }
                    self.status = b.status();
                    return match failed {
                        Some(e) => Err(e),
                        None => Ok((rows, affected)),
                    };
                }
                Message::CopyInResponse(_) | Message::CopyOutResponse(_) => {
                    return Err(self.bad("COPY, which this client does not speak"));
                }
                _ => return Err(self.bad("a message out of place in a query's answer")),
            }
        }
    }

    fn startup(&mut self, cfg: &Config, pw: &Password) -> Result<(), PgError> {
        let mut params =
            vec![("user", cfg.user.as_str()), ("database", cfg.dbname.as_str()), ("client_encoding", "UTF8")];
        if let Some(a) = &cfg.application_name {
            params.push(("application_name", a.as_str()));
        }
        frontend::startup_message(params, &mut self.out).map_err(|e| self.encode_error(e))?;
        self.send()?;
        self.authenticate(cfg, pw)?;
        loop {
            match self.read_auth()? {
                Message::BackendKeyData(_) | Message::ParameterStatus(_) => {}
                Message::ReadyForQuery(b) => {
                    self.status = b.status();
                    return Ok(());
                }
                _ => return Err(self.bad("a message out of place after authentication")),
            }
        }
    }

    fn authenticate(&mut self, cfg: &Config, pw: &Password) -> Result<(), PgError> {
        loop {
            match self.read_auth()? {
                Message::AuthenticationOk => return Ok(()),
                Message::AuthenticationCleartextPassword => {
                    let p = self.password(cfg, pw)?;
                    let r = frontend::password_message(p.as_bytes(), &mut self.out);
                    r.map_err(|e| self.encode_error(e))?;
                    self.send()?;
                }
                Message::AuthenticationMd5Password(b) => {
                    let p = self.password(cfg, pw)?;
                    let hash = md5_hash(cfg.user.as_bytes(), p.as_bytes(), b.salt());
                    let r = frontend::password_message(hash.as_bytes(), &mut self.out);
                    r.map_err(|e| self.encode_error(e))?;
                    self.send()?;
                }
                Message::AuthenticationSasl(b) => {
                    let mut names = Vec::new();
                    let mut it = b.mechanisms();
                    loop {
                        match it.next() {
                            Ok(Some(m)) if names.len() < 16 => names.push(m.to_string()),
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(e) => return Err(self.bad(format!("sasl mechanisms: {e}"))),
                        }
                    }
                    if !names.iter().any(|m| m == sasl::SCRAM_SHA_256) {
                        self.broken = true;
                        return Err(PgError::config(format!(
                            "postgres at {}: the server offers only {names:?} authentication, \
                             which this client does not speak: use scram-sha-256 for the role",
                            self.target
                        )));
                    }
                    let p = self.password(cfg, pw)?;
                    self.scram(&p)?;
                }
                _ => {
                    self.broken = true;
                    return Err(PgError::config(format!(
                        "postgres at {}: the server asks for an authentication method this \
                         client does not speak (it speaks password, md5 and scram-sha-256): \
                         change the method in pg_hba.conf",
                        self.target
                    )));
                }
            }
        }
    }

    fn scram(&mut self, password: &str) -> Result<(), PgError> {
        let mut s = sasl::ScramSha256::new(password.as_bytes(), sasl::ChannelBinding::unsupported());
        let r = frontend::sasl_initial_response(sasl::SCRAM_SHA_256, s.message(), &mut self.out);
        r.map_err(|e| self.encode_error(e))?;
        self.send()?;
        let first = match self.read_auth()? {
            Message::AuthenticationSaslContinue(b) => b.data().to_vec(),
            _ => return Err(self.bad("no SASL continue message after the first SCRAM message")),
        };
        if let Some(n) = scram_iterations(&first) {
            if n > MAX_SCRAM_ITERATIONS {
                return Err(self.bad(format!("{n} SCRAM iterations asked, over the limit of {MAX_SCRAM_ITERATIONS}")));
            }
        }
        s.update(&first).map_err(|e| self.bad(format!("SCRAM server-first-message: {e}")))?;
        let r = frontend::sasl_response(s.message(), &mut self.out);
        r.map_err(|e| self.encode_error(e))?;
        self.send()?;
        match self.read_auth()? {
            Message::AuthenticationSaslFinal(b) => s.finish(b.data()).map_err(|e| {
                self.broken = true;
                PgError::new(
                    Kind::Protocol,
                    format!(
                        "postgres at {}: the server did not prove that it knows the password \
                         ({e}): check that the address is the server you meant",
                        self.target
                    ),
                )
            }),
            _ => Err(self.bad("no SASL final message after the last SCRAM message")),
        }
    }

    fn password(&mut self, cfg: &Config, pw: &Password) -> Result<String, PgError> {
        let note = match pw {
            Password::Given(p) => return Ok(p.clone()),
            Password::FromEnv => {
                if let Some(p) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
                    return Ok(p);
                }
                match passfile::path() {
                    None => "HOME is not set".to_string(),
                    Some(path) => match passfile::read(&path, cfg) {
                        Ok(Some(p)) => return Ok(p),
                        Ok(None) => format!("no line of {} matches", path.display()),
                        Err(note) => note,
                    },
                }
            }
        };
        self.broken = true;
        Err(PgError::config(format!(
            "postgres at {}: the server asks a password for role {:?} and none is set ({note}): \
             set PGPASSWORD or add the line {}:{}:{}:{}:PASSWORD to the password file",
            self.target,
            cfg.user,
            passfile::host_key(cfg).replace('\\', "\\\\").replace(':', "\\:"),
            cfg.port,
            cfg.dbname.replace('\\', "\\\\").replace(':', "\\:"),
            cfg.user.replace('\\', "\\\\").replace(':', "\\:"),
        )))
    }

    /// Reads a message during startup: an ErrorResponse is the error.
    fn read_auth(&mut self) -> Result<Message, PgError> {
        loop {
            match self.read()? {
                Message::NoticeResponse(_) => {}
                Message::ErrorResponse(b) => {
                    self.broken = true;
                    return Err(self.server_error(b.fields()));
                }
                m => return Ok(m),
            }
        }
    }

    fn usable(&self) -> Result<(), PgError> {
        if self.broken {
            return Err(PgError::new(
                Kind::Broken,
                format!("postgres at {}: the connection failed earlier: open a new one", self.target),
            ));
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), PgError> {
        let r = self.reader.get_mut().write_all(&self.out).and_then(|_| self.reader.get_mut().flush());
        self.out.clear();
        r.map_err(|e| self.fail_io(e))
    }

    fn read(&mut self) -> Result<Message, PgError> {
        match wire::read_message(&mut self.reader) {
            Ok(m) => Ok(m),
            Err(ReadError::Io(e)) => Err(self.fail_io(e)),
            Err(ReadError::Bad(m)) => Err(self.bad(m)),
        }
    }

    fn fail_io(&mut self, e: io::Error) -> PgError {
        self.broken = true;
        PgError::io(&self.target, &e)
    }

    fn bad(&mut self, what: impl std::fmt::Display) -> PgError {
        self.broken = true;
        PgError::protocol(&self.target, what)
    }

    /// A message could not be encoded (a NUL byte in a string, or too big);
    /// nothing was sent.
    fn encode_error(&mut self, e: io::Error) -> PgError {
        self.out.clear();
        PgError::value(format!("postgres: a statement or name cannot be sent ({e}): check it for NUL bytes"))
    }

    fn server_error(&mut self, mut fields: ErrorFields<'_>) -> PgError {
        let (mut code, mut severity, mut message, mut detail, mut hint) = (None, None, None, None, None);
        while let Ok(Some(f)) = fields.next() {
            let v = || {
                let b = f.value_bytes();
                String::from_utf8_lossy(&b[..b.len().min(2000)]).into_owned()
            };
            match f.type_() {
                b'C' => code = Some(v()),
                b'V' => severity = Some(v()),
                b'S' if severity.is_none() => severity = Some(v()),
                b'M' => message = Some(v()),
                b'D' => detail = Some(v()),
                b'H' => hint = Some(v()),
                _ => {}
            }
        }
        let code = code.filter(|c| c.len() == 5 && c.bytes().all(|b| b.is_ascii_alphanumeric()));
        let fatal = matches!(severity.as_deref(), Some("FATAL" | "PANIC"));
        if fatal {
            self.broken = true;
        }
        let mut text = message.unwrap_or_else(|| "an error without a message".into());
        if let Some(c) = &code {
            text.push_str(&format!(" (SQLSTATE {c})"));
        }
        if let Some(d) = detail {
            text.push_str(&format!(": {d}"));
        }
        if let Some(h) = hint {
            text.push_str(&format!("; hint: {h}"));
        }
        PgError::server(&self.target, code, fatal, text)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.broken {
            self.out.clear();
            frontend::terminate(&mut self.out);
            let _ = self.reader.get_ref().set_timeout(Some(Duration::from_secs(1)));
            let _ = self.reader.get_mut().write_all(&self.out);
        }
    }
}

/// Plays `bytes` as a server to a client that starts up and runs a query,
/// a batch and a transaction; for fuzzing. Never panics.
pub fn replay_server(bytes: &[u8]) {
    let cfg = Config {
        user: "img".into(),
        dbname: "img".into(),
        host: Host::Tcp("replay".into()),
        port: 5432,
        application_name: None,
        connect_timeout: url::DEFAULT_TIMEOUT,
    };
    let mut c = Conn::over(Stream::Script(io::Cursor::new(bytes.to_vec())), "replay".into());
    if c.startup(&cfg, &Password::Given("pw".into())).is_ok() {
        let _ = c.query("q", &[Param::Int(1), Param::Bytes(b"\0")]);
        let _ = c.batch("b");
        let _ = c.transaction(|c| c.execute("t", &[]));
        let _ = c.check_idle();
    }
}

/// The row count at the end of a command tag (`INSERT 0 3`, `UPDATE 2`).
fn rows_affected(tag: &str) -> u64 {
    let mut words = tag.split_whitespace();
    match words.next() {
        Some("INSERT" | "DELETE" | "UPDATE" | "SELECT" | "MOVE" | "FETCH" | "COPY" | "MERGE") => {
            words.last().and_then(|n| n.parse().ok()).unwrap_or(0)
        }
        _ => 0,
    }
}

/// The `i=` attribute of a SCRAM server-first-message.
fn scram_iterations(msg: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(msg).ok()?;
    s.split(',').find_map(|a| a.strip_prefix("i="))?.parse().ok()
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;

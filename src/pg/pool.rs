//! A bounded pool of connections shared by threads.

use super::conn::{Conn, Password};
use super::error::{Kind, PgError};
use super::url::{self, Config};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct State {
    idle: Vec<Conn>,
    /// Connections that exist: idle, lent out, or being opened.
    open: usize,
}

/// Connections to one database, at most `max` open at once.
pub struct Pool {
    cfg: Config,
    password: Password,
    max: usize,
    wait: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

impl Pool {
    /// Checks the URL and connects once (so that a wrong URL or password
    /// shows at start), keeping that connection.
    pub fn new(url: &str, max: usize) -> Result<Pool, PgError> {
        Pool::start(url, max, Password::FromEnv)
    }

    /// As `new`, with a password the caller read from somewhere else.
    pub fn with_password(url: &str, max: usize, password: &str) -> Result<Pool, PgError> {
        Pool::start(url, max, Password::Given(password.to_string()))
    }

    fn start(url: &str, max: usize, password: Password) -> Result<Pool, PgError> {
        let cfg = url::parse(url)?;
        let first = Conn::open(&cfg, &password)?;
        Ok(Pool {
            wait: cfg.connect_timeout,
            cfg,
            password,
            max: max.max(1),
            state: Mutex::new(State { idle: vec![first], open: 1 }),
            freed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` with a connection: an idle one that is still good, or a
    /// new one. When `max` are in use, waits for one to be given back (up
    /// to the URL's connect_timeout, 30 s by default), then fails with an
    /// error that `is_unavailable`. A connection that broke is dropped, not
    /// given back; when the database went away, the idle ones are dropped
    /// too, so the next call connects afresh.
    pub fn with<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, PgError>) -> Result<T, PgError> {
        let mut lent = Lent { pool: self, conn: Some(self.take()?) };
        let Some(conn) = lent.conn.as_mut() else {
            return Err(PgError::new(Kind::Broken, "postgres pool: no connection was taken"));
        };
        let r = f(conn);
        if let Err(e) = &r {
            if e.is_unavailable() {
                let stale = std::mem::take(&mut self.lock().idle);
                self.forget(stale.len());
            }
        }
        r
    }

    fn take(&self) -> Result<Conn, PgError> {
        let deadline = Instant::now() + self.wait;
        let mut st = self.lock();
        loop {
            if let Some(mut c) = st.idle.pop() {
                drop(st);
                if c.check_idle() {
                    return Ok(c);
                }
                c.mark_broken();
                drop(c);
                self.forget(1);
                st = self.lock();
                continue;
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return Conn::open(&self.cfg, &self.password).inspect_err(|_| self.forget(1));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PgError::new(
                    Kind::PoolTimeout,
                    format!(
                        "postgres at {}: all {} connections stayed busy for {} s: raise the \
                         pool size or look for slow statements",
                        self.cfg.target(),
                        self.max,
                        self.wait.as_secs()
                    ),
                ));
            }
            st = self.freed.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// `n` connections are gone.
    fn forget(&self, n: usize) {
        if n > 0 {
            let mut st = self.lock();
            st.open = st.open.saturating_sub(n);
            drop(st);
            self.freed.notify_all();
        }
    }

    fn give_back(&self, mut c: Conn) {
        // A timeout set for one long statement does not outlive the loan.
        if !c.is_broken() && c.status_idle() && c.set_timeout(url::DEFAULT_TIMEOUT).is_ok() {
            self.lock().idle.push(c);
            self.freed.notify_one();
        } else {
            // Dropped outside the lock: it may write a Terminate.
            c.mark_broken();
            drop(c);
            self.forget(1);
        }
    }

    /// Connections open now (idle and in use).
    pub fn open(&self) -> usize {
        self.lock().open
    }
}

/// A connection lent out; given back (or dropped) also when `f` panics.
struct Lent<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(mut c) = self.conn.take() {
            if std::thread::panicking() {
                c.mark_broken();
            }
            self.pool.give_back(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_and_connections_cross_threads() {
        fn shared<T: Send + Sync>() {}
        fn sent<T: Send>() {}
        shared::<Pool>();
        sent::<Conn>();
        shared::<PgError>();
    }

    #[test]
    fn a_pool_needs_a_good_url_and_a_server() {
        let e = Pool::new("postgres://img:pw@127.0.0.1/img", 2).err().unwrap();
        assert!(e.to_string().contains("password in the url"), "{e}");
        // Port 1 of loopback: nothing listens there.
        let e = Pool::new("postgres://img@127.0.0.1:1/img?connect_timeout=2", 2).err().unwrap();
        assert!(e.is_unavailable(), "{e}");
        let e = Pool::new("postgres://img@/img?host=/nonexistent&port=5", 2).err().unwrap();
        assert!(e.is_unavailable() && e.to_string().contains("/nonexistent/.s.PGSQL.5"), "{e}");
    }
}

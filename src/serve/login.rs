//! Password checks of `img serve`, bounded whatever callers do.
//!
//! argon2 takes about 19 MB and tens of milliseconds per check, on purpose.
//! So checks run on a small pool of workers, each with its argon2 memory
//! taken once and kept, behind a short queue; the same credentials asked
//! for at once share one check; a verified password is remembered for a
//! while (clients send it with every request); an address that keeps
//! failing waits longer and longer (up to a minute) before its next check,
//! and a user name that keeps failing is checked at most once a second.
//! Memory is the workers' blocks plus maps of bounded size, however many
//! logins fail.

use super::auth;
use crate::digest::Digest;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Checks waiting for a worker; more are refused at once.
const QUEUE: usize = 32;
/// Checks one address may have waiting or running at once.
const PER_ADDRESS: usize = 2;
/// How long a verified password is remembered.
const REMEMBER: Duration = Duration::from_secs(300);
/// Failures an address may have before it waits.
const ADDRESS_FREE: u32 = 5;
const ADDRESS_MAX_WAIT: Duration = Duration::from_secs(60);
/// Failures a user name may have before it is checked once a second.
const USER_FREE: u32 = 20;
/// Failures are forgotten after this long without one.
const FORGET: Duration = Duration::from_secs(600);
/// Entries each map may hold; the oldest goes when it is full.
const MAX_ENTRIES: usize = 10_000;
/// The most argon2 memory a stored hash may ask for (64 MiB).
const MAX_BLOCKS: usize = 64 * 1024;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Right,
    Wrong,
    /// Not checked now: retry after this many seconds.
    Busy(u64),
}

#[derive(Debug, Clone, Copy)]
struct Strikes {
    count: u32,
    last: Instant,
    until: Option<Instant>,
}

/// One check, shared by every caller with the same credentials.
#[derive(Default)]
struct Flight {
    result: Mutex<Option<bool>>,
    done: Condvar,
}

struct Job {
    key: Digest,
    ip: IpAddr,
    user: String,
    password: String,
    stored: String,
    flight: Arc<Flight>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    flights: HashMap<Digest, Arc<Flight>>,
    per_address: HashMap<IpAddr, usize>,
    remembered: HashMap<Digest, Instant>,
    addresses: HashMap<IpAddr, Strikes>,
    users: HashMap<String, Strikes>,
}

pub struct Logins {
    state: Arc<(Mutex<State>, Condvar)>,
}

impl Logins {
    /// A pool of `workers` threads.
    pub fn new(workers: usize) -> Logins {
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        for i in 0..workers.max(1) {
            let s = state.clone();
            let _ = std::thread::Builder::new().name(format!("login-{i}")).spawn(move || work(&s));
        }
        Logins { state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks `password` against `stored` (a PHC string) for `user`
    /// calling from `ip`.
    pub fn check(&self, ip: IpAddr, user: &str, password: &str, stored: &str) -> Outcome {
        let key = Digest::of_bytes(format!("{user}\0{password}\0{stored}").as_bytes());
        let now = Instant::now();
        let flight = {
            let mut st = self.lock();
            if st.remembered.get(&key).is_some_and(|t| t.elapsed() < REMEMBER) {
                return Outcome::Right;
            }
            if let Some(wait) = blocked(&st.addresses, &ip, now).or_else(|| blocked(&st.users, user, now)) {
                return Outcome::Busy(wait);
            }
            match st.flights.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let mine = st.per_address.get(&ip).copied().unwrap_or(0);
                    if mine >= PER_ADDRESS || st.queue.len() >= QUEUE {
                        return Outcome::Busy(1);
                    }
                    let f = Arc::new(Flight::default());
                    st.flights.insert(key.clone(), f.clone());
                    *st.per_address.entry(ip).or_insert(0) += 1;
                    // A user name being guessed is checked once a second.
                    if let Some(s) = st.users.get_mut(user) {
                        if s.count >= USER_FREE {
                            s.until = Some(now + Duration::from_secs(1));
                        }
                    }
                    st.queue.push_back(Job {
                        key,
                        ip,
                        user: user.to_string(),
                        password: password.to_string(),
                        stored: stored.to_string(),
                        flight: f.clone(),
                    });
                    self.state.1.notify_one();
                    f
                }
            }
        };
        let mut r = flight.result.lock().unwrap_or_else(|e| e.into_inner());
        while r.is_none() {
            r = flight.done.wait(r).unwrap_or_else(|e| e.into_inner());
        }
        if r.unwrap_or(false) {
            Outcome::Right
        } else {
            Outcome::Wrong
        }
    }

    /// Forgets every remembered password (a user changed or went).
    pub fn forget_verified(&self) {
        self.lock().remembered.clear();
    }

    /// Entries held, for tests: (remembered, addresses, users).
    pub fn held(&self) -> (usize, usize, usize) {
        let st = self.lock();
        (st.remembered.len(), st.addresses.len(), st.users.len())
    }
}

/// Seconds to wait, if `k` is waiting.
fn blocked<K: std::hash::Hash + Eq + ?Sized, Q: std::borrow::Borrow<K> + std::hash::Hash + Eq>(
    m: &HashMap<Q, Strikes>,
    k: &K,
    now: Instant,
) -> Option<u64> {
    let until = m.get(k)?.until?;
    (until > now).then(|| (until - now).as_secs().max(1))
}

/// Counts a failure of `k`; past `free` failures, it waits 1 s, then 2,
/// 4, ... up to `max`.
fn strike<K: std::hash::Hash + Eq + Clone>(m: &mut HashMap<K, Strikes>, k: K, free: u32, max: Duration) {
    let now = Instant::now();
    if !m.contains_key(&k) && m.len() >= MAX_ENTRIES {
        m.retain(|_, s| s.last.elapsed() < FORGET);
        if m.len() >= MAX_ENTRIES {
            let oldest = m.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| k.clone());
            if let Some(o) = oldest {
                m.remove(&o);
            }
        }
    }
    let s = m.entry(k).or_insert(Strikes { count: 0, last: now, until: None });
    if s.last.elapsed() > FORGET {
        s.count = 0;
    }
    s.count = s.count.saturating_add(1);
    s.last = now;
    if s.count > free {
        let exp = (s.count - free - 1).min(16);
        let wait = Duration::from_secs(1u64 << exp).min(max);
        s.until = Some(now + wait);
    }
}

fn work(state: &(Mutex<State>, Condvar)) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = {
            let mut st = state.0.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(j) = st.queue.pop_front() {
                    break j;
                }
                st = state.1.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let right = verify_with(&mut memory, &job.password, &job.stored);
        {
            let mut st = state.0.lock().unwrap_or_else(|e| e.into_inner());
            st.flights.remove(&job.key);
            if let Some(n) = st.per_address.get_mut(&job.ip) {
                *n -= 1;
                if *n == 0 {
                    st.per_address.remove(&job.ip);
                }
            }
            if right {
                st.remembered.retain(|_, t| t.elapsed() < REMEMBER);
                if st.remembered.len() < MAX_ENTRIES {
                    st.remembered.insert(job.key, Instant::now());
                }
                st.addresses.remove(&job.ip);
            } else {
                strike(&mut st.addresses, job.ip, ADDRESS_FREE, ADDRESS_MAX_WAIT);
                strike(&mut st.users, job.user, u32::MAX, Duration::ZERO);
            }
        }
        *job.flight.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(right);
        job.flight.done.notify_all();
    }
}

/// Whether `password` matches `stored`, computed in `memory` (grown once
/// to the hash's size, then kept).
pub fn verify_with(memory: &mut Vec<Block>, password: &str, stored: &str) -> bool {
    let Ok(h) = PasswordHash::new(stored) else { return false };
    let Ok(alg) = Algorithm::try_from(h.algorithm) else { return false };
    let Ok(params) = Params::try_from(&h) else { return false };
    let version = match h.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    let mut out = vec![0u8; expected.len()];
    if Argon2::new(alg, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_err()
    {
        return false;
    }
    // In constant time.
    out.iter().zip(expected.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 && out.len() == expected.len()
}

/// A stored hash for names that are not users, so that a wrong name takes
/// as long as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| auth::hash_password("img serve").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn verify_with_kept_memory_agrees_with_argon2() {
        let h = auth::hash_password("s3cret").unwrap();
        let mut mem = Vec::new();
        assert!(verify_with(&mut mem, "s3cret", &h));
        assert_eq!(mem.len(), Params::DEFAULT.block_count());
        assert!(!verify_with(&mut mem, "s3cret ", &h));
        assert!(!verify_with(&mut mem, "", &h));
        assert!(!verify_with(&mut mem, "s3cret", "not a hash"));
        assert!(auth::verify_password("s3cret", &h));
        // a hash that asks for more memory than allowed is refused, not run
        let big = "$argon2id$v=19$m=1048576,t=1,p=1$c29tZXNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8";
        assert!(!verify_with(&mut mem, "x", big));
        assert_eq!(mem.len(), Params::DEFAULT.block_count(), "no memory taken for it");
    }

    #[test]
    fn right_and_wrong_passwords_and_memory() {
        let l = Logins::new(2);
        let h = auth::hash_password("pw").unwrap();
        assert_eq!(l.check(ip("127.0.0.1"), "op", "pw", &h), Outcome::Right);
        assert_eq!(l.check(ip("127.0.0.1"), "op", "pw", &h), Outcome::Right, "remembered");
        assert_eq!(l.check(ip("127.0.0.1"), "op", "nope", &h), Outcome::Wrong);
        assert_eq!(l.held().0, 1);
    }

    /// Found: 64 wrong passwords at once took 1.25 GB. Now an address that
    /// keeps failing waits, and the pool bounds what runs at once.
    #[test]
    fn login_flood_is_bounded_per_address() {
        let l = Arc::new(Logins::new(2));
        let h = auth::hash_password("pw").unwrap();
        let attacker = ip("127.0.0.2");
        let mut wrong = 0;
        let mut busy = 0;
        for i in 0..40 {
            match l.check(attacker, "op", &format!("guess{i}"), &h) {
                Outcome::Wrong => wrong += 1,
                Outcome::Busy(_) => busy += 1,
                Outcome::Right => panic!("a guess was taken"),
            }
        }
        assert_eq!(wrong, ADDRESS_FREE as usize + 1, "after the free failures the address waits");
        assert_eq!(busy, 40 - wrong);
        // another address, with the right password, is served at once
        assert_eq!(l.check(ip("127.0.0.1"), "op", "pw", &h), Outcome::Right);
        // concurrent guesses from one address: at most PER_ADDRESS run
        let l2 = Arc::new(Logins::new(1));
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let (l2, h) = (l2.clone(), h.clone());
                std::thread::spawn(move || l2.check(ip("10.0.0.9"), "op", &format!("g{i}"), &h))
            })
            .collect();
        let outcomes: Vec<Outcome> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let ran = outcomes.iter().filter(|o| **o == Outcome::Wrong).count();
        assert!(ran <= ADDRESS_FREE as usize + 1, "{ran} checks ran for one address");
        assert!(outcomes.iter().any(|o| matches!(o, Outcome::Busy(_))));
    }

    #[test]
    fn a_guessed_user_is_checked_once_a_second() {
        let l = Logins::new(2);
        let h = auth::hash_password("pw").unwrap();
        for i in 0..USER_FREE {
            // each guess from its own address
            let a = IpAddr::from([10, 1, (i / 200) as u8, (i % 200) as u8]);
            assert_eq!(l.check(a, "op", &format!("g{i}"), &h), Outcome::Wrong);
        }
        assert_eq!(l.check(ip("10.2.0.1"), "op", "g-next", &h), Outcome::Wrong);
        assert!(matches!(l.check(ip("10.2.0.2"), "op", "g-next2", &h), Outcome::Busy(1)), "within the second");
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(l.check(ip("10.2.0.3"), "op", "pw", &h), Outcome::Right, "the right password after the second");
    }

    #[test]
    fn strikes_maps_stay_bounded() {
        let mut m: HashMap<u32, Strikes> = HashMap::new();
        for i in 0..(MAX_ENTRIES as u32 + 500) {
            strike(&mut m, i, 5, Duration::from_secs(60));
        }
        assert!(m.len() <= MAX_ENTRIES);
    }
}

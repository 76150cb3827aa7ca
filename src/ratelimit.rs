//! Bandwidth caps: `--limit-rate` of pull, push, copy and mount, and the
//! store's `limit-rate` setting.
//!
//! A command makes one [`RateLimit`] and every connection and thread of it
//! shares it, so that the cap holds for the command as a whole, however
//! many layers move at once. Like curl's `--limit-rate`, each direction is
//! capped on its own: bytes received (response bodies) and bytes sent
//! (request bodies) each have a token bucket filled at the rate.
//!
//! A bucket holds at most `burst` bytes (a tenth of a second's worth, at
//! least [`MIN_BURST`]) and starts full. A transfer takes tokens after it
//! reads a chunk and sleeps while the bucket is in debt, so that the bytes
//! handed on by time `t` never exceed `rate * t + burst`, and a transfer
//! that keeps the bucket busy gets the whole rate. The accounting is in
//! integers (nanoseconds and billionths of a byte), so it does not drift.

use std::fmt;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The smallest burst: below this, reads would be too small to be worth
/// their system calls.
pub const MIN_BURST: u64 = 4 << 10;
/// The most one read takes before it is paced: small enough that a slow
/// rate is paced smoothly, large enough not to cost at a fast one.
const MAX_CHUNK: usize = 64 << 10;
const NANOS: i128 = 1_000_000_000;

/// A token bucket on a clock the caller gives (nanoseconds since it was
/// made): no sleeping and no reading of the time here.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: u64,
    burst: u64,
    /// Tokens in billionths of a byte; negative while in debt.
    tokens: i128,
    /// When `tokens` was last filled up.
    last: u64,
}

impl Bucket {
    /// A full bucket of `burst` bytes filled at `rate` bytes a second (at
    /// least 1 each).
    pub fn new(rate: u64, burst: u64) -> Bucket {
        let (rate, burst) = (rate.max(1), burst.max(1));
        Bucket { rate, burst, tokens: i128::from(burst) * NANOS, last: 0 }
    }

    /// The burst [`RateLimit`] uses for `rate`.
    pub fn burst_for(rate: u64) -> u64 {
        (rate / 10).max(MIN_BURST)
    }

    /// Takes `n` bytes at time `now` (nanoseconds); returns how long the
    /// taker must wait before it hands them on (0: at once).
    pub fn take(&mut self, now: u64, n: u64) -> u64 {
        if now > self.last {
            let filled = i128::from(self.rate).saturating_mul(i128::from(now - self.last));
            self.tokens = self.tokens.saturating_add(filled).min(i128::from(self.burst) * NANOS);
            self.last = now;
        }
        self.tokens = self.tokens.saturating_sub(i128::from(n) * NANOS);
        if self.tokens >= 0 {
            return 0;
        }
        let debt = -self.tokens;
        let rate = i128::from(self.rate);
        let wait = (debt + rate - 1) / rate;
        u64::try_from(wait).unwrap_or(u64::MAX)
    }
}

/// Which way bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received: response bodies.
    Down,
    /// Sent: request bodies.
    Up,
}

/// One command's cap: a bucket each way on the real clock, shared by its
/// threads (sleeping ones).
pub struct RateLimit {
    rate: u64,
    start: Instant,
    down: Mutex<Bucket>,
    up: Mutex<Bucket>,
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RateLimit({} B/s)", self.rate)
    }
}

impl RateLimit {
    /// A cap of `rate` bytes a second each way (at least 1).
    pub fn new(rate: u64) -> Arc<RateLimit> {
        let rate = rate.max(1);
        let bucket = Bucket::new(rate, Bucket::burst_for(rate));
        Arc::new(RateLimit { rate, start: Instant::now(), down: Mutex::new(bucket.clone()), up: Mutex::new(bucket) })
    }

    /// Bytes a second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The largest read to pace at once.
    fn chunk(&self) -> usize {
        usize::try_from(Bucket::burst_for(self.rate)).unwrap_or(MAX_CHUNK).min(MAX_CHUNK)
    }

    /// Accounts for `n` bytes going `dir`, sleeping while the bucket is in debt.
    pub fn take(&self, dir: Direction, n: u64) {
        if n == 0 {
            return;
        }
        let now = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let bucket = match dir {
            Direction::Down => &self.down,
            Direction::Up => &self.up,
        };
        // A thread that panicked holding the lock left a bucket that is
        // still consistent: every update is one assignment.
        let wait = bucket.lock().unwrap_or_else(|p| p.into_inner()).take(now, n);
        if wait > 0 {
            std::thread::sleep(Duration::from_nanos(wait));
        }
    }
}

/// What a command asked for: its own cap, explicitly none (`--limit-rate
/// 0`, as curl), or nothing (then the store's setting decides).
#[derive(Debug, Clone, Default)]
pub enum Rate {
    #[default]
    Unset,
    Unlimited,
    Capped(Arc<RateLimit>),
}

impl Rate {
    /// `bytes` a second; 0 is no cap.
    pub fn bytes_per_second(bytes: u64) -> Rate {
        if bytes == 0 {
            Rate::Unlimited
        } else {
            Rate::Capped(RateLimit::new(bytes))
        }
    }

    /// The cap to apply, if any.
    pub fn limit(&self) -> Option<&Arc<RateLimit>> {
        match self {
            Rate::Capped(l) => Some(l),
            _ => None,
        }
    }

    /// Whether the command said nothing.
    pub fn is_unset(&self) -> bool {
        matches!(self, Rate::Unset)
    }
}

/// A reader whose bytes are paced by a [`RateLimit`] (or not, without one):
/// each read takes at most a burst, then waits for its tokens before it
/// returns.
pub struct Paced<R> {
    inner: R,
    limit: Option<(Arc<RateLimit>, Direction)>,
}

impl<R: Read> Paced<R> {
    pub fn new(inner: R, limit: Option<&Arc<RateLimit>>, dir: Direction) -> Paced<R> {
        Paced { inner, limit: limit.map(|l| (l.clone(), dir)) }
    }
}

impl<R: Read> Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some((limit, dir)) = &self.limit else { return self.inner.read(buf) };
        let len = buf.len().min(limit.chunk());
        let n = self.inner.read(&mut buf[..len])?;
        limit.take(*dir, n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_full_bucket_gives_its_burst_at_once_then_the_rate() {
        let mut b = Bucket::new(1000, 100);
        assert_eq!(b.take(0, 100), 0);
        // 50 bytes more: 50 ms at 1000 B/s.
        assert_eq!(b.take(0, 50), 50_000_000);
        // At 50 ms the debt is paid; 10 ms later 10 bytes are there.
        assert_eq!(b.take(60_000_000, 10), 0);
        assert_eq!(b.take(60_000_000, 1), 1_000_000);
    }

    #[test]
    fn an_idle_bucket_fills_only_to_its_burst() {
        let mut b = Bucket::new(1000, 100);
        assert_eq!(b.take(0, 100), 0);
        // An hour idle still gives only 100 bytes at once.
        assert_eq!(b.take(3600 * SEC, 100), 0);
        assert_eq!(b.take(3600 * SEC, 1), 1_000_000);
    }

    #[test]
    fn waits_round_up_and_huge_numbers_do_not_overflow() {
        let mut b = Bucket::new(3, 1);
        assert_eq!(b.take(0, 2), 333_333_334);
        let mut b = Bucket::new(u64::MAX, u64::MAX);
        assert_eq!(b.take(u64::MAX, u64::MAX), 0);
        let mut b = Bucket::new(1, 1);
        b.take(0, u64::MAX);
        assert_eq!(b.take(0, u64::MAX), u64::MAX);
        // A rate or burst of 0 is taken as 1.
        assert_eq!(Bucket::new(0, 0).take(0, 2), SEC);
    }

    #[test]
    fn a_busy_taker_gets_the_whole_rate() {
        // One reader that takes 64 KiB as soon as it may, for 10 s of
        // bytes at 500 KiB/s: done in 10 s less the burst, to the nanosecond.
        let rate = 500 << 10;
        let burst = Bucket::burst_for(rate);
        let mut b = Bucket::new(rate, burst);
        let (mut now, mut sent) = (0u64, 0u64);
        while sent < 10 * rate {
            now += b.take(now, 64 << 10);
            sent += 64 << 10;
        }
        let ideal = (sent - burst) as f64 / rate as f64;
        let took = now as f64 / SEC as f64;
        assert!((took - ideal).abs() < 1e-6, "took {took} s, ideal {ideal} s");
    }

    #[test]
    fn the_burst_is_a_tenth_of_a_second_and_at_least_the_minimum() {
        assert_eq!(Bucket::burst_for(10 << 20), 1 << 20);
        assert_eq!(Bucket::burst_for(1000), MIN_BURST);
        let l = RateLimit::new(1 << 20);
        assert_eq!(l.chunk(), MAX_CHUNK);
        assert_eq!(RateLimit::new(10_000).chunk(), MIN_BURST as usize);
    }

    #[test]
    fn rate_zero_is_no_cap() {
        assert!(matches!(Rate::bytes_per_second(0), Rate::Unlimited));
        assert_eq!(Rate::bytes_per_second(7).limit().map(|l| l.rate()), Some(7));
        assert!(Rate::default().is_unset());
    }

    #[test]
    fn paced_reads_pass_the_bytes_through_in_chunks() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let limit = RateLimit::new(u64::MAX / 2);
        let mut r = Paced::new(&data[..], Some(&limit), Direction::Down);
        let mut buf = vec![0u8; 1 << 20];
        assert_eq!(r.read(&mut buf).unwrap(), MAX_CHUNK);
        let mut out = buf[..MAX_CHUNK].to_vec();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        let mut plain = Paced::new(&data[..], None, Direction::Up);
        assert_eq!(plain.read(&mut buf).unwrap(), data.len());
    }

    #[test]
    fn paced_reads_sleep_for_their_tokens() {
        // 40 KiB at 100 KiB/s with a 10 KiB burst: at least 0.3 s.
        let data = vec![0u8; 40 << 10];
        let limit = RateLimit::new(100 << 10);
        let began = Instant::now();
        let mut out = Vec::new();
        Paced::new(&data[..], Some(&limit), Direction::Up).read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), data.len());
        assert!(began.elapsed() >= Duration::from_millis(300), "{:?}", began.elapsed());
    }

    proptest::proptest! {
        /// Over any schedule of takers (threads taking at any moment, any
        /// amounts), the bytes released by any time t are at most
        /// rate * t + burst.
        #[test]
        fn released_bytes_never_exceed_rate_times_time_plus_burst(
            rate in 1u64..100_000_000,
            burst in 1u64..10_000_000,
            steps in proptest::collection::vec((0u64..2_000_000_000, 1u64..1_000_000), 1..200),
        ) {
            let mut b = Bucket::new(rate, burst);
            let mut now = 0u64;
            let mut released: Vec<(u64, u64)> = Vec::new();
            for (advance, n) in steps {
                now += advance;
                released.push((now + b.take(now, n), n));
            }
            released.sort();
            let mut total = 0u128;
            for (at, n) in released {
                total += u128::from(n);
                proptest::prop_assert!(
                    total * NANOS as u128 <= u128::from(rate) * u128::from(at) + u128::from(burst) * NANOS as u128,
                    "{} bytes by {} ns at {} B/s, burst {}", total, at, rate, burst
                );
            }
        }

        /// A taker that always takes again as soon as it may is never held
        /// back more than the rate says.
        #[test]
        fn a_busy_taker_is_never_slower_than_the_rate(
            rate in 1_000u64..100_000_000,
            sizes in proptest::collection::vec(1u64..100_000, 1..100),
        ) {
            let burst = Bucket::burst_for(rate);
            let mut b = Bucket::new(rate, burst);
            let mut now = 0u64;
            let mut total = 0u64;
            let takes = sizes.len() as u128;
            for n in sizes {
                now += b.take(now, n);
                total += n;
            }
            let ideal = u128::from(total.saturating_sub(burst)) * NANOS as u128 / u128::from(rate);
            proptest::prop_assert!(u128::from(now) <= ideal + takes, "{} ns for {} bytes at {} B/s", now, total, rate);
        }
    }
}

//! Which Range requests fetch a set of compressed byte ranges: neighbours
//! joined into one request when little lies between them, no request
//! longer than a bound. Pure.
//!
//! A lazy read of an eStargz or zstd:chunked layer wants one chunk, and
//! the chunks after it when reads go in order; each chunk is its own gzip
//! member or zstd frame, so a request each made a whole read of an image
//! of small files cost thousands of round trips. Joined, the bytes between
//! two wanted ranges (tar headers, chunks already held) are fetched too,
//! which is cheaper than a round trip while the gap is small.

/// Bytes between two wanted ranges up to which they go in one request.
pub const GAP: u64 = 256 << 10;

/// The most bytes one request asks for: a read waits for its whole request,
/// so a bound keeps the first byte near.
pub const MAX_REQUEST: u64 = 8 << 20;

/// Requests (`start..end`, sorted, disjoint) that fetch every byte of
/// `want` (ranges in any order, overlapping or empty ones allowed). Two
/// wanted ranges share a request only when at most `gap` bytes not wanted
/// lie between them, a request starts and ends on wanted bytes, and none
/// is longer than `max` (a longer wanted range is split).
pub fn coalesce(want: &[(u64, u64)], gap: u64, max: u64) -> Vec<(u64, u64)> {
    let max = max.max(1);
    let mut v: Vec<(u64, u64)> = want.iter().copied().filter(|(s, e)| s < e).collect();
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in v {
        let mut s = s;
        if let Some(last) = out.last_mut() {
            // What the last request holds already.
            s = s.max(last.1);
            if s >= e {
                continue;
            }
            // Joined to it as far as its bound allows, when the gap is small.
            if s - last.1 <= gap && last.1 - last.0 < max && s < last.0 + max {
                let end = e.min(last.0 + max);
                last.1 = end;
                s = end;
            }
        }
        while s < e {
            let end = e.min(s.saturating_add(max));
            out.push((s, end));
            s = end;
        }
    }
    out
}

/// The parts of `start..end` that `held` (sorted, disjoint) lacks.
pub fn missing(start: u64, end: u64, held: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = start;
    let first = held.partition_point(|r| r.1 <= start);
    for &(s, e) in &held[first..] {
        if s >= end || at >= end {
            break;
        }
        if s > at {
            out.push((at, s.min(end)));
        }
        at = at.max(e);
    }
    if at < end {
        out.push((at, end));
    }
    out
}

/// Bytes of `start..end` that `held` (sorted, disjoint) holds.
pub fn held_within(start: u64, end: u64, held: &[(u64, u64)]) -> u64 {
    held.iter().map(|&(s, e)| e.min(end).saturating_sub(s.max(start))).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn coalesce_table() {
        let k = 1 << 10;
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Vec<(u64, u64)>, u64, u64, Vec<(u64, u64)>)> = vec![
            ("nothing", vec![], k, 10 * k, vec![]),
            ("empty ranges", vec![(5, 5), (9, 3)], k, 10 * k, vec![]),
            ("one", vec![(10, 20)], k, 10 * k, vec![(10, 20)]),
            ("adjacent joined", vec![(0, 10), (10, 30)], 0, 100, vec![(0, 30)]),
            ("small gap joined", vec![(0, 10), (15, 30)], 5, 100, vec![(0, 30)]),
            ("big gap apart", vec![(0, 10), (16, 30)], 5, 100, vec![(0, 10), (16, 30)]),
            ("unsorted", vec![(40, 50), (0, 10), (12, 20)], 2, 100, vec![(0, 20), (40, 50)]),
            ("overlapping", vec![(0, 30), (10, 20), (25, 40)], 0, 100, vec![(0, 40)]),
            ("bounded", vec![(0, 10), (10, 20), (20, 30)], 0, 20, vec![(0, 20), (20, 30)]),
            ("long range split", vec![(0, 25)], 0, 10, vec![(0, 10), (10, 20), (20, 25)]),
            ("partly joined then split", vec![(0, 5), (6, 30)], 1, 10, vec![(0, 10), (10, 20), (20, 30)]),
            ("max 0 counts as 1", vec![(0, 2)], 0, 0, vec![(0, 1), (1, 2)]),
        ];
        for (name, want, gap, max, expect) in cases {
            assert_eq!(coalesce(&want, gap, max), expect, "{name}");
        }
    }

    #[test]
    fn missing_and_held_table() {
        let held = [(10, 20), (30, 40)];
        assert_eq!(missing(0, 50, &held), vec![(0, 10), (20, 30), (40, 50)]);
        assert_eq!(missing(12, 18, &held), vec![]);
        assert_eq!(missing(15, 35, &held), vec![(20, 30)]);
        assert_eq!(missing(40, 45, &held), vec![(40, 45)]);
        assert_eq!(missing(0, 50, &[]), vec![(0, 50)]);
        assert_eq!(held_within(0, 50, &held), 20);
        assert_eq!(held_within(15, 35, &held), 10);
        assert_eq!(held_within(20, 30, &held), 0);
    }

    proptest! {
        /// Every wanted byte is in exactly one request, requests are
        /// sorted and disjoint, none is above the bound, starts or ends on
        /// a byte not wanted, or holds a run of unwanted bytes over the gap.
        #[test]
        fn coalesce_covers_bounds_and_keeps_gaps_small(
            want in proptest::collection::vec((0u64..400, 0u64..60), 0..20),
            gap in 0u64..40,
            max in 1u64..120,
        ) {
            let want: Vec<(u64, u64)> = want.into_iter().map(|(s, l)| (s, s + l)).collect();
            let reqs = coalesce(&want, gap, max);
            let wanted = |b: u64| want.iter().any(|&(s, e)| s <= b && b < e);
            for w in reqs.windows(2) {
                prop_assert!(w[0].1 <= w[1].0, "not sorted and disjoint: {:?}", reqs);
            }
            for &(s, e) in &reqs {
                prop_assert!(s < e && e - s <= max, "request {s}..{e} over {max}");
                prop_assert!(wanted(s) && wanted(e - 1), "request {s}..{e} starts or ends on unwanted bytes");
                let mut run = 0;
                for b in s..e {
                    run = if wanted(b) { 0 } else { run + 1 };
                    prop_assert!(run <= gap, "a gap over {gap} inside {s}..{e}");
                }
            }
            for &(s, e) in &want {
                for b in s..e {
                    prop_assert!(reqs.iter().any(|&(rs, re)| rs <= b && b < re), "byte {b} not fetched");
                }
            }
        }

        /// `missing` and the held ranges together are the range, without overlap.
        #[test]
        fn missing_is_the_complement(
            held in proptest::collection::vec((0u64..200, 1u64..30), 0..10),
            start in 0u64..200,
            len in 0u64..100,
        ) {
            let mut h: Vec<(u64, u64)> = held.into_iter().map(|(s, l)| (s, s + l)).collect();
            h.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::new();
            for (s, e) in h {
                match merged.last_mut() {
                    Some(l) if s <= l.1 => l.1 = l.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            let end = start + len;
            let m = missing(start, end, &merged);
            let total: u64 = m.iter().map(|(s, e)| e - s).sum();
            prop_assert_eq!(total + held_within(start, end, &merged), len);
            for &(s, e) in &m {
                prop_assert!(start <= s && s < e && e <= end);
                prop_assert_eq!(held_within(s, e, &merged), 0);
            }
        }
    }
}

//! Keeping the store within its size (`max-size` in `ROOT/config.toml`):
//! before a command adds data, images are evicted least recently used
//! first, as kubelet's image garbage collection does (above the high
//! watermark, down to the low one), never one that is pinned, mounted or
//! used by a command still running; when not enough can be freed the
//! command fails before it writes. Also `img pin`/`img unpin` and
//! `img system prune --max-size`.

use super::progress::Progress;
use super::remove::Removed;
use crate::digest::Digest;
use crate::store::index::Lease;
use crate::store::Store;
use crate::timefmt::human_size;
use anyhow::Result;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The unit file sizes are counted in (a filesystem block), so that many
/// small blobs are not taken for less than the disk they occupy.
const BLOCK: u64 = 4096;

/// An image eviction may choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: Digest,
    /// Seconds since the epoch; the smallest goes first.
    pub last_used: i64,
    /// Pinned, mounted, used by a running command or named by this one.
    pub protected: bool,
    /// Its stored blobs with the bytes each takes on disk.
    pub blobs: Vec<(Digest, u64)>,
}

/// What evicting would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Images to remove, least recently used first.
    pub evict: Vec<Digest>,
    /// The bytes of the blobs no remaining image would need.
    pub freed: u64,
}

/// Chooses images to evict until `need` bytes are freed: unprotected
/// images, least recently used first (ties by ID); a blob counts as freed
/// when the last image that needs it goes (shared layers stay with the
/// images that remain). When `need` cannot be reached, every unprotected
/// image is chosen and `freed` says how much that gives. Pure.
pub fn plan(candidates: &[Candidate], need: u64) -> Plan {
    let unique = |c: &Candidate| -> Vec<(Digest, u64)> {
        let mut seen = HashSet::new();
        c.blobs.iter().filter(|(d, _)| seen.insert(d.clone())).cloned().collect()
    };
    let mut refs: HashMap<Digest, usize> = HashMap::new();
    for c in candidates {
        for (d, _) in unique(c) {
            *refs.entry(d).or_default() += 1;
        }
    }
    let mut order: Vec<&Candidate> = candidates.iter().filter(|c| !c.protected).collect();
    order.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.id.cmp(&b.id)));
    let mut out = Plan::default();
    for c in order {
        if out.freed >= need {
            break;
        }
        out.evict.push(c.id.clone());
        for (d, size) in unique(c) {
            if let Some(n) = refs.get_mut(&d) {
                *n -= 1;
                if *n == 0 {
                    out.freed += size;
                }
            }
        }
    }
    out
}

/// Bytes a file of `len` bytes takes on disk, to the block.
pub fn on_disk(len: u64) -> u64 {
    len.div_ceil(BLOCK).saturating_mul(BLOCK)
}

/// What `n` bytes in `blobs` blobs will take once stored: each blob to the
/// block, a layer index of up to 1/32 of it, and room for the index rows.
pub fn incoming_bytes(sizes: &[u64]) -> u64 {
    sizes.iter().map(|&s| on_disk(s)).fold(index_bytes(sizes), u64::saturating_add)
}

/// What storing blobs of `sizes` (already written) adds besides them: a
/// layer index of up to 1/32 of each, and room for the index rows.
pub fn index_bytes(sizes: &[u64]) -> u64 {
    sizes.iter().map(|&s| s / 32).fold(64 << 10, u64::saturating_add)
}

/// What the store takes on disk, as `du` counts it: blobs, layer indexes,
/// lazy layers' caches, ingests in progress and the index database.
/// Mountpoints and writable mounts' changes are not the store's.
pub fn usage(store: &Store) -> u64 {
    let p = store.paths();
    let db = p.db();
    let mut total = 0;
    for dir in [p.blobs_dir(), p.layer_indexes_dir(), p.lazy_dir(), p.ingest_dir()] {
        total += tree_size(&dir, 0);
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut f = db.clone().into_os_string();
        f.push(suffix);
        total += file_size(Path::new(&f));
    }
    total
}

fn file_size(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).map(|m| m.blocks() * 512).unwrap_or(0)
}

fn tree_size(p: &Path, depth: u32) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    let mut total = 0;
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() && depth < 8 {
            total += tree_size(&e.path(), depth + 1);
        } else {
            total += file_size(&e.path());
        }
    }
    total
}

/// The bytes of a file, or of the files under a directory (an OCI layout).
pub fn usage_of_path(p: &Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => tree_size(p, 0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Process `pid`'s start time in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), if it is alive.
fn process_start(pid: i64) -> Option<i64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count after it.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    // Field 3, the state: a zombie has ended (as mount::pid_alive reads it).
    if fields.next()?.starts_with('Z') {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// This command's lease: its process and start time.
pub fn own_lease() -> Option<Lease> {
    let pid = i64::from(std::process::id());
    Some(Lease { pid, started: process_start(pid)? })
}

fn lease_alive(l: &Lease) -> bool {
    process_start(l.pid) == Some(l.started)
}

/// Records that this command uses image `id` now: its last use, and a
/// lease that keeps eviction from it while this process runs. Best
/// effort: a store that cannot be written to is still read.
pub fn note_use(store: &Store, id: &Digest) {
    let _ = store.index().note_use(id, own_lease());
}

/// Pins (or unpins) image `name`; returns its ID.
pub fn pin(store: &mut Store, name: &str, pinned: bool) -> Result<Digest> {
    let img = super::resolve_image(store, name)?;
    if !store.index_mut().set_pinned(&img.id, pinned)? {
        return Err(super::NotFound(name.to_string()).into());
    }
    Ok(img.id)
}

/// What an eviction removed.
#[derive(Debug, Clone, Default)]
pub struct Evicted {
    pub removed: Vec<Removed>,
    /// Blob bytes deleted.
    pub bytes: u64,
    pub blobs: u64,
}

/// The images eviction may choose now, with everything protected marked:
/// pinned, mounted (or holding uncommitted changes), leased by a live
/// command, or in `keep`. Forgets the leases of commands that ended.
/// Call with the exclusive lock held.
fn candidates(store: &mut Store, keep: &[Digest]) -> Result<Vec<Candidate>> {
    candidates_with(store, keep, true)
}

/// `candidates`, or (`sweep` false) a quick look that neither waits for
/// exiting commands nor forgets ended leases, for an estimate without
/// the exclusive lock.
fn candidates_with(store: &mut Store, keep: &[Digest], sweep: bool) -> Result<Vec<Candidate>> {
    let mut protected: HashSet<Digest> = keep.iter().cloned().collect();
    for m in crate::mount::mounts(store)? {
        if m.serving || m.mounted || crate::mount::has_uncommitted_changes(&m.record)? {
            protected.insert(m.record.image_id);
        }
    }
    let mut ended = Vec::new();
    let leases = store.index().leases()?;
    // A command that just let go of the store's lock may still be exiting
    // (its files closed, the process not yet gone): give such ones a
    // moment before taking their leases for commands at work.
    for _ in 0..if sweep { 10 } else { 0 } {
        if !leases.iter().any(|(_, l)| lease_alive(l)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for (id, lease) in leases {
        if lease_alive(&lease) {
            protected.insert(id);
        } else if !ended.contains(&lease) {
            ended.push(lease);
        }
    }
    if sweep {
        store.index_mut().drop_leases(&ended)?;
    }
    Ok(store
        .index()
        .eviction_rows()?
        .into_iter()
        .map(|r| Candidate {
            protected: r.pinned || protected.contains(&r.id),
            id: r.id,
            last_used: r.last_used,
            blobs: r.blobs.into_iter().map(|(d, s)| (d, on_disk(s))).collect(),
        })
        .collect())
}

/// Removes the images of `plan` (rows first), then the blobs only they
/// needed. Needs the exclusive lock.
fn evict(store: &mut Store, candidates: &[Candidate], plan: &Plan) -> Result<Evicted> {
    let mut out = Evicted::default();
    let mut blobs: Vec<Digest> = Vec::new();
    for id in &plan.evict {
        if let Some(c) = candidates.iter().find(|c| &c.id == id) {
            blobs.extend(c.blobs.iter().map(|(d, _)| d.clone()));
        }
        let del = store.index_mut().delete_image(id)?;
        if del.deleted {
            out.removed.push(Removed { untagged: del.untagged, deleted: vec![id.clone()] });
        }
    }
    blobs.sort();
    blobs.dedup();
    let (n, bytes) = store.delete_unreferenced(Some(&blobs))?;
    out.blobs = n;
    out.bytes = bytes;
    Ok(out)
}

/// Why a command cannot add its data: the limit, what it needs and what
/// could be freed.
#[derive(Debug, thiserror::Error)]
#[error("{what} needs {}{} but the store (max-size {}, {} used) can free only {}: unpin or remove images, or raise max-size in {config}", if *.more_than { "more than " } else { "" }, human_size(*.needs), human_size(*.max), human_size(*.used), human_size(*.freeable))]
pub struct NoRoom {
    pub what: String,
    pub needs: u64,
    /// The data came from a stream that was stopped once it passed
    /// `needs`: it needs more.
    pub more_than: bool,
    pub max: u64,
    pub used: u64,
    pub freeable: u64,
    pub config: String,
}

/// The bytes of `ingest/`: data being written (or left by a command
/// that stopped).
fn ingest_usage(store: &Store) -> u64 {
    tree_size(&store.paths().ingest_dir(), 0)
}

/// What the store will take once the commands adding data now are done:
/// what it takes, plus the room they claimed less what they have
/// written so far (it is in `ingest/`, already counted).
fn projected(used: u64, ingest: u64, claimed: u64) -> u64 {
    used.saturating_add(claimed.saturating_sub(ingest))
}

/// Makes room for `incoming` bytes that `what` (a pull, load or build
/// step, named as "pulling NAME") is about to write, if the store has a
/// `max-size`: above the high watermark, images are evicted down to the
/// low one (or at least to `max-size`). Fails with `NoRoom`, changing
/// nothing, when even evicting every image it may would not make room.
/// Images in `keep` (those the command works on) are never chosen.
///
/// The room is claimed for this command (until it ends) in the same
/// transaction that counts what other running commands claimed, so two
/// commands adding data at once do not together pass the limit.
pub fn make_room(
    store: &mut Store,
    incoming: u64,
    what: &str,
    keep: &[Digest],
    progress: &dyn Progress,
) -> Result<Evicted> {
    make_room_for(store, 0, incoming, what, keep, progress)
}

/// `make_room` for a command that has already staged blobs of `sizes` in
/// `ingest/` (counted in the store's use) and is about to store them,
/// with their layer indexes.
pub fn make_room_for_staged(
    store: &mut Store,
    sizes: &[u64],
    what: &str,
    keep: &[Digest],
    progress: &dyn Progress,
) -> Result<Evicted> {
    let staged = sizes.iter().map(|&s| on_disk(s)).fold(0, u64::saturating_add);
    make_room_for(store, staged, index_bytes(sizes), what, keep, progress)
}

/// `make_room` for a command that has already staged `staged` bytes in
/// `ingest/` (counted in the store's use) and will write `incoming` more.
fn make_room_for(
    store: &mut Store,
    staged: u64,
    incoming: u64,
    what: &str,
    keep: &[Digest],
    progress: &dyn Progress,
) -> Result<Evicted> {
    let config = store.config()?;
    let (Some(max), Some(high), Some(low)) = (config.max_size, config.high_bytes(), config.low_bytes()) else {
        return Ok(Evicted::default());
    };
    let own = own_lease();
    let used = usage(store);
    let ingest = ingest_usage(store);
    let fits = |claimed: u64| projected(used, ingest, claimed).saturating_add(incoming) <= high;
    let claimed = match &own {
        Some(own) => store.index_mut().reserve_space(own, staged.saturating_add(incoming), &lease_alive, &fits)?.1,
        None => fits(0),
    };
    if claimed {
        return Ok(Evicted::default());
    }
    let was_exclusive = store.try_lock_exclusive()?;
    if !was_exclusive {
        progress.line("waiting for other img processes to finish to make room in the store");
        store.lock_exclusive(|| {})?;
    }
    // Under the exclusive lock no other command is adding data: what they
    // claimed has been written or has ended with them.
    let res = (|| {
        let used = usage(store);
        let after = used.saturating_add(incoming);
        let claim = |store: &mut Store| -> Result<()> {
            if let Some(own) = &own {
                store.index_mut().reserve_space(own, staged.saturating_add(incoming), &lease_alive, &|_| true)?;
            }
            Ok(())
        };
        if after <= high {
            claim(store)?;
            return Ok(Evicted::default());
        }
        let candidates = candidates(store, keep)?;
        let mut p = plan(&candidates, after - low);
        if p.freed < after - low {
            let need = after.saturating_sub(max);
            p = plan(&candidates, need);
            if p.freed < need {
                return Err(NoRoom {
                    what: what.to_string(),
                    needs: staged.saturating_add(incoming),
                    more_than: false,
                    max,
                    used: used.saturating_sub(staged),
                    freeable: p.freed,
                    config: store.paths().config().display().to_string(),
                }
                .into());
            }
        }
        let out = evict(store, &candidates, &p)?;
        if !out.removed.is_empty() {
            progress.line(&format!(
                "evicted {} least recently used image(s), {} freed, to keep the store within max-size {}",
                out.removed.len(),
                human_size(out.bytes),
                human_size(max)
            ));
        }
        claim(store)?;
        Ok(out)
    })();
    store.lock_shared_again()?;
    res
}

/// Gives back the room this command claimed, once what it added is
/// stored (a command that ends gives it back anyway).
pub fn release_room(store: &mut Store) {
    if let Some(own) = own_lease() {
        let _ = store.index_mut().release_space(&own);
    }
}

/// The most a command reading data of unknown size (an archive on
/// standard input) may stage before it must stop: `max-size` less what
/// the store would take with every image it may evict gone and the room
/// other running commands claimed. None without a `max-size`. An
/// estimate (nothing is locked); `make_room_for_staged` decides once the size
/// is known.
pub fn room_for_stream(store: &mut Store, keep: &[Digest]) -> Result<Option<u64>> {
    let config = store.config()?;
    let Some(max) = config.max_size else { return Ok(None) };
    let used = usage(store);
    let ingest = ingest_usage(store);
    let claimed = match own_lease() {
        Some(own) => store.index_mut().reserve_space(&own, 0, &lease_alive, &|_| false)?.0,
        None => 0,
    };
    let candidates = candidates_with(store, keep, false)?;
    let freeable = plan(&candidates, u64::MAX).freed;
    let floor = projected(used, ingest, claimed).saturating_sub(freeable);
    Ok(Some(max.saturating_sub(floor)))
}

/// The error for a stream stopped at `cap` bytes by `room_for_stream`.
pub fn no_room_for_stream(store: &mut Store, what: &str, cap: u64) -> Result<NoRoom> {
    let config = store.config()?;
    let max = config.max_size.unwrap_or(0);
    let used = usage(store);
    let candidates = candidates_with(store, &[], false)?;
    Ok(NoRoom {
        what: what.to_string(),
        needs: cap,
        more_than: true,
        max,
        used,
        freeable: plan(&candidates, u64::MAX).freed,
        config: store.paths().config().display().to_string(),
    })
}

/// `img system prune --max-size SIZE`: evicts least recently used images
/// (never pinned, mounted or in use) until the store takes at most `size`,
/// and removes the blobs nothing references. Returns what went and
/// whether the store is within `size` now.
pub fn prune_to(store: &mut Store, size: u64, on_wait: impl FnOnce()) -> Result<(Evicted, bool)> {
    store.lock_exclusive(on_wait)?;
    let (n, bytes) = store.delete_unreferenced(None)?;
    let used = usage(store);
    let candidates = candidates(store, &[])?;
    let p = plan(&candidates, used.saturating_sub(size));
    let mut out = evict(store, &candidates, &p)?;
    out.blobs += n;
    out.bytes += bytes;
    Ok((out, usage(store) <= size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(n: u8) -> Digest {
        Digest::of_bytes(&[n])
    }

    fn c(id: u8, last_used: i64, protected: bool, blobs: &[(u8, u64)]) -> Candidate {
        Candidate { id: d(id), last_used, protected, blobs: blobs.iter().map(|(b, s)| (d(*b), *s)).collect() }
    }

    #[test]
    fn least_recently_used_go_first_and_protected_never() {
        let cs = [c(1, 30, false, &[(10, 100)]), c(2, 10, true, &[(11, 100)]), c(3, 20, false, &[(12, 100)])];
        assert_eq!(plan(&cs, 0), Plan::default(), "nothing needed, nothing evicted");
        assert_eq!(plan(&cs, 50), Plan { evict: vec![d(3)], freed: 100 });
        assert_eq!(plan(&cs, 150), Plan { evict: vec![d(3), d(1)], freed: 200 });
        assert_eq!(plan(&cs, 1000), Plan { evict: vec![d(3), d(1)], freed: 200 }, "the pinned one stays");
    }

    #[test]
    fn shared_blobs_are_freed_with_their_last_image_only() {
        // 1 and 2 share layer 10; 3 (protected) shares layer 11 with 1.
        let cs = [
            c(1, 1, false, &[(10, 1000), (11, 500), (12, 10)]),
            c(2, 2, false, &[(10, 1000), (13, 10)]),
            c(3, 3, true, &[(11, 500)]),
        ];
        assert_eq!(plan(&cs, 1), Plan { evict: vec![d(1)], freed: 10 });
        assert_eq!(plan(&cs, 100), Plan { evict: vec![d(1), d(2)], freed: 1020 });
    }

    #[test]
    fn a_blob_an_image_lists_twice_counts_once() {
        let cs = [c(1, 1, false, &[(10, 100), (10, 100)]), c(2, 2, false, &[(10, 100)])];
        assert_eq!(plan(&cs, 1), Plan { evict: vec![d(1), d(2)], freed: 100 });
    }

    #[test]
    fn sizes_round_to_blocks() {
        assert_eq!(on_disk(0), 0);
        assert_eq!(on_disk(1), 4096);
        assert_eq!(on_disk(4096), 4096);
        assert_eq!(on_disk(u64::MAX), u64::MAX, "saturates, never wraps to a small size");
        assert_eq!(incoming_bytes(&[]), 64 << 10);
        assert_eq!(incoming_bytes(&[1, 3200]), (64 << 10) + 4096 + 4096 + 100);
    }

    #[test]
    fn the_own_process_has_a_live_lease() {
        let l = own_lease().expect("this process has a start time");
        assert!(lease_alive(&l));
        assert!(!lease_alive(&Lease { pid: l.pid, started: l.started + 1 }), "a reused pid is not the command");
        assert!(!lease_alive(&Lease { pid: 0, started: l.started }));
    }

    fn candidates_strategy() -> impl Strategy<Value = Vec<Candidate>> {
        prop::collection::vec((0i64..20, any::<bool>(), prop::collection::vec(0u8..12, 0..5)), 0..10).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (t, p, blobs))| {
                    // A blob's size is a property of the blob.
                    let blobs: Vec<(u8, u64)> = blobs.into_iter().map(|b| (b, (u64::from(b) + 1) * 1000)).collect();
                    c(100 + i as u8, t, p, &blobs)
                })
                .collect()
        })
    }

    /// The bytes of the blobs that only the images `evict` reference.
    fn freed_by(cs: &[Candidate], evict: &[Digest]) -> u64 {
        let remaining: HashSet<&Digest> =
            cs.iter().filter(|c| !evict.contains(&c.id)).flat_map(|c| c.blobs.iter().map(|(d, _)| d)).collect();
        let mut gone: HashMap<&Digest, u64> = HashMap::new();
        for c in cs.iter().filter(|c| evict.contains(&c.id)) {
            for (d, s) in &c.blobs {
                if !remaining.contains(d) {
                    gone.insert(d, *s);
                }
            }
        }
        gone.values().sum()
    }

    proptest! {
        /// The plan never takes a protected image, takes unprotected ones in
        /// LRU order, stops once enough is freed, and `freed` is exactly the
        /// blobs no remaining image references.
        #[test]
        fn plans_are_lru_prefixes_that_free_what_they_say(cs in candidates_strategy(), need in 0u64..60_000) {
            let p = plan(&cs, need);
            let mut order: Vec<&Candidate> = cs.iter().filter(|c| !c.protected).collect();
            order.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.id.cmp(&b.id)));
            let prefix: Vec<Digest> = order.iter().take(p.evict.len()).map(|c| c.id.clone()).collect();
            prop_assert_eq!(&p.evict, &prefix);
            prop_assert_eq!(p.freed, freed_by(&cs, &p.evict));
            if p.freed < need {
                prop_assert_eq!(p.evict.len(), order.len(), "short of need: everything it may take");
            } else if let Some((_, fewer)) = p.evict.split_last() {
                prop_assert!(freed_by(&cs, fewer) < need, "one image fewer would not have been enough");
            }
        }
    }
}

//! A tree that grows while its layers stream in: the entries of each
//! layer are fed as their tar headers arrive, layers are applied bottom
//! first (a layer's entries wait until every layer below it is complete),
//! and a lookup is answered as soon as its answer cannot change any more,
//! or waits.
//!
//! Layer `k` is the one being applied: those below are in the tree whole,
//! those above are queued. A lookup of path P is answered when
//! - every layer above `k` is complete and none of them touches P (an
//!   entry at P or under it, a whiteout of P or of a directory above it, an
//!   opaque directory or a non-directory above it), and
//! - layer `k` itself has put P in the tree (a name from a layer below `k`
//!   could still be whited out by `k`, so it waits for `k` to end).
//!
//! Otherwise it waits for the layers to go on. Until the whole tree is
//! there, a name not found is not an error but a wait, a directory is
//! listed only once every layer is complete, and the answers given are
//! marked unsettled (so the kernel does not keep them). One rule differs
//! from applying a finished layer: a whiteout or opaque marker that comes
//! after entries of its own layer in the tar applies to what is in the tree
//! when it comes, as the entries of each part fed are applied after its
//! markers. Writers put markers before the entries of their directory.
//! And a name answered from the layer being applied is its entry so far: a
//! later entry of the same layer at that path (or a file at a directory
//! above it) replaces it, as it does in a finished layer; the kernel, told
//! not to keep unsettled answers, asks again.
//!
//! A wait that sees no progress on the layer it waits for during the
//! limit given is EIO for that call; the mount goes on, and a later call
//! waits again.

use crate::nodes::Nodes;
use crate::tree::{Builder, Kind, Layer, Tree};
use std::collections::HashSet;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How long one sleep of a waiting call lasts before it looks again.
const TICK: Duration = Duration::from_millis(50);

pub struct Grow {
    state: Mutex<State>,
    cv: Condvar,
    frozen: OnceLock<Tree>,
    limit: Duration,
    /// The layer a waiting call needed last, and when.
    wanted: Mutex<Option<(usize, Instant)>>,
}

struct State {
    b: Builder,
    layers: Vec<Pending>,
    /// The layer being applied; all below it are in the tree.
    k: usize,
    failed: Option<String>,
}

struct Pending {
    queue: Layer,
    complete: bool,
    /// What a complete layer not applied yet touches.
    touch: Option<Touch>,
    /// When the layer last made progress (entries or bytes).
    stamp: Instant,
}

/// The paths a layer changes, to tell whether a lookup's answer may still
/// change when it is applied.
#[derive(Default)]
struct Touch {
    /// Entries and every directory above them.
    paths: HashSet<Vec<u8>>,
    whiteouts: HashSet<Vec<u8>>,
    opaque: HashSet<Vec<u8>>,
    non_dirs: HashSet<Vec<u8>>,
}

fn ancestors(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    // "" (the root), then each proper prefix ending before a '/'.
    std::iter::once(&p[..0]).chain(p.iter().enumerate().filter(|(_, &c)| c == b'/').map(move |(i, _)| &p[..i]))
}

impl Touch {
    fn of(l: &Layer) -> Touch {
        let mut t = Touch::default();
        for e in &l.entries {
            if !matches!(e.kind, Kind::Dir) {
                t.non_dirs.insert(e.path.clone());
            }
            for a in ancestors(&e.path).filter(|a| !a.is_empty()) {
                t.paths.insert(a.to_vec());
            }
            t.paths.insert(e.path.clone());
        }
        t.whiteouts.extend(l.whiteouts.iter().cloned());
        t.opaque.extend(l.opaque.iter().cloned());
        t
    }

    fn touches(&self, p: &[u8]) -> bool {
        if self.paths.contains(p) || self.whiteouts.contains(p) {
            return true;
        }
        ancestors(p).any(|a| self.opaque.contains(a) || self.whiteouts.contains(a) || self.non_dirs.contains(a))
    }
}

impl Grow {
    /// A tree of `layers` layers, none fed yet. A call that waits longer
    /// than `limit` without the layer it waits on making progress fails.
    pub fn new(layers: usize, limit: Duration) -> Grow {
        let now = Instant::now();
        let pending = (0..layers)
            .map(|_| Pending { queue: Layer::default(), complete: false, touch: None, stamp: now })
            .collect();
        let g = Grow {
            state: Mutex::new(State { b: Builder::new(), layers: pending, k: 0, failed: None }),
            cv: Condvar::new(),
            frozen: OnceLock::new(),
            limit,
            wanted: Mutex::new(None),
        };
        if layers == 0 {
            let mut st = g.lock();
            g.pump(&mut st);
        }
        g
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries and markers of layer `layer` that came next in its tar
    /// (the markers of one part apply before its entries).
    pub fn feed(&self, layer: usize, part: Layer) {
        let mut st = self.lock();
        let Some(p) = st.layers.get_mut(layer) else { return };
        if p.complete {
            return;
        }
        p.stamp = Instant::now();
        p.queue.opaque.extend(part.opaque);
        p.queue.whiteouts.extend(part.whiteouts);
        p.queue.entries.extend(part.entries);
        self.pump(&mut st);
    }

    /// Layer `layer` made progress without new entries (its bytes came).
    pub fn progress(&self, layer: usize) {
        let mut st = self.lock();
        if let Some(p) = st.layers.get_mut(layer) {
            p.stamp = Instant::now();
        }
        drop(st);
        self.cv.notify_all();
    }

    /// Layer `layer` has no more entries.
    pub fn finish(&self, layer: usize) {
        let mut st = self.lock();
        let k = st.k;
        let Some(p) = st.layers.get_mut(layer) else { return };
        p.complete = true;
        p.stamp = Instant::now();
        if layer > k {
            p.touch = Some(Touch::of(&p.queue));
        }
        self.pump(&mut st);
    }

    /// Layer `layer` cannot be read (`why`): every call that still needs
    /// the tree to grow fails from now on.
    pub fn fail(&self, layer: usize, why: &str) {
        let mut st = self.lock();
        if st.failed.is_none() && self.frozen.get().is_none() {
            st.failed = Some(format!("layer {layer}: {why}"));
        }
        drop(st);
        self.cv.notify_all();
    }

    /// Why the tree stopped growing, if it did.
    pub fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    /// The layer a call waits for, while one waits (a wish lasts 250 ms
    /// unless made again).
    pub fn wanted(&self) -> Option<usize> {
        let w = *self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        w.filter(|(_, at)| at.elapsed() < Duration::from_millis(250)).map(|(l, _)| l)
    }

    /// Marks `layer` as the one a caller waits for (or none).
    pub fn want(&self, layer: Option<usize>) {
        *self.wanted.lock().unwrap_or_else(|p| p.into_inner()) = layer.map(|l| (l, Instant::now()));
    }

    /// Applies what can be applied, freezes the tree once every layer is
    /// in, and wakes the waiting calls.
    fn pump(&self, st: &mut State) {
        let n = st.layers.len();
        while st.k < n && st.failed.is_none() {
            let k = st.k;
            let q = std::mem::take(&mut st.layers[k].queue);
            st.b.apply_markers(&q.opaque, &q.whiteouts);
            for e in q.entries {
                if let Err(e) = st.b.apply_entry(k, e) {
                    st.failed = Some(e.to_string());
                    break;
                }
            }
            if !st.layers[k].complete {
                break;
            }
            st.layers[k].touch = None;
            st.k += 1;
        }
        if st.k == n && st.failed.is_none() && self.frozen.get().is_none() {
            let b = std::mem::replace(&mut st.b, Builder::new());
            match b.freeze_numbered() {
                Ok(t) => {
                    let _ = self.frozen.set(t);
                    self.want(None);
                }
                Err(e) => st.failed = Some(e.to_string()),
            }
        }
        self.cv.notify_all();
    }

    /// The whole tree, once every layer is in.
    pub fn frozen(&self) -> Option<&Tree> {
        self.frozen.get()
    }

    /// Calls `f` with the tree as it is now: the whole one, or the one
    /// growing (under the lock: `f` must not wait).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&dyn Nodes) -> R) -> R {
        if let Some(t) = self.frozen.get() {
            return f(t);
        }
        let st = self.lock();
        match self.frozen.get() {
            Some(t) => f(t),
            None => f(&st.b),
        }
    }

    /// Sleeps until something changes, or fails when layer `on` made no
    /// progress for the limit (since `began`, when the call began, at least).
    fn wait<'a>(&self, st: MutexGuard<'a, State>, on: usize, began: Instant) -> Result<MutexGuard<'a, State>, i32> {
        self.want(Some(on));
        // No progress for the limit, counted from when the call began at
        // the earliest.
        if st.layers.get(on).is_some_and(|p| p.stamp.max(began).elapsed() > self.limit) {
            return Err(libc::EIO);
        }
        let (st, _) = self.cv.wait_timeout(st, TICK).unwrap_or_else(|p| p.into_inner());
        Ok(st)
    }

    /// The inode `name` in directory `parent` names once the answer is
    /// settled: `Ok(None)` when it does not exist.
    pub(crate) fn child(&self, parent: u64, name: &[u8]) -> Result<Option<u64>, i32> {
        let began = Instant::now();
        let mut st = self.lock();
        loop {
            if let Some(t) = self.frozen.get() {
                return Ok(t.lookup(parent, name));
            }
            if st.failed.is_some() {
                return Err(libc::EIO);
            }
            let Some(dir) = st.b.path_of(parent) else { return Err(libc::ENOENT) };
            let mut path = dir;
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name);
            match Self::settled(&st, parent, name, &path) {
                Ok(ino) => return Ok(Some(ino)),
                Err(on) => st = self.wait(st, on, began)?,
            }
        }
    }

    /// The inode `name` in `parent` (at `path`) names, if that answer is
    /// settled; else the layer it waits for.
    fn settled(st: &State, parent: u64, name: &[u8], path: &[u8]) -> Result<u64, usize> {
        let k = st.k;
        let above = &st.layers[k + 1..];
        if let Some(i) = above.iter().position(|p| !p.complete) {
            return Err(k + 1 + i);
        }
        if above.iter().any(|p| p.touch.as_ref().is_none_or(|t| t.touches(path))) {
            return Err(k);
        }
        match st.b.lookup(parent, name) {
            Some(ino) if st.b.origin(ino) == Some(k) => Ok(ino),
            _ => Err(k),
        }
    }

    /// Waits until the whole tree is there (EIO when a layer stalls for
    /// the limit, or fails).
    pub(crate) fn wait_frozen(&self) -> Result<&Tree, i32> {
        let began = Instant::now();
        let mut st = self.lock();
        loop {
            if let Some(t) = self.frozen.get() {
                return Ok(t);
            }
            if st.failed.is_some() {
                return Err(libc::EIO);
            }
            let on = st.k;
            st = self.wait(st, on, began)?;
        }
    }

    /// Waits as long as it takes for the whole tree; the reason when it
    /// cannot be had.
    pub fn settle(&self) -> Result<&Tree, String> {
        let mut st = self.lock();
        loop {
            if let Some(t) = self.frozen.get() {
                return Ok(t);
            }
            if let Some(f) = &st.failed {
                return Err(f.clone());
            }
            self.want(Some(st.k));
            st = self.cv.wait_timeout(st, TICK).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{BlobSource, ImageFs};
    use crate::tree::{DataRef, Entry};
    use std::sync::Arc;

    struct NoBytes;
    impl BlobSource for NoBytes {
        fn read_at(&self, _: usize, _: u64, _: &mut [u8]) -> std::io::Result<usize> {
            Ok(0)
        }
    }

    fn e(path: &str, kind: Kind) -> Entry {
        Entry { path: path.as_bytes().to_vec(), kind, mode: 0o644, uid: 0, gid: 0, mtime: (1, 0), xattrs: vec![] }
    }
    fn file(path: &str, layer: usize, at: u64) -> Entry {
        e(path, Kind::File(DataRef::plain(layer, at, 1)))
    }
    fn part(entries: Vec<Entry>) -> Layer {
        Layer { entries, ..Layer::default() }
    }
    fn growing(n: usize, limit_ms: u64) -> (Arc<ImageFs<NoBytes>>, Arc<Grow>) {
        let g = Arc::new(Grow::new(n, Duration::from_millis(limit_ms)));
        (Arc::new(ImageFs::growing(g.clone(), NoBytes)), g)
    }
    /// Looks `path` up component by component.
    fn walk(fs: &ImageFs<NoBytes>, path: &str) -> Result<crate::fs::Attr, i32> {
        let mut ino = ROOT_INO;
        let mut a = fs.attr(ino)?;
        for c in path.split('/') {
            a = fs.lookup(ino, c.as_bytes())?;
            ino = a.ino;
        }
        Ok(a)
    }
    const ROOT_INO: u64 = crate::tree::ROOT;

    #[test]
    fn a_name_in_the_layer_streaming_is_answered_before_the_layer_ends() {
        let (fs, g) = growing(2, 5_000);
        // The upper layer is complete and leaves etc/ alone.
        g.feed(1, part(vec![file("app/run", 1, 0)]));
        g.finish(1);
        g.feed(0, part(vec![e("etc", Kind::Dir), file("etc/os-release", 0, 512)]));
        let a = walk(&fs, "etc/os-release").unwrap();
        assert_eq!(a.size, 1);
        assert!(!fs.settled());
        // A name the upper layer has waits for the lower one to end.
        let fs2 = fs.clone();
        let t = std::thread::spawn(move || walk(&fs2, "app/run").map(|a| a.size));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!t.is_finished(), "answered while a lower layer could still change it");
        g.finish(0);
        assert_eq!(t.join().unwrap(), Ok(1));
        assert!(fs.settled());
        assert_eq!(walk(&fs, "nope"), Err(libc::ENOENT));
    }

    #[test]
    fn a_name_an_upper_layer_whites_out_is_never_shown() {
        let (fs, g) = growing(2, 5_000);
        g.feed(0, part(vec![file("gone", 0, 0), file("kept", 0, 0)]));
        let fs2 = fs.clone();
        let t = std::thread::spawn(move || walk(&fs2, "gone").map(|a| a.ino));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!t.is_finished(), "answered before the upper layer was complete");
        g.feed(1, Layer { whiteouts: vec![b"gone".to_vec()], ..Layer::default() });
        g.finish(1);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!t.is_finished(), "answered while the whiteout is still to be applied");
        assert!(walk(&fs, "kept").is_ok());
        g.finish(0);
        assert_eq!(t.join().unwrap(), Err(libc::ENOENT));
    }

    #[test]
    fn a_name_from_below_the_layer_streaming_waits_for_it() {
        let (fs, g) = growing(2, 5_000);
        g.feed(0, part(vec![file("base", 0, 0)]));
        g.finish(0);
        g.feed(1, part(vec![file("top", 1, 0)]));
        assert!(walk(&fs, "top").is_ok());
        let fs2 = fs.clone();
        let t = std::thread::spawn(move || walk(&fs2, "base").map(|a| a.size));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!t.is_finished(), "a lower name shown while the layer above could white it out");
        assert_eq!(g.wanted(), Some(1));
        g.finish(1);
        assert_eq!(t.join().unwrap(), Ok(1));
    }

    #[test]
    fn a_stalled_layer_is_eio_and_the_mount_goes_on() {
        let (fs, g) = growing(1, 200);
        g.feed(0, part(vec![file("a", 0, 0)]));
        let began = Instant::now();
        assert_eq!(walk(&fs, "b"), Err(libc::EIO));
        assert!(began.elapsed() < Duration::from_secs(2));
        assert_eq!(fs.readdir(ROOT_INO, 0), Err(libc::EIO));
        assert!(walk(&fs, "a").is_ok());
        g.feed(0, part(vec![file("b", 0, 0)]));
        assert!(walk(&fs, "b").is_ok());
        g.finish(0);
        let names: Vec<Vec<u8>> = fs.readdir(ROOT_INO, 0).unwrap().into_iter().map(|d| d.3).collect();
        assert_eq!(names, vec![b".".to_vec(), b"..".to_vec(), b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn a_failed_layer_fails_what_waits() {
        let (fs, g) = growing(2, 5_000);
        g.feed(0, part(vec![file("a", 0, 0)]));
        let fs2 = fs.clone();
        let t = std::thread::spawn(move || walk(&fs2, "z").map(|a| a.ino));
        std::thread::sleep(Duration::from_millis(50));
        g.fail(1, "its digest is wrong");
        assert_eq!(t.join().unwrap(), Err(libc::EIO));
        assert!(g.failure().unwrap().contains("digest"));
        assert!(fs.settle().is_err());
    }

    #[test]
    fn a_bad_entry_fails_the_tree() {
        let (fs, g) = growing(1, 5_000);
        g.feed(0, part(vec![e("x", Kind::HardLink(b"missing".to_vec()))]));
        assert_eq!(walk(&fs, "x"), Err(libc::EIO));
        assert!(g.failure().unwrap().contains("hard link"));
    }

    /// Every path below `ino` with what stat shows of it, sorted.
    fn listing(fs: &ImageFs<NoBytes>) -> Vec<(String, (crate::fs::FileType, u64, u16))> {
        fn go(fs: &ImageFs<NoBytes>, ino: u64, prefix: &str, out: &mut Vec<(String, (crate::fs::FileType, u64, u16))>) {
            for (_, ch, _, name) in fs.readdir(ino, 2).unwrap() {
                let p = format!("{prefix}{}", String::from_utf8_lossy(&name));
                let a = fs.attr(ch).unwrap();
                out.push((p.clone(), (a.kind, a.size, a.perm)));
                if a.kind == crate::fs::FileType::Directory {
                    go(fs, ch, &format!("{p}/"), out);
                }
            }
        }
        let mut out = Vec::new();
        go(fs, ROOT_INO, "", &mut out);
        out
    }

    use proptest::prelude::*;

    fn arb_path() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 1..4).prop_map(|v| v.join("/"))
    }

    /// Whiteouts, opaque directories, and entries (path, directory, mode).
    type LayerSpec = (Vec<String>, Vec<String>, Vec<(String, bool, u16)>);

    /// A layer: markers, then entries at distinct paths (as writers make them).
    fn arb_layer() -> impl Strategy<Value = LayerSpec> {
        (
            proptest::collection::vec(arb_path(), 0..3),
            proptest::collection::vec(arb_path(), 0..2),
            proptest::collection::vec((arb_path(), any::<bool>(), 0u16..0o777), 0..10),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Fed in any order and any parts, the tree ends as the one built
        /// whole, and every answer given while it grew is the final one.
        #[test]
        fn growing_ends_as_built_and_never_answers_early(
            layers in proptest::collection::vec(arb_layer(), 1..4),
            order in proptest::collection::vec((0usize..4, 1usize..4, 0usize..12), 0..30),
        ) {
            let mut built = Vec::new();
            for (li, (wh, op, ents)) in layers.iter().enumerate() {
                let mut seen = std::collections::HashSet::new();
                let mut entries = Vec::new();
                for (i, (p, is_dir, mode)) in ents.iter().enumerate() {
                    // Writers give each path once, a directory before what
                    // is in it, and nothing under a file.
                    let under = |a: &String, b: &String| b.starts_with(&format!("{a}/"));
                    let clash = entries.iter().any(|x: &Entry| {
                        let q = String::from_utf8_lossy(&x.path).into_owned();
                        (!matches!(x.kind, Kind::Dir) && under(&q, p)) || under(p, &q)
                    });
                    if clash || !seen.insert(p.clone()) {
                        continue;
                    }
                    let kind = if *is_dir { Kind::Dir } else { Kind::File(DataRef::plain(li, 0, (li * 100 + i) as u64)) };
                    entries.push(Entry { mode: u32::from(*mode), ..e(p, kind) });
                }
                built.push(Layer {
                    entries,
                    whiteouts: wh.iter().map(|w| w.as_bytes().to_vec()).collect(),
                    opaque: op.iter().map(|o| o.as_bytes().to_vec()).collect(),
                });
            }
            let whole = ImageFs::new(Tree::build(&built).unwrap(), NoBytes);
            let want = listing(&whole);
            // A limit of zero: a call that would wait fails at once.
            let (fs, g) = growing(built.len(), 0);
            let mut fed: Vec<usize> = vec![0; built.len()];
            let mut marks_fed = vec![false; built.len()];
            let mut answers = Vec::new();
            let probes: Vec<String> = built.iter().flat_map(|l| l.entries.iter().map(|e| String::from_utf8_lossy(&e.path).into_owned())).collect();
            let step = |li: usize, n: usize, fed: &mut Vec<usize>, marks_fed: &mut Vec<bool>| {
                let l = &built[li];
                let mut p = Layer::default();
                if !marks_fed[li] {
                    p.whiteouts = l.whiteouts.clone();
                    p.opaque = l.opaque.clone();
                    marks_fed[li] = true;
                }
                let end = (fed[li] + n).min(l.entries.len());
                p.entries = l.entries[fed[li]..end].to_vec();
                fed[li] = end;
                g.feed(li, p);
                if fed[li] == l.entries.len() {
                    g.finish(li);
                }
            };
            for (li, n, probe) in order {
                let li = li % built.len();
                if fed[li] < built[li].entries.len() || !marks_fed[li] {
                    step(li, n, &mut fed, &mut marks_fed);
                }
                if let Some(p) = probes.get(probe) {
                    if let Ok(a) = walk(&fs, p) {
                        answers.push((p.clone(), (a.kind, a.size, a.perm)));
                    }
                }
            }
            for li in 0..built.len() {
                while fed[li] < built[li].entries.len() || !marks_fed[li] {
                    step(li, 3, &mut fed, &mut marks_fed);
                }
                g.finish(li);
            }
            prop_assert!(fs.settled());
            prop_assert_eq!(listing(&fs), want.clone());
            for (p, a) in answers {
                let fin = want.iter().find(|(q, _)| *q == p).map(|(_, a)| *a);
                prop_assert_eq!(Some(a), fin, "{} was answered early with what it is not", p);
            }
        }
    }
}

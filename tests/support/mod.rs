//! Helpers for the command-line tests: temporary stores, a runner for the
//! built `img` binary, and deterministic image fixtures (layer tars, image
//! configs, docker-archive and OCI layouts) that tests can break on purpose.
#![allow(dead_code)]

pub mod fake_registry;

use img::digest::Digest;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

pub const IMG: &str = env!("CARGO_BIN_EXE_img");

/// Fixed modification time of every fixture entry.
pub const MTIME: u64 = 1_700_000_000;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

// ---- tests that need root ------------------------------------------------------

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// The one rule for a test that needs root and /dev/fuse (`why` says what
/// for): true when it can run. Without them the test fails, saying to run
/// it as root, so that it never passes without having run; with
/// IMG_TEST_SKIP_ROOT=1 it prints that it skipped and returns false, and
/// the caller returns.
pub fn need_root(why: &str) -> bool {
    if is_root() && Path::new("/dev/fuse").exists() {
        return true;
    }
    if std::env::var("IMG_TEST_SKIP_ROOT").as_deref() == Ok("1") {
        eprintln!("skipped: {why}: it needs root and /dev/fuse (IMG_TEST_SKIP_ROOT=1)");
        return false;
    }
    panic!("{why}: it needs root and /dev/fuse; run it as root (scripts/test.sh does), or set IMG_TEST_SKIP_ROOT=1 to skip it")
}

// ---- long runs and seeds -------------------------------------------------------

/// IMG_TEST_LONG=1 (`scripts/test.sh --long`): more trials, longer mixes.
pub fn long() -> bool {
    std::env::var_os("IMG_TEST_LONG").is_some_and(|v| v == "1")
}

/// The seed for `test`: IMG_TEST_SEED if set, else `default`; printed so
/// that a failure can be replayed.
pub fn seed(test: &str, default: u64) -> u64 {
    let s = match std::env::var("IMG_TEST_SEED") {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("IMG_TEST_SEED={v:?} is not a number"))
        }
        Err(_) => default,
    };
    eprintln!("{test}: seed {s:#x} (replay with IMG_TEST_SEED={s:#x})");
    s
}

// ---- temporary directories ---------------------------------------------------

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory under the system temp dir, removed (with its contents) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // Named after the test too (libtest names its threads so), so that
        // anything left behind says which test made it.
        let test = std::thread::current().name().unwrap_or("main").rsplit("::").next().unwrap_or("main").to_string();
        let p = std::env::temp_dir().join(format!("img-cli-{tag}-{test}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("creating a temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A path as a command-line argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

// ---- running img -------------------------------------------------------------

/// What one img run did.
pub struct Out {
    pub cmd: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }
    pub fn success(&self) -> bool {
        self.status.success()
    }
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn describe(&self) -> String {
        format!(
            "command: img {}\nstatus: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd,
            self.status,
            String::from_utf8_lossy(&self.stdout[..self.stdout.len().min(4000)]),
            self.stderr
        )
    }
    /// Asserts a failure with an exit status (not a signal) and exactly one
    /// diagnostic line starting with `error:`; returns that line.
    pub fn one_error_line(&self) -> String {
        assert!(matches!(self.code(), Some(c) if c != 0), "expected a non-zero exit status\n{}", self.describe());
        let err = self.stderr.trim_end();
        assert_eq!(err.lines().count(), 1, "expected exactly one line on stderr\n{}", self.describe());
        assert!(err.starts_with("error:"), "expected stderr to start with `error:`\n{}", self.describe());
        err.to_string()
    }
}

/// A store in a fresh temp dir, with a scratch directory beside it.
pub struct Store {
    pub dir: TempDir,
    root: PathBuf,
    work: PathBuf,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        let dir = TempDir::new("store");
        let root = dir.join("root");
        let work = dir.join("work");
        fs::create_dir_all(&work).unwrap();
        Store { dir, root, work }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A scratch directory for fixtures and outputs.
    pub fn work(&self) -> &Path {
        &self.work
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }

    /// Writes a scratch file and returns its path.
    pub fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.work.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, data).unwrap();
        p
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(IMG);
        c.args(args)
            .env("IMG_ROOT", &self.root)
            .env_remove("IMG_CRASHPOINT")
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, &[], None)
    }

    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Out {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        if stdin.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn().expect("starting img");
        let writer = stdin.map(|data| {
            let mut pipe = child.stdin.take().unwrap();
            let data = data.to_vec();
            std::thread::spawn(move || {
                // img may stop reading early (a refused input); that is fine.
                let _ = pipe.write_all(&data);
            })
        });
        let o = child.wait_with_output().expect("waiting for img");
        if let Some(w) = writer {
            let _ = w.join();
        }
        Out {
            cmd: args.join(" "),
            status: o.status,
            stdout: o.stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs img and asserts it succeeded; returns its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.success(), "expected success\n{}", o.describe());
        o.out()
    }

    /// Runs img and asserts it failed with a non-zero exit status.
    pub fn fail(&self, args: &[&str]) -> Out {
        let o = self.run(args);
        assert!(matches!(o.code(), Some(c) if c != 0), "expected a non-zero exit status\n{}", o.describe());
        o
    }

    /// `img images --no-trunc --format json`, parsed.
    pub fn images(&self) -> Vec<Value> {
        let out = self.ok(&["images", "--no-trunc", "--format", "json"]);
        let v: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("images --format json is not JSON ({e}):\n{out}"));
        v.as_array().expect("a JSON array").clone()
    }

    /// The image IDs (hex) `img images` lists, sorted.
    pub fn image_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.images().iter().map(|i| i["Id"].as_str().unwrap().to_string()).collect();
        ids.sort();
        ids
    }

    /// Every tag in the store, sorted.
    pub fn tags(&self) -> Vec<String> {
        let mut tags: Vec<String> = self
            .images()
            .iter()
            .flat_map(|i| {
                i["RepoTags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect::<Vec<_>>()
            })
            .collect();
        tags.sort();
        tags
    }

    /// `img inspect NAME`, the one document.
    pub fn inspect(&self, name: &str) -> Value {
        let out = self.ok(&["inspect", name]);
        let v: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect output is not JSON ({e}):\n{out}"));
        let a = v.as_array().expect("inspect prints an array");
        assert_eq!(a.len(), 1, "{out}");
        a[0].clone()
    }

    /// Files under blobs/ (relative names) with their sizes, sorted.
    pub fn blob_files(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let base = self.root.join("blobs");
        walk(&base, &base, &mut out);
        out.sort();
        out
    }

    /// Digests of the files in blobs/sha256.
    pub fn blob_digests(&self) -> Vec<String> {
        self.blob_files()
            .into_iter()
            .filter_map(|(n, _)| n.strip_prefix("sha256/").map(|h| format!("sha256:{h}")))
            .collect()
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }

    /// Names in ingest/.
    pub fn ingest_files(&self) -> Vec<String> {
        match fs::read_dir(self.root.join("ingest")) {
            Ok(rd) => rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// What a refused command must leave exactly as it was: the blobs and
    /// the images, all but when each was last used, which naming an image
    /// records (as reading a file does its atime) and eviction orders by.
    pub fn snapshot(&self) -> Snapshot {
        let images = self.ok(&["images", "--no-trunc", "--format", "json"]);
        let images =
            images.lines().filter(|l| !l.trim_start().starts_with("\"LastUsed\":")).collect::<Vec<_>>().join("\n");
        Snapshot { blobs: self.blob_files(), images }
    }

    /// Runs `img fsck` and asserts it found the store clean.
    pub fn assert_fsck_clean(&self) {
        let o = self.run(&["fsck"]);
        assert!(o.success(), "fsck is not clean\n{}", o.describe());
        assert!(o.out().contains(": clean"), "{}", o.describe());
    }

    /// Asserts ingest/ is empty (call after a command that opened the store).
    pub fn assert_ingest_empty(&self) {
        let left = self.ingest_files();
        assert!(left.is_empty(), "files left in ingest/: {left:?}");
    }

    /// Writes an archive to the scratch dir and loads it; asserts success.
    pub fn load(&self, name: &str, data: &[u8]) -> String {
        let p = self.write(name, data);
        self.ok(&["load", "-i", arg(&p)])
    }

    /// A direct connection to the index (for checks and deliberate damage).
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.root.join("img.db")).expect("opening img.db")
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            walk(base, &p, out);
        } else {
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            out.push((rel, m.len()));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Snapshot {
    pub blobs: Vec<(String, u64)>,
    pub images: String,
}

// ---- layer tars ----------------------------------------------------------------

#[derive(Clone, Debug)]
pub enum Node {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    Hardlink(String),
}

/// Builds a tar with fixed metadata. Entry names are written as given (so a
/// test can write `../x`); entries are sorted by name unless `unsorted`.
#[derive(Clone, Default)]
pub struct TarBuilder {
    entries: Vec<(String, Node, u32)>,
    keep_order: bool,
}

impl TarBuilder {
    pub fn new() -> TarBuilder {
        TarBuilder::default()
    }
    pub fn file(mut self, name: &str, data: impl AsRef<[u8]>) -> Self {
        self.entries.push((name.into(), Node::File(data.as_ref().to_vec()), 0o644));
        self
    }
    pub fn exe(mut self, name: &str, data: impl AsRef<[u8]>) -> Self {
        self.entries.push((name.into(), Node::File(data.as_ref().to_vec()), 0o755));
        self
    }
    pub fn dir(mut self, name: &str) -> Self {
        self.entries.push((name.into(), Node::Dir, 0o755));
        self
    }
    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        self.entries.push((name.into(), Node::Symlink(target.into()), 0o777));
        self
    }
    pub fn hardlink(mut self, name: &str, target: &str) -> Self {
        self.entries.push((name.into(), Node::Hardlink(target.into()), 0o644));
        self
    }
    /// Keeps entries in the order they were added.
    pub fn unsorted(mut self) -> Self {
        self.keep_order = true;
        self
    }
    pub fn build(&self) -> Vec<u8> {
        let mut entries = self.entries.clone();
        if !self.keep_order {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let mut b = tar::Builder::new(Vec::new());
        for (name, node, mode) in &entries {
            let mut h = tar::Header::new_gnu();
            let mut raw = name.clone();
            if matches!(node, Node::Dir) && !raw.ends_with('/') {
                raw.push('/');
            }
            set_raw_name(&mut h, &raw);
            h.set_mode(*mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(MTIME);
            let data: &[u8] = match node {
                Node::File(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    d
                }
                Node::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    &[]
                }
                Node::Symlink(t) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    h.set_link_name(t).unwrap();
                    &[]
                }
                Node::Hardlink(t) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    h.set_link_name(t).unwrap();
                    &[]
                }
            };
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }
}

/// Writes a name into a header's 100-byte name field without tar-rs's checks.
pub fn set_raw_name(h: &mut tar::Header, name: &str) {
    let bytes = name.as_bytes();
    assert!(bytes.len() < 100, "fixture names stay short: {name}");
    let field = &mut h.as_old_mut().name;
    field.fill(0);
    field[..bytes.len()].copy_from_slice(bytes);
}

/// A plain tar of regular files (name, content), as an archive container.
pub fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        set_raw_name(&mut h, name);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// One entry of a tar as a test sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    pub name: String,
    /// 'f' file, 'd' dir, 's' symlink, 'h' hard link
    pub kind: char,
    pub link: String,
    pub data: Vec<u8>,
}

/// Lists a (possibly compressed) tar.
pub fn list_tar(data: &[u8]) -> Vec<Listed> {
    let plain = decompress(data);
    let mut ar = tar::Archive::new(plain.as_slice());
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let t = e.header().entry_type();
        let kind = if t.is_dir() {
            'd'
        } else if t.is_symlink() {
            's'
        } else if t.is_hard_link() {
            'h'
        } else {
            'f'
        };
        let link = e.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let mut d = Vec::new();
        e.read_to_end(&mut d).unwrap();
        out.push(Listed { name, kind, link, data: d });
    }
    out
}

// ---- compression ---------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

pub fn decompress(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if data.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out).unwrap();
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        out = zstd::stream::decode_all(data).unwrap();
    } else if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        liblzma::read::XzDecoder::new(data).read_to_end(&mut out).unwrap();
    } else {
        out = data.to_vec();
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

// ---- images ----------------------------------------------------------------------

/// A layer: its tar and the blob as stored (maybe compressed).
#[derive(Clone)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub blob: Vec<u8>,
    pub comp: Comp,
}

impl Layer {
    pub fn new(tar: Vec<u8>, comp: Comp) -> Layer {
        let blob = match comp {
            Comp::None => tar.clone(),
            Comp::Gzip => gzip(&tar),
            Comp::Zstd => zstd(&tar),
        };
        Layer { tar, blob, comp }
    }
    /// A one-file layer whose content depends on `seed`.
    pub fn simple(seed: &str, comp: Comp) -> Layer {
        Layer::new(
            TarBuilder::new()
                .dir(&format!("files-{seed}"))
                .file(&format!("files-{seed}/data"), format!("content {seed}\n"))
                .build(),
            comp,
        )
    }
    pub fn diff_id(&self) -> Digest {
        Digest::of_bytes(&self.tar)
    }
    pub fn digest(&self) -> Digest {
        Digest::of_bytes(&self.blob)
    }
    pub fn oci_media_type(&self) -> &'static str {
        match self.comp {
            Comp::None => "application/vnd.oci.image.layer.v1.tar",
            Comp::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Comp::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// What an image is made of; `build` makes the config and manifest.
#[derive(Clone)]
pub struct ImageSpec {
    pub tags: Vec<String>,
    pub layers: Vec<Layer>,
    pub created: String,
    pub labels: BTreeMap<String, String>,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    /// History entries; by default one per layer ("layer N").
    pub history: Option<Vec<Value>>,
}

impl ImageSpec {
    pub fn new(tags: &[&str]) -> ImageSpec {
        ImageSpec {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            layers: Vec::new(),
            created: "2024-01-02T03:04:05Z".into(),
            labels: BTreeMap::new(),
            env: vec!["PATH=/usr/bin:/bin".into()],
            cmd: Some(vec!["/bin/sh".into()]),
            history: None,
        }
    }
    pub fn layer(mut self, l: Layer) -> Self {
        self.layers.push(l);
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    pub fn created(mut self, c: &str) -> Self {
        self.created = c.into();
        self
    }
    pub fn history(mut self, h: Vec<Value>) -> Self {
        self.history = Some(h);
        self
    }
    pub fn build(&self) -> Image {
        let history = self.history.clone().unwrap_or_else(|| {
            (0..self.layers.len())
                .map(|i| json!({"created": self.created, "created_by": format!("layer {i}")}))
                .collect()
        });
        // An empty env list makes a config without Env.
        let mut cfg = if self.env.is_empty() { json!({}) } else { json!({"Env": self.env}) };
        if let Some(c) = &self.cmd {
            cfg["Cmd"] = json!(c);
        }
        if !self.labels.is_empty() {
            cfg["Labels"] = json!(self.labels);
        }
        let config = json!({
            "architecture": img::archive::resolve::host_platform().1,
            "os": "linux",
            "created": self.created,
            "config": cfg,
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|l| l.diff_id().to_string()).collect::<Vec<_>>(),
            },
            "history": history,
        });
        let config = serde_json::to_vec(&config).unwrap();
        let id = Digest::of_bytes(&config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": id.to_string(), "size": config.len()},
            "layers": self.layers.iter().map(|l| json!({
                "mediaType": l.oci_media_type(),
                "digest": l.digest().to_string(),
                "size": l.blob.len(),
            })).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest).unwrap();
        Image {
            tags: self.tags.clone(),
            layers: self.layers.clone(),
            config_json: serde_json::from_slice(&config).unwrap(),
            manifest_digest: Digest::of_bytes(&manifest),
            config,
            id,
            manifest,
        }
    }
}

/// A built image: exact config and OCI manifest bytes.
#[derive(Clone)]
pub struct Image {
    pub tags: Vec<String>,
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub config_json: Value,
    pub id: Digest,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
}

impl Image {
    pub fn hex(&self) -> &str {
        self.id.hex()
    }
    pub fn short(&self) -> &str {
        &self.id.hex()[..12]
    }
    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.digest().to_string()).collect()
    }
    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id().to_string()).collect()
    }
    /// The fully qualified names img records for the tags.
    pub fn full_tags(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tags.iter().map(|t| full_name(t)).collect();
        v.sort();
        v
    }
}

/// `app:1` as img stores it: `docker.io/library/app:1`.
pub fn full_name(t: &str) -> String {
    let r = img::reference::Reference::parse_with_default_tag(t).unwrap();
    r.tagged_name().unwrap()
}

// ---- archives --------------------------------------------------------------------

/// The regular files of an archive or layout directory, in order.
#[derive(Clone, Debug, Default)]
pub struct Archive {
    pub files: Vec<(String, Vec<u8>)>,
}

impl Archive {
    /// A docker-archive: `<config hex>.json`, `<layer hex>.tar`, `manifest.json`.
    pub fn docker(images: &[&Image]) -> Archive {
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut manifest = Vec::new();
        for i in images {
            let config_name = format!("{}.json", i.id.hex());
            files.insert(config_name.clone(), i.config.clone());
            let mut layers = Vec::new();
            for l in &i.layers {
                let name = format!("{}.tar", l.digest().hex());
                files.insert(name.clone(), l.blob.clone());
                layers.push(name);
            }
            let tags: Value = if i.tags.is_empty() { Value::Null } else { json!(i.tags) };
            manifest.push(json!({"Config": config_name, "RepoTags": tags, "Layers": layers}));
        }
        let mut a = Archive { files: files.into_iter().collect() };
        a.files.push(("manifest.json".into(), serde_json::to_vec(&manifest).unwrap()));
        a
    }

    /// An OCI layout: `oci-layout`, `blobs/sha256/...`, `index.json` with one
    /// entry per tag (or one unnamed entry).
    pub fn oci(images: &[&Image]) -> Archive {
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut entries = Vec::new();
        for i in images {
            files.insert(blob_name(&i.id), i.config.clone());
            files.insert(blob_name(&i.manifest_digest), i.manifest.clone());
            for l in &i.layers {
                files.insert(blob_name(&l.digest()), l.blob.clone());
            }
            let desc = json!({
                "mediaType": OCI_MANIFEST,
                "digest": i.manifest_digest.to_string(),
                "size": i.manifest.len(),
            });
            if i.tags.is_empty() {
                entries.push(desc.clone());
            }
            for t in &i.tags {
                let mut d = desc.clone();
                let tag = t.rsplit_once(':').map(|x| x.1).unwrap_or("latest");
                d["annotations"] = json!({
                    "io.containerd.image.name": full_name(t),
                    "org.opencontainers.image.ref.name": tag,
                });
                entries.push(d);
            }
        }
        files.insert(
            "index.json".into(),
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})).unwrap(),
        );
        files.insert("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec());
        Archive { files: files.into_iter().collect() }
    }

    pub fn tar(&self) -> Vec<u8> {
        tar_of(&self.files)
    }

    /// Writes the files as a directory (an OCI layout).
    pub fn write_dir(&self, dir: &Path) {
        for (name, data) in &self.files {
            let p = dir.join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
    }

    pub fn get(&self, name: &str) -> &[u8] {
        &self.files.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name} in the fixture")).1
    }

    pub fn has(&self, name: &str) -> bool {
        self.files.iter().any(|(n, _)| n == name)
    }

    pub fn remove(&mut self, name: &str) {
        let before = self.files.len();
        self.files.retain(|(n, _)| n != name);
        assert!(self.files.len() < before, "no {name} in the fixture");
    }

    /// Replaces a file's content, or adds the file at the end.
    pub fn set(&mut self, name: &str, data: Vec<u8>) {
        match self.files.iter_mut().find(|(n, _)| n == name) {
            Some(f) => f.1 = data,
            None => self.files.push((name.into(), data)),
        }
    }

    /// Renames a file.
    pub fn rename(&mut self, from: &str, to: &str) {
        let f = self.files.iter_mut().find(|(n, _)| n == from).unwrap_or_else(|| panic!("no {from} in the fixture"));
        f.0 = to.into();
    }

    /// Adds a file even if one with that name exists.
    pub fn push(&mut self, name: &str, data: Vec<u8>) {
        self.files.push((name.into(), data));
    }

    pub fn edit_json(&mut self, name: &str, f: impl FnOnce(&mut Value)) {
        let mut v: Value = serde_json::from_slice(self.get(name)).unwrap();
        f(&mut v);
        self.set(name, serde_json::to_vec(&v).unwrap());
    }

    /// Rewrites the manifest `index.json` entry `n` points at, and every
    /// index entry that points at it, so the archive stays consistent
    /// except for what `f` breaks. Returns the new manifest digest.
    pub fn edit_oci_manifest(&mut self, n: usize, f: impl FnOnce(&mut Value)) -> Digest {
        let index: Value = serde_json::from_slice(self.get("index.json")).unwrap();
        let old = index["manifests"][n]["digest"].as_str().unwrap().to_string();
        let old_name = format!("blobs/sha256/{}", &old[7..]);
        let mut m: Value = serde_json::from_slice(self.get(&old_name)).unwrap();
        f(&mut m);
        let bytes = serde_json::to_vec(&m).unwrap();
        self.replace_oci_manifest_bytes(&old, bytes)
    }

    /// Replaces the manifest blob `old` by `bytes`, updating index.json.
    pub fn replace_oci_manifest_bytes(&mut self, old: &str, bytes: Vec<u8>) -> Digest {
        let d = Digest::of_bytes(&bytes);
        self.remove(&format!("blobs/sha256/{}", &old[7..]));
        self.set(&blob_name(&d), bytes.clone());
        let len = bytes.len();
        let old = old.to_string();
        let new = d.to_string();
        self.edit_json("index.json", |ix| {
            for e in ix["manifests"].as_array_mut().unwrap() {
                if e["digest"] == json!(old) {
                    e["digest"] = json!(new);
                    e["size"] = json!(len);
                }
            }
        });
        // index.json stays last among the sorted names, as written.
        d
    }
}

pub fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// A file's sha256 as a digest.
pub fn file_digest(p: &Path) -> Digest {
    Digest::of_bytes(&fs::read(p).unwrap())
}

// ---- a small filesystem --------------------------------------------------------

/// A tmpfs of `bytes` mounted at a directory of its own (root only),
/// unmounted when dropped: a store on it runs out of space on purpose.
pub struct SmallFs {
    pub path: PathBuf,
    _dir: TempDir,
}

impl SmallFs {
    pub fn mount(bytes: u64) -> SmallFs {
        let dir = TempDir::new("smallfs");
        let path = dir.join("fs");
        fs::create_dir_all(&path).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes},mode=0755"), "img-test-smallfs"])
            .arg(&path)
            .status()
            .expect("running mount");
        assert!(st.success(), "mounting a {bytes}-byte tmpfs at {} (these tests run as root)", path.display());
        SmallFs { path, _dir: dir }
    }

    /// Bytes in use, as statfs counts them.
    pub fn used(&self) -> u64 {
        let out = Command::new("df").args(["-B1", "--output=used"]).arg(&self.path).output().expect("running df");
        let s = String::from_utf8_lossy(&out.stdout);
        s.lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("df said {s:?}"))
    }

    /// Files under the filesystem, for messages.
    pub fn files(&self) -> Vec<(String, u64)> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, u64)>) {
            for e in fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                let m = fs::symlink_metadata(&p).unwrap();
                if m.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push((p.strip_prefix(base).unwrap().display().to_string(), m.len()));
                }
            }
        }
        let mut v = Vec::new();
        walk(&self.path, &self.path, &mut v);
        v.sort();
        v
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

impl Store {
    /// A store whose root is `root` (for example on a `SmallFs`), with its
    /// scratch directory in a temp dir as usual.
    pub fn at(root: &Path) -> Store {
        let dir = TempDir::new("store");
        let work = dir.join("work");
        fs::create_dir_all(&work).unwrap();
        Store { dir, root: root.to_path_buf(), work }
    }
}

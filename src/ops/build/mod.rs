//! `img build`: an image from a Dockerfile, without a daemon.
//!
//! A stage's root filesystem is its base image served through FUSE from
//! the store (nothing is unpacked) under one overlayfs mount per step:
//! the step's upper directory is the step's changes, written as a layer
//! (`mount::upper`), and becomes a lower layer of the next step. RUN runs
//! its command in a sandbox on that root (`run.rs`); COPY, ADD and WORKDIR
//! write into it from this process (`fsops.rs`), paths resolved inside the
//! root. The whole build runs in a mount namespace of its own (in a user
//! namespace where the caller is root, for an ordinary user), so that
//! nothing it mounts outlives it. The final stage's layers, config and
//! history are stored as one image in one transaction, as any other.
//!
//! This file runs the stages and their config and cache steps; `stage.rs`
//! is a stage's state and the planning of stages, `config.rs` what an
//! instruction does to the config, `steps.rs` the steps that change files,
//! `mounts.rs` the build's mounts, `result.rs` the image made and stored,
//! `userns.rs` the namespaces the build runs in.

pub mod changes;
pub mod config;
mod copy;
mod deliver;
pub mod fsops;
mod mounts;
mod result;
pub mod run;
mod stage;
mod steps;
mod text;
pub mod userns;

use crate::digest::Digest;
use crate::dockerfile::{self, Args, Instruction, Keyword};
use crate::dockerignore::Matcher;
use crate::image;
use crate::store::index::ImageRecord;
use crate::store::{StagedBlob, Store, TempDir};
use anyhow::{anyhow, bail, Context, Result};
pub use deliver::{deliver, Output};
use img_sys::Kernel;
use mounts::{FuseMount, OverlayGuard};
pub use result::{build_and_store, Built};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use stage::{from_words, is_target, split_stages, Layer, Stage};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
pub use text::parse_build_static;

/// The largest Dockerfile and .dockerignore a build takes (isula-build's limit).
const MAX_BUILD_FILE: u64 = 1 << 20;
use text::{args_text, instruction_text, lookup_in, split_platform};

/// The time stamped on everything of a `--build-static` build, unless
/// `build-time=` says another.
pub const STATIC_TIME: u64 = 0;

/// Build arguments every Dockerfile may use without declaring them.
const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub no_cache: bool,
    /// One layer per stage for all its steps (and no cache).
    pub squash: bool,
    /// `--cap-add`: capabilities RUN gets besides the default set.
    pub cap_add: Vec<String>,
    pub context: PathBuf,
    /// The Dockerfile; `CONTEXT/Dockerfile` when None.
    pub dockerfile: Option<PathBuf>,
    pub build_args: Vec<(String, String)>,
    /// Fixed times in layers, config and history (reproducible images):
    /// this time.
    pub build_static: Option<u64>,
    pub host_network: bool,
    /// Pass the host's proxy variables to RUN.
    pub proxy: bool,
    /// `os/arch[/variant]` the base images must be for.
    pub platform: Option<String>,
    /// Docker image format (else OCI).
    pub docker_format: bool,
    /// The stage to stop at (its name or number).
    pub target: Option<String>,
    /// Show what RUN prints only when it fails.
    pub quiet: bool,
    /// Running as root of a user namespace (an ordinary user's build).
    pub rootless: bool,
    /// The signature policy base images pulled for FROM obey.
    pub trust: crate::ops::trust::TrustOptions,
    /// How base images pulled for FROM are fetched (`--tls-verify`, credentials...).
    pub client: crate::registry::ClientOptions,
}

struct Builder<'a> {
    /// What the stages' roots are mounted through.
    kernel: &'a dyn Kernel,
    store: &'a mut Store,
    opts: &'a BuildOptions,
    staged: Vec<StagedBlob>,
    // Mounts first: fields drop in order, and the work directory they are
    // in must outlive them (on a panic too).
    read_only: Vec<OverlayGuard<'a>>,
    fuse: Vec<FuseMount<'a>>,
    work: TempDir,
    /// The directory of each layer list mounted so far.
    layer_dirs: HashMap<Vec<Digest>, PathBuf>,
    /// What each step made, for the cache, with the staged layer's index.
    records: Vec<(crate::store::index::CacheEntry, Option<usize>)>,
    stages: Vec<Stage>,
    next: usize,
    escape: char,
    used_args: HashSet<String>,
    ignore: Matcher,
    context: PathBuf,
    log: &'a (dyn Fn(&str) + Sync),
    total: usize,
    step: usize,
    /// The time stamped on history entries and the config.
    now: String,
}

/// Builds the image `opts` describes; the layers are staged, not stored.
pub fn build(
    kernel: &dyn Kernel,
    store: &mut Store,
    opts: &BuildOptions,
    log: &(dyn Fn(&str) + Sync),
) -> Result<Built> {
    let context = std::fs::canonicalize(&opts.context)
        .with_context(|| format!("the build context {} cannot be read", opts.context.display()))?;
    if !context.is_dir() {
        bail!("the build context {} is not a directory", context.display());
    }
    let df_path = opts.dockerfile.clone().unwrap_or_else(|| context.join("Dockerfile"));
    // A Dockerfile and a .dockerignore are at most 1 MiB, as isula-build takes them.
    let too_big = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.len() > MAX_BUILD_FILE);
    if too_big(&df_path) {
        bail!("the Dockerfile {} is over 1 MiB; a Dockerfile is at most 1 MiB", df_path.display());
    }
    let df_bytes = std::fs::read(&df_path).with_context(|| {
        format!("reading the Dockerfile {}; give one with -f or put a Dockerfile in the context", df_path.display())
    })?;
    let df = dockerfile::parse(&df_bytes).with_context(|| format!("{}", df_path.display()))?;
    let ignore_path = context.join(".dockerignore");
    if too_big(&ignore_path) {
        bail!("{} is over 1 MiB; a .dockerignore is at most 1 MiB", ignore_path.display());
    }
    let ignore = match std::fs::read_to_string(&ignore_path) {
        Ok(t) => Matcher::parse(&t).map_err(|e| anyhow!("{}: {e}", ignore_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Matcher::default(),
        Err(e) => return Err(e).context("reading .dockerignore"),
    };
    let work = store.temp_dir()?;
    let now = if let Some(t) = opts.build_static {
        crate::timefmt::format_rfc3339(t as i64)
    } else {
        crate::timefmt::format_rfc3339(crate::timefmt::now())
    };
    let mut b = Builder {
        kernel,
        store,
        opts,
        work,
        staged: Vec::new(),
        fuse: Vec::new(),
        read_only: Vec::new(),
        layer_dirs: HashMap::new(),
        records: Vec::new(),
        stages: Vec::new(),
        next: 0,
        escape: df.escape,
        used_args: HashSet::new(),
        ignore,
        context,
        log,
        total: df.instructions.len(),
        step: 0,
        now,
    };
    let res = b.run(&df);
    // Unmount before the work directory goes.
    b.read_only.clear();
    b.fuse.clear();
    let final_stage = res?;
    b.finish(final_stage, &df_path)
}

impl Builder<'_> {
    fn fresh(&mut self, prefix: &str) -> PathBuf {
        self.next += 1;
        self.work.path().join(format!("{prefix}{}", self.next))
    }

    fn say(&mut self, ins: &Instruction, _text: &str) {
        self.step += 1;
        // As written, options included (COPY --from=a ...).
        (self.log)(&format!("STEP {}/{}: {}", self.step, self.total, instruction_text(ins)));
    }

    fn run(&mut self, df: &dockerfile::Dockerfile) -> Result<Stage> {
        // ARGs before the first FROM: for FROM lines only.
        let mut globals: Vec<(String, Option<String>)> = Vec::new();
        let ins = &df.instructions;
        let (before, stages) = split_stages(ins);
        for x in &ins[before] {
            if x.keyword != Keyword::Arg {
                bail!("line {}: {} before the first FROM; only ARG may come before FROM", x.line, x.keyword.name());
            }
            self.say(x, &args_text(&x.args));
            let lookup = lookup_in(&globals);
            for (k, v) in self.key_values(x, false, &lookup)? {
                let v = self.arg_value(&k, v);
                globals.retain(|(n, _)| *n != k);
                globals.push((k, v));
            }
        }
        if stages.is_empty() {
            bail!("the Dockerfile has no FROM instruction");
        }
        let mut last = None;
        for r in stages {
            let stage = self.stage(&ins[r.start], &ins[r.start + 1..r.end], &globals)?;
            let name = stage.name.clone();
            let number = self.stages.len();
            self.stages.push(stage);
            last = Some(number);
            if self.opts.target.as_deref().is_some_and(|t| is_target(name.as_deref(), number, t)) {
                break;
            }
        }
        let last = last.expect("a stage was built");
        if let Some(t) = &self.opts.target {
            if !is_target(self.stages[last].name.as_deref(), last, t) {
                bail!("--target {t}: no stage of that name in the Dockerfile");
            }
        }
        Ok(self.stages[last].clone())
    }

    /// The value of ARG `k`: `--build-arg`'s, else the default.
    fn arg_value(&mut self, k: &str, default: Option<String>) -> Option<String> {
        if let Some((_, v)) = self.opts.build_args.iter().rev().find(|(n, _)| n == k) {
            self.used_args.insert(k.to_string());
            return Some(v.clone());
        }
        default
    }

    fn key_values(
        &self,
        ins: &Instruction,
        legacy: bool,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<(String, Option<String>)>> {
        let Args::Shell(s) = &ins.args else {
            bail!("line {}: {} takes KEY=VALUE pairs, not a JSON array", ins.line, ins.keyword.name());
        };
        dockerfile::key_values(s, self.escape, legacy, lookup).map_err(|e| anyhow!("line {}: {e}", ins.line))
    }

    fn words(&self, ins: &Instruction, s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>> {
        dockerfile::words(s, self.escape, lookup).map_err(|e| anyhow!("line {}: {e}", ins.line))
    }

    fn expand(&self, ins: &Instruction, s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String> {
        dockerfile::expand(s, self.escape, lookup).map_err(|e| anyhow!("line {}: {e}", ins.line))
    }

    fn stage(
        &mut self,
        from: &Instruction,
        body: &[Instruction],
        globals: &[(String, Option<String>)],
    ) -> Result<Stage> {
        let lookup = lookup_in(globals);
        let Args::Shell(s) = &from.args else {
            bail!("line {}: FROM takes an image name, not a JSON array", from.line)
        };
        self.say(from, s);
        for (f, _) in &from.flags {
            if f != "platform" {
                bail!("line {}: FROM has no option --{f}", from.line);
            }
        }
        let w = self.words(from, s, &lookup)?;
        let Some((base, name)) = from_words(&w) else { bail!("line {}: FROM takes IMAGE [AS NAME]", from.line) };
        let platform = match from.flag("platform") {
            Some(Some(p)) => Some(self.expand(from, p, &lookup)?),
            _ => self.opts.platform.clone(),
        };
        let mut stage = self.base(&base, platform.as_deref(), from.line)?;
        stage.name = name;
        // The global ARGs' values, for stages that declare them again.
        let globals: HashMap<String, Option<String>> = globals.iter().cloned().collect();
        // ONBUILD triggers of the base image run first.
        let triggers: Vec<String> = stage
            .config
            .get("config")
            .and_then(|c| c.get("OnBuild"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if !triggers.is_empty() {
            stage.cfg().remove("OnBuild");
            for t in triggers {
                let parsed = dockerfile::parse(t.as_bytes())
                    .map_err(|e| anyhow!("line {}: the base image's ONBUILD trigger {t:?}: {e}", from.line))?;
                for mut x in parsed.instructions {
                    x.line = from.line;
                    self.total += 1;
                    self.instruction(&mut stage, &x, &globals)?;
                }
            }
        }
        for x in body {
            self.instruction(&mut stage, x, &globals)?;
        }
        Ok(stage)
    }

    /// The stage a FROM starts from: scratch, an earlier stage, or an image.
    fn base(&mut self, base: &str, platform: Option<&str>, line: usize) -> Result<Stage> {
        if base.eq_ignore_ascii_case("scratch") {
            let empty = self.work.path().join("empty");
            std::fs::create_dir_all(&empty)?;
            let (os, arch, variant) = split_platform(platform.unwrap_or(""))?;
            let mut config = Map::new();
            config.insert("architecture".into(), json!(arch));
            config.insert("os".into(), json!(os));
            if let Some(v) = variant {
                config.insert("variant".into(), json!(v));
            }
            config.insert("config".into(), json!({}));
            config.insert("rootfs".into(), json!({"type": "layers", "diff_ids": []}));
            config.insert("history".into(), json!([]));
            let mut s = Stage::new(config, hex_sha256(format!("scratch {os}/{arch}").as_bytes()));
            s.lowers = vec![empty];
            return Ok(s);
        }
        let by_name = self.stages.iter().rposition(|s| s.name.as_deref() == Some(&base.to_ascii_lowercase()));
        if let Some(n) = by_name {
            let mut s = self.stages[n].clone();
            // A squashed stage's changes become its layer for the stages after.
            if let Some(u) = s.squash_upper.take() {
                let l = self.write_layer(&u)?;
                s.layers.push(l);
                s.lowers.insert(0, u);
                s.mounted = s.layers.len();
            }
            s.name = None;
            s.args.clear();
            s.cmd_set = false;
            return Ok(s);
        }
        let img = self.image(base, platform, line)?;
        let manifest_bytes = self.store.read_blob(&img.manifest_digest, image::MAX_MANIFEST_SIZE)?;
        let image::Document::Manifest(manifest) =
            image::parse_document("the base image's manifest", &manifest_bytes, Some(&img.manifest_media_type))?
        else {
            bail!("the manifest of {base} is an index");
        };
        let config_bytes = self.store.read_blob(&manifest.config.digest, image::MAX_CONFIG_SIZE)?;
        let config: Map<String, Value> = serde_json::from_slice(&config_bytes)
            .with_context(|| format!("the config of {base} is not a JSON object"))?;
        let parsed = image::parse_config("the base image's config", &config_bytes)?;
        if manifest.layers.len() != parsed.diff_ids.len() {
            bail!(
                "{base}: its manifest has {} layers and its config {} DiffIDs",
                manifest.layers.len(),
                parsed.diff_ids.len()
            );
        }
        let layers = manifest
            .layers
            .iter()
            .zip(&parsed.diff_ids)
            .map(|(l, d)| Layer {
                media_type: l.media_type.clone(),
                digest: l.digest.clone(),
                size: l.size,
                diff_id: d.clone(),
                staged: None,
            })
            .collect();
        let mut s = Stage::new(config, hex_sha256(format!("image {}", img.id).as_bytes()));
        s.layers = layers;
        Ok(s)
    }

    /// The image a FROM or `--from` names, from the store, pulled if missing.
    fn image(&mut self, name: &str, platform: Option<&str>, line: usize) -> Result<ImageRecord> {
        let img = match crate::ops::resolve_image(self.store, name) {
            Ok(i) => i,
            Err(e) if e.downcast_ref::<crate::ops::NotFound>().is_some() => {
                (self.log)(&format!("{name} is not in the store: pulling it"));
                let opts = crate::ops::pull::PullOptions {
                    reference: name.to_string(),
                    platform: platform.map(str::to_string),
                    client: self.opts.client.clone(),
                    jobs: 3,
                    lazy: false,
                    trust: self.opts.trust.clone(),
                };
                crate::ops::pull::pull(self.store, &opts, &|m: &str| eprintln!("{m}")).with_context(|| {
                    format!("line {line}: the base image {name} is not in the store and pulling it failed")
                })?;
                crate::ops::resolve_image(self.store, name)?
            }
            Err(e) => return Err(e.context(format!("line {line}"))),
        };
        crate::ops::require_complete(&img, name)?;
        if let Some(p) = platform {
            let (os, arch, _) = split_platform(p)?;
            if img.os != os || img.architecture != arch {
                bail!(
                    "line {line}: {name} is for {}/{}, not {p}; pull the {p} image (img pull --platform {p} {name})",
                    img.os,
                    img.architecture
                );
            }
        }
        Ok(img)
    }

    /// Stored layers `layers` served through FUSE: their directory.
    fn mount_layers(&mut self, layers: &[Digest], label: &str) -> Result<PathBuf> {
        if let Some(d) = self.layer_dirs.get(layers) {
            return Ok(d.clone());
        }
        let dir = self.fresh("i");
        let m = FuseMount::new(self.kernel, self.store, layers, label, dir.clone())?;
        self.fuse.push(m);
        self.layer_dirs.insert(layers.to_vec(), dir.clone());
        Ok(dir)
    }

    /// Makes the stage's files reachable at `st.lowers` (mounting the
    /// layers that came from the base image or the cache).
    fn materialize(&mut self, st: &mut Stage) -> Result<()> {
        if st.mounted == st.layers.len() && !st.lowers.is_empty() {
            return Ok(());
        }
        if st.layers.is_empty() {
            let empty = self.work.path().join("empty");
            std::fs::create_dir_all(&empty)?;
            st.lowers = vec![empty];
        } else {
            // Cached steps come before the first step that runs, so all
            // the layers not mounted yet, and those below, are stored.
            if st.layers.iter().any(|l| l.staged.is_some()) {
                bail!("internal error: a cached step after a step that ran");
            }
            let stored: Vec<Digest> = st.layers.iter().map(|l| l.digest.clone()).collect();
            st.lowers = vec![self.mount_layers(&stored, "the stage's layers")?];
        }
        st.mounted = st.layers.len();
        Ok(())
    }

    /// The cache key of instruction `ins` after the stage so far, with
    /// what else decides its result (`extra`).
    fn step_key(&self, st: &Stage, ins: &Instruction, extra: &str) -> String {
        let mut t = instruction_text(ins);
        for h in &ins.heredocs {
            t.push_str(&format!("\n<<{}{}\n{}", if h.expand { "" } else { "'" }, h.name, h.content));
        }
        // The format and --build-static's time decide the layers and history too.
        hex_sha256(
            format!("{}\n{t}\n{extra}\n{} {:?}", st.key, self.opts.docker_format, self.opts.build_static).as_bytes(),
        )
    }

    /// The cached result of step `key`, unless --no-cache.
    fn cached(&self, key: &str) -> Result<Option<crate::store::index::CacheEntry>> {
        if self.opts.no_cache || self.opts.squash {
            return Ok(None);
        }
        Ok(self.store.index().cache_get(key)?)
    }

    /// Ends a step: the stage's key moves on, and what it made is recorded.
    fn record(&mut self, st: &mut Stage, key: String, created: String, layer: Option<&Layer>) {
        let entry = crate::store::index::CacheEntry {
            key: key.clone(),
            layer: layer.map(|l| (l.digest.clone(), l.diff_id.clone(), l.size, l.media_type.clone())),
            created: created.clone(),
        };
        self.records.push((entry, layer.and_then(|l| l.staged)));
        st.key = key;
        st.last_created = Some(created);
    }

    fn history(&self, stage: &mut Stage, created_by: String, empty: bool, created: &str) {
        let mut e = json!({"created": created, "created_by": created_by});
        if empty {
            e["empty_layer"] = json!(true);
        }
        let h = stage.config.entry("history").or_insert_with(|| json!([]));
        match h.as_array_mut() {
            Some(a) => a.push(e),
            None => *h = json!([e]),
        }
    }

    fn instruction(
        &mut self,
        st: &mut Stage,
        ins: &Instruction,
        globals: &HashMap<String, Option<String>>,
    ) -> Result<()> {
        let lookup = st.lookup();
        let text = args_text(&ins.args);
        let nop = |kw: &str, t: &str| format!("/bin/sh -c #(nop) {kw} {t}");
        // The history entry of an instruction that only changes the config.
        let mut hist: Option<String> = None;
        for (f, _) in &ins.flags {
            if !config::known_flags(ins.keyword).contains(&f.as_str()) {
                bail!("line {}: {} has no option --{f}", ins.line, ins.keyword.name());
            }
        }
        match ins.keyword {
            Keyword::From => unreachable!("stages are split at FROM"),
            Keyword::Arg => {
                self.say(ins, &text);
                for (k, v) in self.key_values(ins, false, &lookup)? {
                    let default = v.or_else(|| globals.get(&k).cloned().flatten());
                    let v = self.arg_value(&k, default);
                    st.args.retain(|(n, _)| *n != k);
                    st.args.push((k, v));
                }
                hist = Some(nop("ARG", &text));
            }
            Keyword::Workdir => {
                self.say(ins, &text);
                self.apply_config(st, ins)?;
                let abs = st.workdir();
                let d = abs.clone();
                let user = st.user();
                let line = ins.line;
                let key = self.step_key(st, ins, &format!("{abs} {user}"));
                if let Some(c) = self.cached(&key)? {
                    self.use_cached(st, key, c, nop("WORKDIR", &abs));
                    return Ok(());
                }
                let layer = self.fs_step(st, false, move |root| {
                    // The directory belongs to the stage's user, as buildah makes it.
                    let owner = run::resolve_user(&user, root).with_context(|| format!("line {line}"))?;
                    fsops::mkdir_all(root, &d, owner)?;
                    Ok(Vec::new())
                })?;
                let now = self.now.clone();
                self.history(st, nop("WORKDIR", &abs), layer.is_none(), &now);
                self.record(st, key, now, layer.as_ref());
            }
            Keyword::Run => {
                self.say(ins, &text);
                self.run_step(st, ins)?;
            }
            Keyword::Copy | Keyword::Add => {
                self.say(ins, &text);
                self.copy_step(st, ins)?;
            }
            k => {
                self.say(ins, &text);
                self.apply_config(st, ins)?;
                hist = Some(nop(k.name(), &text));
            }
        }
        if let Some(h) = hist {
            // ARG values decide what later steps see; the rest is in the text.
            let extra = if ins.keyword == Keyword::Arg { format!("{:?}", st.args) } else { String::new() };
            let key = self.step_key(st, ins, &extra);
            let created = match self.cached(&key)? {
                Some(c) => c.created,
                None => self.now.clone(),
            };
            self.history(st, h, true, &created);
            self.record(st, key, created, None);
        }
        Ok(())
    }

    /// A step whose result is cached: its layer (if any) joins the stage.
    fn use_cached(&mut self, st: &mut Stage, key: String, c: crate::store::index::CacheEntry, created_by: String) {
        let layer = c.layer.map(|(digest, diff_id, size, media_type)| Layer {
            media_type,
            digest,
            size,
            diff_id,
            staged: None,
        });
        if let Some(l) = &layer {
            st.layers.push(l.clone());
        }
        (self.log)("--> Using cache");
        self.history(st, created_by, layer.is_none(), &c.created);
        self.record(st, key, c.created, layer.as_ref());
    }

    /// Applies a config instruction to the stage's config.
    fn apply_config(&mut self, st: &mut Stage, ins: &Instruction) -> Result<()> {
        let mut scope = config::Scope { escape: self.escape, args: &st.args, cmd_set: st.cmd_set };
        config::apply(&mut st.config, ins, &mut scope)?;
        st.cmd_set = scope.cmd_set;
        Ok(())
    }
}

fn hex_sha256(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

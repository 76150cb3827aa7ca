//! The steps that change a stage's files: RUN, COPY and ADD (WORKDIR's
//! directory too), each on an overlay mount of the stage's root whose
//! upper directory becomes the step's layer.

use super::copy::{archive_reader, chown_ids, content_digest, copy_tree, glob_walk};
use super::fsops::{self, Attrs};
use super::mounts::{OverlayGuard, Prune};
use super::stage::{Layer, Stage};
use super::text::{args_text, copy_created_by, copy_summary, heredoc_script};
use super::{config, run, Builder, PROXY_ARGS};
use crate::dockerfile::{Args, Instruction, Keyword};
use crate::dockerignore;
use crate::image;
use crate::store::Compression;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

impl Builder<'_> {
    /// A step that changes the stage's files: `f` gets the root (mounted
    /// writable) and makes the changes; they become a layer of the stage
    /// (always, or only when there are some when `!always`).
    pub(super) fn fs_step(
        &mut self,
        st: &mut Stage,
        always: bool,
        f: impl FnOnce(&Path) -> Result<Vec<Prune>>,
    ) -> Result<Option<Layer>> {
        self.materialize(st)?;
        let upper = match (&st.squash_upper, self.opts.squash) {
            (Some(u), _) => u.clone(),
            (None, squash) => {
                let u = self.fresh("u");
                std::fs::create_dir(&u).with_context(|| format!("making {}", u.display()))?;
                if squash {
                    st.squash_upper = Some(u.clone());
                }
                u
            }
        };
        let work = self.fresh("w");
        let merged = self.fresh("m");
        for d in [&work, &merged] {
            std::fs::create_dir(d).with_context(|| format!("making {}", d.display()))?;
        }
        let ov = img_sys::OverlayMount {
            lower: st.lowers.clone(),
            upper: upper.clone(),
            work: work.clone(),
            target: merged.clone(),
            userxattr: self.opts.rootless,
        };
        self.kernel.mount_overlay(&ov).context("mounting the stage's root for a build step")?;
        let guard = OverlayGuard(self.kernel, merged.clone());
        let res = f(&merged);
        drop(guard);
        let _ = std::fs::remove_dir(&merged);
        let _ = std::fs::remove_dir_all(&work);
        for p in res? {
            p.apply(&upper);
        }
        if self.opts.squash {
            return Ok(None);
        }
        let empty = std::fs::read_dir(&upper)?.next().is_none();
        if empty && !always {
            let _ = std::fs::remove_dir(&upper);
            return Ok(None);
        }
        let layer = self.write_layer(&upper)?;
        st.lowers.insert(0, upper);
        st.layers.push(layer.clone());
        st.mounted = st.layers.len();
        Ok(Some(layer))
    }

    /// The changes in `upper` as a layer, staged. Layers are kept
    /// uncompressed, as buildah and docker keep what they build (a build is
    /// then bound by the files it writes, not by gzip); `img push` gzips
    /// them on the way out.
    pub(super) fn write_layer(&mut self, upper: &Path) -> Result<Layer> {
        let w = std::io::BufWriter::with_capacity(1 << 20, self.store.blob_writer()?);
        let fixed = self.opts.build_static;
        let (w, _) = crate::mount::upper::write_layer_with(upper, w, fixed).context("writing a layer")?;
        let staged = w.into_inner().map_err(|e| e.into_error()).context("writing a layer")?.finish()?;
        let layer = Layer {
            media_type: image::layer_media_type(self.opts.docker_format, Compression::None)
                .expect("uncompressed layers have a media type in both families")
                .to_string(),
            digest: staged.digest().clone(),
            size: staged.size(),
            diff_id: staged.digest().clone(),
            staged: Some(self.staged.len()),
        };
        self.staged.push(staged);
        Ok(layer)
    }

    pub(super) fn run_step(&mut self, st: &mut Stage, ins: &Instruction) -> Result<()> {
        let argv = match &ins.args {
            Args::Exec(v) => v.clone(),
            Args::Shell(s) => {
                let mut v = config::shell(&st.config);
                v.push(heredoc_script(s, &ins.heredocs));
                v
            }
        };
        if argv.is_empty() {
            bail!("line {}: RUN needs a command", ins.line);
        }
        let host_network = match ins.flag("network") {
            None => self.opts.host_network,
            Some(Some("host")) | Some(Some("default")) => self.opts.host_network,
            Some(Some("none")) => false,
            Some(v) => bail!("line {}: RUN --network={}: use none, host or default", ins.line, v.unwrap_or("")),
        };
        let host = |p: &str| if self.opts.proxy { std::env::var(p).ok() } else { None };
        let (env, proxies_used) = run_env(st.env(), &st.args, &self.opts.build_args, host);
        self.used_args.extend(proxies_used);
        let plan_path = self.fresh("plan");
        let plan = run::RunPlan {
            root: PathBuf::new(),
            argv: argv.clone(),
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: st.workdir(),
            user: st.user(),
            host_network,
            hostname: "img-build".into(),
            caps: run::capabilities(&self.opts.cap_add)?,
        };
        let quiet = self.opts.quiet;
        let line = ins.line;
        let shown = crate::reference::shorten_to(&args_text(&ins.args), 200);
        let created_by = match &ins.args {
            Args::Exec(v) => v.join(" "),
            Args::Shell(_) => argv.join(" "),
        };
        let key = self.step_key(
            st,
            ins,
            &format!("network={host_network} caps={:?}", run::capabilities(&self.opts.cap_add)?),
        );
        if let Some(c) = self.cached(&key)? {
            self.use_cached(st, key, c, created_by);
            return Ok(());
        }
        let layer = self.fs_step(st, true, |root| {
            let mut plan = plan;
            plan.root = root.to_path_buf();
            // The mount points RUN needs; made for it, removed after.
            let mut made = Vec::new();
            for d in ["proc", "dev", "sys"] {
                let p = root.join(d);
                if std::fs::symlink_metadata(&p).is_err() {
                    std::fs::create_dir(&p).with_context(|| format!("making /{d} for RUN"))?;
                    made.push(p);
                }
            }
            // The resolver files the host's are bound over, made empty where
            // the image has none (and removed after, /etc as it was).
            let mut prune = Vec::new();
            let mut made_files = Vec::new();
            let etc = root.join("etc");
            let etc_md = std::fs::symlink_metadata(&etc).ok().filter(|m| m.is_dir());
            if let (true, Some(md)) = (plan.host_network, &etc_md) {
                for f in ["resolv.conf", "hosts"] {
                    let p = etc.join(f);
                    if std::fs::symlink_metadata(&p).is_err() && Path::new("/etc").join(f).is_file() {
                        std::fs::write(&p, b"").with_context(|| format!("making /etc/{f} for RUN"))?;
                        made_files.push(p);
                    }
                }
                if !made_files.is_empty() {
                    prune.push(Prune { dir: "etc".into(), mode: md.mode(), uid: md.uid(), gid: md.gid() });
                }
            }
            fsops::mkdir_all(root, &plan.cwd, (0, 0))?;
            std::fs::write(&plan_path, serde_json::to_vec(&plan)?)?;
            // The running binary itself, even if its file was replaced meanwhile.
            let exe = PathBuf::from("/proc/self/exe");
            let mut cmd = std::process::Command::new(exe);
            // Its standard input is a pipe whose only writer is this
            // process: the step ends when the build goes (see run.rs).
            let (alive_r, alive_w) = std::io::pipe().context("making a pipe for a RUN step")?;
            cmd.arg("__build-run").arg(&plan_path).stdin(std::process::Stdio::from(alive_r));
            cmd.env("IMG_BUILD_PARENT", std::process::id().to_string());
            let (status, output) = if quiet {
                let out = cmd.output().context("starting a RUN step")?;
                let mut text = out.stdout;
                text.extend_from_slice(&out.stderr);
                (out.status, text)
            } else {
                // What the command prints goes to stderr, with progress.
                let err = std::io::stderr().as_fd().try_clone_to_owned()?;
                cmd.stdout(std::process::Stdio::from(err));
                (cmd.status().context("starting a RUN step")?, Vec::new())
            };
            drop(alive_w);
            for p in made.iter().rev() {
                let _ = std::fs::remove_dir(p);
            }
            for p in &made_files {
                let _ = std::fs::remove_file(p);
            }
            if let (false, Some(md)) = (made_files.is_empty(), &etc_md) {
                fsops::set_mtime(&etc, md.mtime(), md.mtime_nsec())?;
            }
            let code = run::exit_code(status);
            if code != 0 {
                if !output.is_empty() {
                    eprint!("{}", String::from_utf8_lossy(&output));
                }
                bail!("line {line}: RUN {shown}: the command exited with status {code}");
            }
            Ok(prune)
        })?;
        let now = self.now.clone();
        self.history(st, created_by, layer.is_none(), &now);
        self.record(st, key, now, layer.as_ref());
        Ok(())
    }

    pub(super) fn copy_step(&mut self, st: &mut Stage, ins: &Instruction) -> Result<()> {
        let add = ins.keyword == Keyword::Add;
        let lookup = st.lookup();
        let mut words = match &ins.args {
            Args::Exec(v) => v.iter().map(|w| self.expand(ins, w, &lookup)).collect::<Result<Vec<_>>>()?,
            Args::Shell(s) => self.words(ins, s, &lookup)?,
        };
        // Here-documents are files of their own.
        let mut inline: HashMap<String, PathBuf> = HashMap::new();
        for h in &ins.heredocs {
            let p = self.fresh("heredoc");
            let content = if h.expand { self.expand(ins, &h.content, &lookup)? } else { h.content.clone() };
            std::fs::write(&p, content)?;
            inline.insert(h.name.clone(), p);
        }
        words.retain(|w| !w.is_empty());
        for w in &mut words {
            if let Some(n) = w.strip_prefix("<<").map(|n| n.trim_start_matches('-').trim_matches(['"', '\''])) {
                if inline.contains_key(n) {
                    *w = format!("<<{n}");
                }
            }
        }
        if words.len() < 2 {
            bail!("line {}: {} takes SOURCE... DEST", ins.line, ins.keyword.name());
        }
        let dest_word = words.pop().expect("two words or more");
        // A directory: a trailing /, or several sources (after the globs
        // are expanded, below).
        let mut dest_is_dir = dest_word.ends_with('/');
        let dest = if dest_word.starts_with('/') { dest_word.clone() } else { format!("{}/{dest_word}", st.workdir()) };
        let dest = fsops::clean_abs(&dest);
        let chown = match ins.flag("chown") {
            Some(Some(c)) => Some(self.expand(ins, c, &lookup)?),
            Some(None) => bail!("line {}: --chown needs USER[:GROUP]", ins.line),
            None => None,
        };
        let chmod = match ins.flag("chmod") {
            Some(Some(m)) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| anyhow!("line {}: --chmod={m}: give an octal mode like 0644", ins.line))?,
            ),
            Some(None) => bail!("line {}: --chmod needs a mode", ins.line),
            None => None,
        };
        // Where the sources come from.
        let (src_root, from_context) = match ins.flag("from") {
            Some(Some(f)) => {
                let f = self.expand(ins, f, &lookup)?;
                (self.source_root(&f, ins.line)?, false)
            }
            Some(None) => bail!("line {}: --from needs a stage or an image", ins.line),
            None => (self.context.clone(), true),
        };
        // The sources, globs expanded.
        let mut sources: Vec<(PathBuf, String)> = Vec::new();
        for w in &words {
            if w.starts_with("http://") || w.starts_with("https://") || w.starts_with("git@") {
                bail!(
                    "line {}: {} of a URL ({w}) is not supported; download it in a RUN step or put it in the context",
                    ins.line,
                    ins.keyword.name()
                );
            }
            if let Some(n) = w.strip_prefix("<<") {
                if let Some(p) = inline.get(n) {
                    sources.push((p.clone(), n.to_string()));
                    continue;
                }
            }
            let found = self.find_sources(&src_root, w, from_context)?;
            if found.is_empty() {
                bail!(
                    "line {}: {} {w}: no such file in the {}{}",
                    ins.line,
                    ins.keyword.name(),
                    if from_context { "build context" } else { "source" },
                    if from_context && self.ignore_hides(w) { " (.dockerignore leaves it out)" } else { "" }
                );
            }
            sources.extend(found);
        }
        dest_is_dir |= sources.len() > 1;
        let ignore = if from_context { Some(self.ignore.clone()) } else { None };
        // Each source's kind and digest, for the history and the cache.
        let mut digests = Vec::new();
        for s in &sources {
            let kind = if std::fs::metadata(&s.0).is_ok_and(|m| m.is_dir()) { "dir" } else { "file" };
            let d = content_digest(std::slice::from_ref(s), ignore.as_ref(), !from_context)?;
            digests.push((kind, d.hex().to_string()));
        }
        let summary = copy_summary(&digests);
        let line = ins.line;
        let kw = ins.keyword.name();
        let what = if ins.keyword == Keyword::Add { "ADD" } else { "COPY" };
        let created_by = copy_created_by(what, chown.as_deref(), &summary, &dest_word);
        let key = self.step_key(st, ins, &format!("{summary} {dest} {chown:?} {chmod:?} {from_context}"));
        if let Some(c) = self.cached(&key)? {
            self.use_cached(st, key, c, created_by);
            return Ok(());
        }
        let layer = self.fs_step(st, true, |root| {
            let owner = match &chown {
                Some(c) => Some(chown_ids(c, root).with_context(|| format!("line {line}: --chown={c}"))?),
                None => None,
            };
            let attrs = Attrs { owner, mode: chmod, keep_owner: !from_context };
            let dir_owner = owner.unwrap_or((0, 0));
            for (host, rel) in &sources {
                let md = std::fs::metadata(host).with_context(|| format!("reading {}", host.display()))?;
                if md.is_dir() {
                    fsops::mkdir_all(root, &dest, dir_owner)?;
                    copy_tree(host, rel, root, &dest, attrs, ignore.as_ref())
                        .with_context(|| format!("line {line}: {kw} {rel}"))?;
                    continue;
                }
                if add {
                    if let Some(reader) = archive_reader(host)? {
                        fsops::mkdir_all(root, &dest, dir_owner)?;
                        fsops::extract_tar(reader, root, &dest, rel)
                            .with_context(|| format!("line {line}: ADD {rel}"))?;
                        continue;
                    }
                }
                let base = Path::new(rel).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let into_dir = dest_is_dir || {
                    let p = fsops::resolve_in_root(root, &dest, true)?;
                    p.is_dir()
                };
                let target = if into_dir {
                    fsops::mkdir_all(root, &dest, dir_owner)?;
                    format!("{}/{base}", dest.trim_end_matches('/'))
                } else {
                    let parent =
                        Path::new(&dest).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                    fsops::mkdir_all(root, &parent, dir_owner)?;
                    dest.clone()
                };
                fsops::copy_entry(host, root, &target, attrs).with_context(|| format!("line {line}: {kw} {rel}"))?;
            }
            Ok(Vec::new())
        })?;
        let now = self.now.clone();
        self.history(st, created_by, layer.is_none(), &now);
        self.record(st, key, now, layer.as_ref());
        Ok(())
    }

    /// Does .dockerignore leave `w` out of the context?
    pub(super) fn ignore_hides(&self, w: &str) -> bool {
        self.ignore.excluded(w)
    }

    /// The root COPY --from reads: an earlier stage's files, or an image's.
    pub(super) fn source_root(&mut self, from: &str, line: usize) -> Result<PathBuf> {
        let stage = match from.parse::<usize>() {
            Ok(n) if n < self.stages.len() => Some(n),
            Ok(n) => bail!("line {line}: --from={n}: there is no stage {n} before this one (stages count from 0)"),
            Err(_) => self.stages.iter().rposition(|s| s.name.as_deref() == Some(&from.to_ascii_lowercase())),
        };
        let lowers = match stage {
            Some(n) => {
                let mut s = self.stages[n].clone();
                self.materialize(&mut s)?;
                self.stages[n] = s.clone();
                let mut l = s.lowers;
                if let Some(u) = s.squash_upper {
                    l.insert(0, u);
                }
                l
            }
            None => {
                let img = self.image(from, None, line)?;
                let layers = crate::ops::save::layers_of(self.store, &img)?;
                vec![self.mount_layers(&layers, from)?]
            }
        };
        if lowers.len() == 1 {
            return Ok(lowers[0].clone());
        }
        // Several layers: a read-only overlay of them (no upper directory).
        let target = self.fresh("ro");
        std::fs::create_dir(&target)?;
        let data = img_sys::OverlayMount {
            lower: lowers,
            upper: PathBuf::new(),
            work: PathBuf::new(),
            target: target.clone(),
            userxattr: self.opts.rootless,
        };
        self.kernel.mount_overlay_read_only(&data).context("mounting a stage's files for COPY --from")?;
        self.read_only.push(OverlayGuard(self.kernel, target.clone()));
        Ok(target)
    }

    /// The entries source `w` names in `root`: itself, or what its glob
    /// matches, with their names relative to the root.
    pub(super) fn find_sources(&self, root: &Path, w: &str, from_context: bool) -> Result<Vec<(PathBuf, String)>> {
        let rel = fsops::clean_abs(w).trim_start_matches('/').to_string();
        let excluded = |r: &str| from_context && !r.is_empty() && self.ignore.excluded(r);
        if !dockerignore::is_pattern(&rel) {
            let host = if from_context { root.join(&rel) } else { fsops::resolve_in_root(root, &rel, true)? };
            if std::fs::symlink_metadata(&host).is_err()
                || (excluded(&rel) && !std::fs::metadata(&host).map(|m| m.is_dir()).unwrap_or(false))
            {
                return Ok(vec![]);
            }
            if from_context {
                // A symlink named here must stay inside the context.
                let real = std::fs::canonicalize(&host).with_context(|| format!("reading {}", host.display()))?;
                if !real.starts_with(root) {
                    bail!("{w} leads out of the build context (to {}); copy what is inside it", real.display());
                }
                return Ok(vec![(real, rel)]);
            }
            return Ok(vec![(host, rel)]);
        }
        let mut out = Vec::new();
        let parts: Vec<&str> = rel.split('/').collect();
        glob_walk(root, "", &parts, &mut out)?;
        out.retain(|(_, r)| !excluded(r));
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }
}

/// The environment of a RUN step: the stage's ENV, then its ARG values
/// (ENV wins), then each proxy variable neither sets, from `--build-arg`
/// or else from the host (`host`, None when --proxy=false), and HOSTNAME.
/// Also gives the proxy build arguments it used.
fn run_env(
    mut env: Vec<(String, String)>,
    args: &[(String, Option<String>)],
    build_args: &[(String, String)],
    host: impl Fn(&str) -> Option<String>,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut used = Vec::new();
    let declared: HashSet<String> = env.iter().map(|(k, _)| k.clone()).collect();
    for (k, v) in args {
        if let (Some(v), false) = (v, declared.contains(k)) {
            env.push((k.clone(), v.clone()));
        }
    }
    for p in PROXY_ARGS {
        if env.iter().any(|(k, _)| k == p) {
            continue;
        }
        if let Some((_, v)) = build_args.iter().rev().find(|(k, _)| k == p) {
            used.push(p.to_string());
            env.push((p.to_string(), v.clone()));
        } else if let Some(v) = host(p) {
            env.push((p.to_string(), v));
        }
    }
    if !env.iter().any(|(k, _)| k == "HOSTNAME") {
        env.push(("HOSTNAME".into(), "img-build".into()));
    }
    (env, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn run_environment_is_env_then_args_then_proxies() {
        let args: Vec<(String, Option<String>)> =
            vec![("A".into(), Some("arg".into())), ("V".into(), Some("1".into())), ("NOVALUE".into(), None)];
        let env = pairs(&[("PATH", "/bin"), ("A", "env")]);
        let build_args = pairs(&[("http_proxy", "old"), ("http_proxy", "http://p:3128"), ("V", "2")]);
        let host = |p: &str| (p == "no_proxy" || p == "http_proxy").then(|| format!("host-{p}"));
        let (got, used) = run_env(env, &args, &build_args, host);
        assert_eq!(
            got,
            pairs(&[
                ("PATH", "/bin"),
                ("A", "env"),
                ("V", "1"),
                ("http_proxy", "http://p:3128"),
                ("no_proxy", "host-no_proxy"),
                ("HOSTNAME", "img-build"),
            ])
        );
        assert_eq!(used, vec!["http_proxy".to_string()]);
    }

    #[test]
    fn run_environment_keeps_what_the_stage_sets() {
        let env = pairs(&[("HOSTNAME", "mine"), ("HTTPS_PROXY", "env")]);
        let build_args = pairs(&[("HTTPS_PROXY", "arg")]);
        let (got, used) = run_env(env.clone(), &[], &build_args, |_| Some("host".into()));
        let mut want = env;
        want.extend(PROXY_ARGS.iter().filter(|p| **p != "HTTPS_PROXY").map(|p| (p.to_string(), "host".to_string())));
        assert_eq!(got, want);
        assert!(used.is_empty());
        // --proxy=false: nothing from the host.
        let (got, _) = run_env(Vec::new(), &[], &[], |_| None);
        assert_eq!(got, pairs(&[("HOSTNAME", "img-build")]));
    }
}

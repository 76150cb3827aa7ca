use super::{AlreadyReported, Ctx};
use crate::ops::{self, remove};
use crate::timefmt::human_size;
use anyhow::Result;
use clap::Args;
use std::io::{BufRead, Write};

#[derive(Args)]
pub struct TagArgs {
    /// The image to name
    #[arg(value_name = "SOURCE")]
    source: String,
    /// New names (NAME[:TAG])
    #[arg(required = true, value_name = "TARGET")]
    targets: Vec<String>,
}

pub fn tag(ctx: &Ctx, a: TagArgs) -> Result<()> {
    let mut store = ctx.open_store()?;
    ops::tag(&mut store, &a.source, &a.targets)?;
    Ok(())
}

#[derive(Args)]
pub struct PinArgs {
    /// Images to pin or unpin: names or IDs
    #[arg(value_name = "IMAGE", required = true)]
    names: Vec<String>,
}

/// `img pin` / `img unpin`: prints each image's ID; a name not found is
/// reported and the others are still done.
pub fn pin(ctx: &Ctx, a: PinArgs, pinned: bool) -> Result<()> {
    let mut store = ctx.open_store()?;
    let mut out = super::stdout();
    let mut failed = false;
    for n in &a.names {
        match crate::ops::evict::pin(&mut store, n, pinned) {
            Ok(id) => writeln!(out, "{id}")?,
            Err(e) => {
                eprintln!("error: {}", super::chain(&e));
                failed = true;
            }
        }
    }
    out.flush()?;
    if failed {
        return Err(AlreadyReported(if pinned { "pin" } else { "unpin" }).into());
    }
    Ok(())
}

#[derive(Args)]
pub struct RmiArgs {
    /// Remove images even when they have several tags or are mounted (never changes not committed)
    #[arg(short, long)]
    force: bool,
    /// Remove all images
    #[arg(short, long)]
    all: bool,
    /// Images to remove: names (a name untags) or IDs
    #[arg(value_name = "IMAGE", required_unless_present = "all")]
    names: Vec<String>,
}

pub fn rmi(ctx: &Ctx, a: RmiArgs) -> Result<()> {
    let mut store = ctx.open_store()?;
    let names: Vec<String> =
        if a.all { remove::all_image_ids(&store)?.iter().map(|d| d.to_string()).collect() } else { a.names.clone() };
    let force = a.force || a.all;
    let mut failed = false;
    let mut out = super::stdout();
    for n in &names {
        match remove::rmi_one(ctx.kernel(), &mut store, n, force) {
            Ok(r) => {
                if !super::dialect::print_done(&mut out, &super::dialect::Done::Removed(n))? {
                    for t in &r.untagged {
                        writeln!(out, "Untagged: {t}")?;
                    }
                    for d in &r.deleted {
                        writeln!(out, "Deleted: {d}")?;
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {}", super::chain(&e));
                failed = true;
            }
        }
    }
    remove::collect_garbage_if_idle(&mut store)?;
    if failed {
        return Err(AlreadyReported("rmi").into());
    }
    out.flush()?;
    Ok(())
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove every image that is not mounted, not just dangling ones
    #[arg(short, long)]
    pub(super) all: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub(super) force: bool,
}

pub fn prune(ctx: &Ctx, a: PruneArgs) -> Result<()> {
    if !a.force {
        let what = if a.all {
            "all images that are not mounted, and unreferenced blobs"
        } else {
            "all dangling images and unreferenced blobs"
        };
        if !confirm_prune(what)? {
            return Ok(());
        }
    }
    let mut store = ctx.open_store()?;
    let report = remove::prune(&mut store, a.all, || eprintln!("waiting for other img processes to finish..."))?;
    let mut out = super::stdout();
    if super::dialect::current() == super::dialect::Dialect::IsulaBuild {
        // isula-build ctr-img rm -p: a line per image removed.
        for d in report.removed.iter().flat_map(|r| &r.deleted) {
            writeln!(out, "Deleted: {d}")?;
        }
        out.flush()?;
        return Ok(());
    }
    print_pruned(&mut out, &report.removed, report.bytes)
}

/// Asks, as docker does, whether to remove `what`; the answer is read from
/// standard input, and end of input means no.
pub(super) fn confirm_prune(what: &str) -> Result<bool> {
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let yes = matches!(line.trim(), "y" | "Y" | "yes");
    if !yes {
        eprintln!("not pruning");
    }
    Ok(yes)
}

/// Prints what a prune removed and the space it gave back, as docker does.
pub(super) fn print_pruned(out: &mut impl Write, removed: &[remove::Removed], bytes: u64) -> Result<()> {
    if !removed.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for r in removed {
            for t in &r.untagged {
                writeln!(out, "untagged: {t}")?;
            }
            for d in &r.deleted {
                writeln!(out, "deleted: {d}")?;
            }
        }
        writeln!(out)?;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(bytes))?;
    out.flush()?;
    Ok(())
}

#[derive(Args)]
pub struct ConvertArgs {
    /// Layer format to write: estargz or zstd:chunked
    #[arg(long, value_name = "FORMAT", value_parser = super::format_parser(&["estargz", "zstd:chunked"], false))]
    format: String,
    /// Largest piece of a file fetched at once by lazy pullers (bytes)
    #[arg(long, default_value_t = crate::layerindex::estargz::DEFAULT_CHUNK_SIZE, value_name = "BYTES")]
    chunk_size: u64,
    /// Files to put first in each layer, for lazy pullers to fetch before anything else (one path per line)
    #[arg(long, value_name = "FILE")]
    prefetch_list: Option<std::path::PathBuf>,
    /// Print only the new image's ID
    #[arg(short, long)]
    quiet: bool,
    /// The image to convert
    #[arg(value_name = "SOURCE")]
    source: String,
    /// The converted image's name (NAME[:TAG])
    #[arg(value_name = "TARGET")]
    target: String,
}

pub fn convert(ctx: &Ctx, a: ConvertArgs) -> Result<()> {
    let mut store = ctx.open_store()?;
    let src = ops::resolve_image(&store, &a.source)?;
    let prefetch = match &a.prefetch_list {
        None => Vec::new(),
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("reading the prefetch list {}: {e}", p.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect(),
    };
    let Some(format) = ops::convert::TocFormat::parse(&a.format) else {
        anyhow::bail!(
            "converting {}: unknown format {:?}; use --format estargz or --format zstd:chunked",
            a.source,
            a.format
        );
    };
    let opts = ops::convert::ConvertOptions { format, chunk_size: a.chunk_size.max(4096), prefetch };
    let done = ops::convert::convert(&mut store, &src, &a.target, &opts)
        .map_err(|e| e.context(format!("converting {}", a.source)))?;
    if !a.quiet {
        for (from, to, toc) in &done.layers {
            eprintln!("layer {} -> {} (toc {})", from.short(), to.short(), toc.short());
        }
    }
    writeln!(super::stdout(), "{}", done.id)?;
    Ok(())
}

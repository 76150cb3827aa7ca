use super::{AlreadyReported, Ctx};
use crate::ops::fsck as ops_fsck;
use crate::timefmt::human_size;
use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::Write;

#[derive(Args)]
pub struct InfoArgs {
    /// Output format: json or a Go template
    #[arg(short, long, value_parser = super::format_parser(&["json"], true))]
    format: Option<String>,
}

fn dir_size(p: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                total += if m.is_dir() { dir_size(&e.path()) } else { m.len() };
            }
        }
    }
    total
}

pub fn info(ctx: &Ctx, a: InfoArgs) -> Result<()> {
    let store = ctx.open_store()?;
    // The registry configuration (registries.conf, isula-build's
    // registries.toml, iSulad's daemon.json) and the auth file, as read.
    let mut config_files = crate::registry::config::files_in_use();
    let auth = crate::registry::authfile::default_path();
    if auth.is_file() {
        config_files.push(auth);
    }
    let (images, tags, blobs, blob_bytes) = store.index().counts()?;
    let db_bytes: u64 = ["img.db", "img.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(store.root().join(f)).ok())
        .map(|m| m.len())
        .sum();
    let doc = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Store": {
            "Root": store.root().display().to_string(),
            "Index": store.index().path().display().to_string(),
            "FormatVersion": crate::index::STORE_FORMAT,
            "SchemaVersion": store.index().schema_version()?,
            "Images": images,
            "Tags": tags,
            "Blobs": blobs,
            "BlobBytes": blob_bytes,
            "IndexBytes": db_bytes,
            "IngestBytes": dir_size(&store.ingest_dir()),
        },
        "Host": {
            "Os": std::env::consts::OS,
            "Arch": crate::archive::resolve::host_platform().1,
        },
        "ConfigFiles": config_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    let mut out = super::stdout();
    match a.format.as_deref() {
        Some("json") => {
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        }
        Some(f) => {
            let t = super::parse_template(f)?;
            writeln!(out, "{}", super::render_template(&t, &doc)?)?;
        }
        None => {
            writeln!(out, "version: {}", env!("CARGO_PKG_VERSION"))?;
            writeln!(out, "store:")?;
            writeln!(out, "  root: {}", store.root().display())?;
            writeln!(out, "  format version: {}", crate::index::STORE_FORMAT)?;
            writeln!(out, "  schema version: {}", store.index().schema_version()?)?;
            writeln!(out, "  images: {images}")?;
            writeln!(out, "  tags: {tags}")?;
            writeln!(out, "  blobs: {blobs} ({})", human_size(blob_bytes))?;
            writeln!(out, "  index: {}", human_size(db_bytes))?;
            writeln!(out, "host: {}/{}", std::env::consts::OS, crate::archive::resolve::host_platform().1)?;
            if config_files.is_empty() {
                writeln!(out, "config files: none")?;
            } else {
                writeln!(out, "config files:")?;
                for f in &config_files {
                    writeln!(out, "  {}", f.display())?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

#[derive(Args)]
pub struct VersionArgs {
    /// Output format: json, or a Go template ('{{.Client.Version}}')
    #[arg(short, long, value_parser = super::format_parser(&["json"], true))]
    format: Option<String>,
}

pub fn version(a: VersionArgs) -> Result<()> {
    let mut out = super::stdout();
    let (os, arch) = (std::env::consts::OS, crate::archive::resolve::host_platform().1);
    // `Client` as docker and podman name it, so that their templates
    // ('{{.Client.Version}}') work; img has no server.
    let client = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Os": os,
        "Arch": arch,
        "OsArch": format!("{os}/{arch}"),
        "StoreFormat": crate::index::STORE_FORMAT,
    });
    let doc = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "StoreFormat": crate::index::STORE_FORMAT,
        "OsArch": format!("{os}/{arch}"),
        "Client": client,
    });
    if a.format.as_deref() == Some("json") {
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else if let Some(f) = a.format.as_deref() {
        let t = super::parse_template(&f.replace("\\t", "\t").replace("\\n", "\n"))?;
        writeln!(out, "{}", super::render_template(&t, &doc)?)?;
    } else {
        writeln!(out, "Version:      {}", env!("CARGO_PKG_VERSION"))?;
        writeln!(out, "Store format: {}", crate::index::STORE_FORMAT)?;
        writeln!(out, "OS/Arch:      {}/{}", std::env::consts::OS, crate::archive::resolve::host_platform().1)?;
    }
    out.flush()?;
    Ok(())
}

#[derive(Args)]
pub struct FsckArgs {
    /// Remove what nothing references and images whose blobs are damaged
    #[arg(long)]
    repair: bool,
    /// Output format: json
    #[arg(long, value_parser = super::format_parser(&["json"], false))]
    format: Option<String>,
}

pub fn fsck(ctx: &Ctx, a: FsckArgs) -> Result<()> {
    let mut store = ctx.open_store()?;
    let r = ops_fsck::fsck(&mut store, a.repair, || eprintln!("waiting for other img processes to finish..."))?;
    let mut out = super::stdout();
    if a.format.as_deref() == Some("json") {
        serde_json::to_writer_pretty(
            &mut out,
            &json!({
                "Clean": r.is_clean(), "Problems": r.problems, "Notes": r.notes, "Repaired": r.repaired,
                "BlobsChecked": r.blobs_checked, "BytesChecked": r.bytes_checked, "ImagesChecked": r.images_checked,
            }),
        )?;
        writeln!(out)?;
    } else {
        for p in &r.problems {
            writeln!(out, "problem: {p}")?;
        }
        for p in &r.repaired {
            writeln!(out, "repaired: {p}")?;
        }
        for n in &r.notes {
            writeln!(out, "note: {n}")?;
        }
        writeln!(
            out,
            "checked {} images, {} blobs ({}): {}",
            r.images_checked,
            r.blobs_checked,
            human_size(r.bytes_checked),
            if r.is_clean() { "clean" } else { "PROBLEMS FOUND" }
        )?;
    }
    if !r.is_clean() {
        if !a.repair {
            eprintln!(
                "error: the store has problems; img fsck --repair removes what nothing references and damaged images"
            );
        }
        return Err(AlreadyReported("fsck").into());
    }
    out.flush()?;
    Ok(())
}

#[derive(Subcommand)]
pub enum SystemCommand {
    /// Show disk usage
    Df(DfArgs),
}

#[derive(Args)]
pub struct DfArgs {
    /// Show each image
    #[arg(short, long)]
    verbose: bool,
    /// Output format: table or json
    #[arg(long, value_parser = super::format_parser(&["table", "json"], false))]
    format: Option<String>,
}

pub fn system(ctx: &Ctx, c: SystemCommand) -> Result<()> {
    match c {
        SystemCommand::Df(a) => df(ctx, a),
    }
}

fn df(ctx: &Ctx, a: DfArgs) -> Result<()> {
    let store = ctx.open_store()?;
    let images = store.index().images()?;
    let uses = store.index().blob_use_counts()?;
    let total: u64 = uses.iter().map(|(_, s, _)| s).sum();
    let unused: u64 = uses.iter().filter(|(_, _, n)| *n == 0).map(|(_, s, _)| s).sum();
    let dangling: Vec<_> = images.iter().filter(|i| i.tags.is_empty()).collect();
    // Bytes that only dangling images use are reclaimable by prune too.
    let mut reclaim = unused;
    for (d, s, n) in &uses {
        if *n == 1
            && dangling
                .iter()
                .any(|i| store.index().image_blobs(&i.id).map(|b| b.iter().any(|(_, x)| x == d)).unwrap_or(false))
        {
            reclaim += s;
        }
    }
    let mut out = super::stdout();
    if a.format.as_deref() == Some("json") {
        serde_json::to_writer_pretty(
            &mut out,
            &json!([{ "Type": "Images", "Total": images.len(), "Active": images.len() - dangling.len(), "Size": total, "Reclaimable": reclaim }]),
        )?;
        writeln!(out)?;
        out.flush()?;
        return Ok(());
    }
    let pct = (reclaim * 100).checked_div(total).unwrap_or(0);
    let rows = vec![
        vec!["TYPE".into(), "TOTAL".into(), "ACTIVE".into(), "SIZE".into(), "RECLAIMABLE".into()],
        vec![
            "Images".into(),
            images.len().to_string(),
            (images.len() - dangling.len()).to_string(),
            human_size(total),
            format!("{} ({pct}%)", human_size(reclaim)),
        ],
    ];
    super::print_table(&mut out, &rows)?;
    if a.verbose {
        writeln!(out)?;
        let mut rows = vec![vec![
            "REPOSITORY".to_string(),
            "TAG".into(),
            "IMAGE ID".into(),
            "SIZE".into(),
            "SHARED SIZE".into(),
            "UNIQUE SIZE".into(),
        ]];
        for img in &images {
            let blobs = store.index().image_blobs(&img.id)?;
            let (mut shared, mut unique) = (0, 0);
            for (_, d) in &blobs {
                if let Some((_, s, n)) = uses.iter().find(|(x, _, _)| x == d) {
                    if *n > 1 {
                        shared += s
                    } else {
                        unique += s
                    }
                }
            }
            let (repo, tag) = img.tags.first().map(|t| crate::ops::split_name(t)).unwrap_or(("<none>", "<none>"));
            rows.push(vec![
                repo.into(),
                tag.into(),
                img.id.hex()[..12].into(),
                human_size(img.size),
                human_size(shared),
                human_size(unique),
            ]);
        }
        super::print_table(&mut out, &rows)?;
    }
    out.flush()?;
    Ok(())
}

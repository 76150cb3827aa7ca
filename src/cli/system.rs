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

pub fn info(ctx: &Ctx, a: InfoArgs) -> Result<()> {
    let store = ctx.open_store()?;
    // The registry configuration (registries.conf, isula-build's
    // registries.toml, iSulad's daemon.json) and the auth file, as read.
    let mut config_files = crate::registry::config::files_in_use();
    let auth = crate::registry::authfile::default_path();
    if auth.is_file() {
        config_files.push(auth);
    }
    let i = crate::ops::df::info(&store)?;
    let doc = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Store": {
            "Root": i.root.display().to_string(),
            "Index": i.index_path.display().to_string(),
            "FormatVersion": crate::store::index::STORE_FORMAT,
            "SchemaVersion": i.schema_version,
            "Images": i.images,
            "Tags": i.tags,
            "Blobs": i.blobs,
            "BlobBytes": i.blob_bytes,
            "IndexBytes": i.index_bytes,
            "IngestBytes": i.ingest_bytes,
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
            writeln!(out, "  root: {}", i.root.display())?;
            writeln!(out, "  format version: {}", crate::store::index::STORE_FORMAT)?;
            writeln!(out, "  schema version: {}", i.schema_version)?;
            writeln!(out, "  images: {}", i.images)?;
            writeln!(out, "  tags: {}", i.tags)?;
            writeln!(out, "  blobs: {} ({})", i.blobs, human_size(i.blob_bytes))?;
            writeln!(out, "  index: {}", human_size(i.index_bytes))?;
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
        "StoreFormat": crate::store::index::STORE_FORMAT,
    });
    let doc = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "StoreFormat": crate::store::index::STORE_FORMAT,
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
        writeln!(out, "Store format: {}", crate::store::index::STORE_FORMAT)?;
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
    /// Remove dangling images and unreferenced blobs, or with --max-size evict least recently used images
    Prune(SystemPruneArgs),
}

#[derive(Args)]
pub struct SystemPruneArgs {
    #[command(flatten)]
    prune: super::manage::PruneArgs,
    /// Evict least recently used images (never pinned, mounted or in use) until the store takes at most SIZE (like 500m or 2g)
    #[arg(long, value_name = "SIZE", conflicts_with = "all")]
    max_size: Option<String>,
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
        SystemCommand::Prune(a) => prune(ctx, a),
    }
}

fn prune(ctx: &Ctx, a: SystemPruneArgs) -> Result<()> {
    let Some(max) = a.max_size else { return super::manage::prune(ctx, a.prune) };
    let size = crate::store::config::parse_size(&max)?;
    if !a.prune.force
        && !super::manage::confirm_prune(&format!(
            "the least recently used images (not pinned, mounted or in use) until the store takes at most {}, and unreferenced blobs",
            human_size(size)
        ))?
    {
        return Ok(());
    }
    let mut store = ctx.open_store()?;
    let (ev, within) =
        crate::ops::evict::prune_to(&mut store, size, || eprintln!("waiting for other img processes to finish..."))?;
    super::manage::print_pruned(&mut super::stdout(), &ev.removed, ev.bytes)?;
    if !within {
        eprintln!(
            "the store still takes {}, over {}: the images left are pinned, mounted or in use (img unpin, img umount)",
            human_size(crate::ops::evict::usage(&store)),
            human_size(size)
        );
    }
    Ok(())
}

fn df(ctx: &Ctx, a: DfArgs) -> Result<()> {
    let store = ctx.open_store()?;
    let u = crate::ops::df::df(&store)?;
    let mut out = super::stdout();
    if a.format.as_deref() == Some("json") {
        serde_json::to_writer_pretty(
            &mut out,
            &json!([{ "Type": "Images", "Total": u.images, "Active": u.active, "Size": u.size, "Reclaimable": u.reclaimable }]),
        )?;
        writeln!(out)?;
        out.flush()?;
        return Ok(());
    }
    let pct = (u.reclaimable * 100).checked_div(u.size).unwrap_or(0);
    let rows = vec![
        vec!["TYPE".into(), "TOTAL".into(), "ACTIVE".into(), "SIZE".into(), "RECLAIMABLE".into()],
        vec![
            "Images".into(),
            u.images.to_string(),
            u.active.to_string(),
            human_size(u.size),
            format!("{} ({pct}%)", human_size(u.reclaimable)),
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
        for img in &u.per_image {
            let (repo, tag) = img.name.as_deref().map(crate::ops::split_name).unwrap_or(("<none>", "<none>"));
            rows.push(vec![
                repo.into(),
                tag.into(),
                img.id.hex()[..12].into(),
                human_size(img.size),
                human_size(img.shared),
                human_size(img.unique),
            ]);
        }
        super::print_table(&mut out, &rows)?;
    }
    out.flush()?;
    Ok(())
}

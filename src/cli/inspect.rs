use super::{parse_template, print_table, render_template, AlreadyReported, Ctx};
use crate::ops::{inspect as ops_inspect, resolve_image};
use crate::timefmt::{format_rfc3339, human_ago, human_size, now};
use anyhow::Result;
use clap::Args;
use std::io::Write;

#[derive(Args)]
pub struct InspectArgs {
    /// Format the output with a Go template ('{{.Id}}', '{{json .Config}}'), or json
    #[arg(short, long, value_parser = super::format_parser(&["json"], true))]
    format: Option<String>,
    /// What to inspect: image (img has images only; accepted for docker compatibility)
    #[arg(long = "type", value_name = "TYPE", value_parser = inspect_type)]
    kind: Option<String>,
    /// Accepted for docker compatibility: an image's Size is always shown
    #[arg(short, long)]
    size: bool,
    /// For docker://REF: print the manifest as the registry serves it
    #[arg(long)]
    raw: bool,
    /// For docker://REF: print the image's config
    #[arg(long, conflicts_with = "raw")]
    config: bool,
    /// For docker://REF: the platform to describe from a multi-platform index (OS/ARCH[/VARIANT])
    #[arg(long)]
    platform: Option<String>,
    #[command(flatten)]
    registry: super::registry::RegistryFlags,
    /// Images to inspect (names, IDs or ID prefixes), or docker://REF to read one from a registry without pulling it
    #[arg(required = true, value_name = "IMAGE")]
    names: Vec<String>,
}

/// `--type`: docker's object types; img has images only.
fn inspect_type(s: &str) -> std::result::Result<String, String> {
    match s {
        "image" => Ok(s.to_string()),
        "container" | "network" | "node" | "plugin" | "secret" | "service" | "volume" | "config" | "task" => {
            Err(format!("img handles images only, not {s}s: use --type image, or leave --type out"))
        }
        _ => Err(format!("unknown type {s:?}: img handles images only; use --type image")),
    }
}

fn inspect_remote(a: &InspectArgs) -> Result<()> {
    use crate::ops::remote::{self, InspectWhat, RemoteInspect};
    let [name] = a.names.as_slice() else {
        anyhow::bail!("inspect one docker://REF at a time");
    };
    let what = if a.raw {
        InspectWhat::Raw
    } else if a.config {
        InspectWhat::Config
    } else {
        InspectWhat::Summary
    };
    let res = remote::inspect(name, a.platform.as_deref(), what, &a.registry.options()?)?;
    let mut out = super::stdout();
    match res {
        RemoteInspect::Raw(bytes) => {
            // The bytes as served, ended by a newline as every other output is.
            out.write_all(&bytes)?;
            if !bytes.ends_with(b"\n") {
                writeln!(out)?;
            }
        }
        RemoteInspect::Config(v) | RemoteInspect::Summary(v) => match a.format.as_deref() {
            None | Some("json") => {
                serde_json::to_writer_pretty(&mut out, &v)?;
                writeln!(out)?;
            }
            Some(f) => writeln!(
                out,
                "{}",
                render_template(&parse_template(&f.replace("\\t", "\t").replace("\\n", "\n"))?, &v)?
            )?,
        },
    }
    out.flush()?;
    Ok(())
}

pub fn run(ctx: &Ctx, a: InspectArgs) -> Result<()> {
    // --type can only be image (checked while parsing); --size changes
    // nothing for images, whose Size is always there.
    let _ = (&a.kind, a.size);
    if a.names.iter().any(|n| n.starts_with("docker://")) {
        return inspect_remote(&a);
    }
    if a.raw || a.config {
        anyhow::bail!("--raw and --config are for images in a registry: img inspect --raw docker://REF");
    }
    let store = ctx.open_store()?;
    let template = match a.format.as_deref() {
        Some("json") | None => None,
        Some(f) => Some(parse_template(&f.replace("\\t", "\t").replace("\\n", "\n"))?),
    };
    let mut docs = Vec::new();
    let mut failed = false;
    for n in &a.names {
        match resolve_image(&store, n).and_then(|img| ops_inspect::inspect(&store, &img)) {
            Ok(d) if super::dialect::current() == super::dialect::Dialect::Isula => {
                docs.push(super::dialect::isula_inspect(&d))
            }
            Ok(d) => docs.push(d),
            Err(e) => {
                eprintln!("error: {}", super::chain(&e));
                failed = true;
            }
        }
    }
    let mut out = super::stdout();
    match template {
        None => {
            if !docs.is_empty() || !failed {
                let printed: Vec<serde_json::Value> = docs.iter().map(ops_inspect::as_printed).collect();
                serde_json::to_writer_pretty(&mut out, &printed)?;
                writeln!(out)?;
            }
        }
        Some(t) => {
            for d in &docs {
                writeln!(out, "{}", render_template(&t, d)?)?;
            }
        }
    }
    if failed {
        return Err(AlreadyReported("inspect").into());
    }
    out.flush()?;
    Ok(())
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Display sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    human: bool,
    /// Output format: table, json, or a Go template
    #[arg(long, value_parser = super::format_parser(&["table", "json"], true))]
    format: Option<String>,
    #[arg(value_name = "IMAGE")]
    name: String,
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

pub fn history(ctx: &Ctx, a: HistoryArgs) -> Result<()> {
    let store = ctx.open_store()?;
    let img = resolve_image(&store, &a.name)?;
    let entries = ops_inspect::history(&store, &img)?;
    let mut out = super::stdout();
    let now_s = now();
    let id_of = |e: &ops_inspect::HistoryEntry| match &e.id {
        Some(id) if a.no_trunc => format!("sha256:{id}"),
        Some(id) => id[..12].to_string(),
        None => "<missing>".to_string(),
    };
    if a.quiet {
        for e in &entries {
            writeln!(out, "{}", id_of(e))?;
        }
        out.flush()?;
        return Ok(());
    }
    let values: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "ID": id_of(e),
                "Created": e.created.unwrap_or(0),
                "CreatedAt": e.created.map(format_rfc3339).unwrap_or_default(),
                "CreatedSince": human_ago(e.created, now_s),
                "CreatedBy": e.created_by,
                "Size": e.size,
                "Comment": e.comment,
            })
        })
        .collect();
    match a.format.as_deref() {
        Some("json") => {
            serde_json::to_writer_pretty(&mut out, &values)?;
            writeln!(out)?;
        }
        Some(f) if f != "table" => {
            let t = parse_template(&f.replace("\\t", "\t").replace("\\n", "\n"))?;
            for v in &values {
                writeln!(out, "{}", render_template(&t, v)?)?;
            }
        }
        _ => {
            let mut rows =
                vec![["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"].iter().map(|s| s.to_string()).collect()];
            for e in &entries {
                let by = if a.no_trunc { e.created_by.clone() } else { truncate(&e.created_by, 45) };
                rows.push(vec![
                    id_of(e),
                    if a.human {
                        human_ago(e.created, now_s)
                    } else {
                        e.created.map(format_rfc3339).unwrap_or_default()
                    },
                    by,
                    if a.human { human_size(e.size) } else { e.size.to_string() },
                    e.comment.clone(),
                ]);
            }
            print_table(&mut out, &rows)?;
        }
    }
    out.flush()?;
    Ok(())
}

use super::{parse_template, print_table, render_template, Ctx};
use crate::ops::images::{self, ListOptions, Row};
use crate::timefmt::{format_rfc3339, human_ago, human_size, now};
use anyhow::Result;
use clap::Args;
use serde_json::json;
use std::io::Write;

#[derive(Args)]
pub struct ImagesArgs {
    /// Show only images whose name matches (wildcards allowed: 'app*')
    pattern: Option<String>,
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Filter output (dangling=true|false, reference=GLOB, before=IMAGE, since=IMAGE, label=K[=V])
    #[arg(short, long = "filter", value_name = "FILTER")]
    filter: Vec<String>,
    /// Output format: table, json, or a Go template
    #[arg(long, value_parser = super::format_parser(&["table", "json"], true))]
    format: Option<String>,
}

fn short_id(hex: &str, no_trunc: bool) -> String {
    if no_trunc {
        format!("sha256:{hex}")
    } else {
        hex[..12].to_string()
    }
}

fn row_value(r: &Row, no_trunc: bool, now_s: i64) -> serde_json::Value {
    let img = &r.image;
    json!({
        "ID": short_id(img.id.hex(), no_trunc),
        "Id": img.id.hex(),
        "Repository": r.repository.clone().unwrap_or_else(|| "<none>".into()),
        "Tag": r.tag.clone().unwrap_or_else(|| "<none>".into()),
        "Digest": img.manifest_digest.as_str(),
        "CreatedSince": human_ago(img.created, now_s),
        "CreatedAt": img.created.map(format_rfc3339).unwrap_or_default(),
        "Created": img.created.unwrap_or(0),
        "Size": human_size(img.size),
        "VirtualSize": human_size(img.size),
        "Labels": serde_json::from_str::<serde_json::Value>(&img.labels).unwrap_or(json!({})),
        "Partial": img.kind == crate::store::index::ImageKind::Partial,
        "LastUsed": format_rfc3339(img.last_used),
        "Pinned": img.pinned,
    })
}

pub fn run(ctx: &Ctx, a: ImagesArgs) -> Result<()> {
    let _ = a.all;
    let store = ctx.open_store()?;
    let rows = images::list(&store, &ListOptions { pattern: a.pattern.clone(), filters: a.filter.clone() })?;
    let mut out = super::stdout();
    let now_s = now();
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            if seen.insert(r.image.id.clone()) {
                writeln!(out, "{}", short_id(r.image.id.hex(), a.no_trunc))?;
            }
        }
        out.flush()?;
        return Ok(());
    }
    match a.format.as_deref() {
        Some("json") => {
            // One object per image, as podman prints.
            let mut seen = std::collections::HashSet::new();
            let mut list = Vec::new();
            for r in &rows {
                if !seen.insert(r.image.id.clone()) {
                    continue;
                }
                let img = &r.image;
                let repo_digests = images::repo_digests(img);
                list.push(json!({
                    "Id": img.id.hex(),
                    "ParentId": "",
                    "RepoTags": img.tags,
                    "RepoDigests": repo_digests,
                    "Names": img.tags,
                    "Digest": img.manifest_digest.as_str(),
                    "Created": img.created.unwrap_or(0),
                    "CreatedAt": img.created.map(format_rfc3339).unwrap_or_default(),
                    "Size": img.size,
                    "VirtualSize": img.size,
                    "Labels": serde_json::from_str::<serde_json::Value>(&img.labels).unwrap_or(json!({})),
                    "Dangling": img.tags.is_empty(),
                    "Containers": 0,
                    "LastUsed": format_rfc3339(img.last_used),
                    "Pinned": img.pinned,
                }));
            }
            serde_json::to_writer_pretty(&mut out, &list)?;
            writeln!(out)?;
        }
        Some(f) if f != "table" => {
            let (header, body) = match f.strip_prefix("table ") {
                Some(b) => (true, b),
                None => (false, f),
            };
            let body = body.replace("\\t", "\t").replace("\\n", "\n");
            let t = parse_template(&body)?;
            let mut lines: Vec<Vec<String>> = Vec::new();
            if header {
                let titles = json!({
                    "ID": "IMAGE ID", "Id": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
                    "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Created": "CREATED", "Size": "SIZE",
                    "VirtualSize": "SIZE", "Labels": "LABELS",
                });
                lines.push(render_template(&t, &titles)?.split('\t').map(str::to_string).collect());
            }
            for r in &rows {
                let s = render_template(&t, &row_value(r, a.no_trunc, now_s))?;
                if header {
                    lines.push(s.split('\t').map(str::to_string).collect());
                } else {
                    writeln!(out, "{s}")?;
                }
            }
            if header {
                print_table(&mut out, &lines)?;
            }
        }
        _ if super::dialect::print_images(&mut out, &rows)? => {}
        _ => {
            let mut table = Vec::new();
            let mut head = vec!["REPOSITORY", "TAG"];
            if a.digests {
                head.push("DIGEST");
            }
            head.extend(["IMAGE ID", "CREATED", "SIZE"]);
            table.push(head.iter().map(|s| s.to_string()).collect());
            for r in &rows {
                let img = &r.image;
                let mut line = vec![
                    r.repository.clone().unwrap_or_else(|| "<none>".into()),
                    r.tag.clone().unwrap_or_else(|| "<none>".into()),
                ];
                if a.digests {
                    line.push(img.manifest_digest.to_string());
                }
                line.push(short_id(img.id.hex(), a.no_trunc));
                line.push(human_ago(img.created, now_s));
                // A lazily pulled image: some layers are still in the registry.
                line.push(if img.kind == crate::store::index::ImageKind::Partial {
                    format!("{} (partial)", human_size(img.size))
                } else {
                    human_size(img.size)
                });
                table.push(line);
            }
            print_table(&mut out, &table)?;
        }
    }
    out.flush()?;
    Ok(())
}

use super::dialect::Done;
use super::Ctx;
use crate::archive::source::Input;
use crate::ops::{import, load, save};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
pub enum SaveFormat {
    #[value(name = "docker-archive")]
    DockerArchive,
    #[value(name = "oci-archive")]
    OciArchive,
    #[value(name = "oci-dir")]
    OciDir,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to this file (or directory for oci-dir) instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Archive format
    #[arg(long, value_enum, default_value = "docker-archive")]
    format: SaveFormat,
    /// Images to save (names keep their names in the archive; IDs save the image unnamed)
    #[arg(required = true, value_name = "IMAGE")]
    names: Vec<String>,
}

pub fn save(ctx: &Ctx, a: SaveArgs) -> Result<()> {
    let out = match &a.output {
        Some(p) if p.as_os_str() != "-" => save::Output::File(p.clone()),
        _ => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal; use -o FILE or redirect standard output");
            }
            save::Output::Stdout
        }
    };
    let format = match a.format {
        SaveFormat::DockerArchive => save::Format::DockerArchive,
        SaveFormat::OciArchive => save::Format::OciArchive,
        SaveFormat::OciDir => save::Format::OciDir,
    };
    let store = ctx.open_store()?;
    save::save(&store, &a.names, format, &out)?;
    if let save::Output::File(_) = &out {
        super::dialect::print_done(&mut std::io::stdout(), &Done::Saved(&a.names))?;
    }
    Ok(())
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LoadType {
    /// docker-archive, oci-archive or OCI layout (detected)
    Auto,
    /// An iSulad embedded image manifest
    Embedded,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from this file or directory instead of standard input
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// The kind of input
    #[arg(short = 't', long = "type", value_enum, default_value = "auto")]
    kind: LoadType,
    /// With --type embedded: copy the layer files into the store
    #[arg(long)]
    copy: bool,
    /// Print only the image IDs
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    trust: super::trust::TrustFlags,
}

pub fn load(ctx: &Ctx, a: LoadArgs) -> Result<()> {
    let mut store = ctx.open_store()?;
    let loaded = match a.kind {
        LoadType::Embedded => {
            let Some(p) = &a.input else { bail!("--type embedded needs -i FILE.manifest") };
            vec![load::load_embedded(&mut store, p, a.copy)?]
        }
        LoadType::Auto => {
            if let Some(p) = &a.input {
                if load::is_embedded_manifest(p) {
                    bail!("{} is an iSulad embedded image manifest; load it with --type embedded", p.display());
                }
            }
            let input = match &a.input {
                Some(p) if p.as_os_str() != "-" => Input::Path(p.clone()),
                _ => {
                    if std::io::stdin().is_terminal() {
                        bail!("no input: use -i FILE or pipe an archive to standard input");
                    }
                    Input::Stdin
                }
            };
            load::load(&mut store, &input, &a.trust.options())?
        }
    };
    let mut out = super::stdout();
    let ids = loaded.iter().map(|l| l.id.hex().to_string()).collect();
    if super::dialect::print_done(&mut out, &Done::Loaded { input: a.input.as_deref(), ids })? {
        out.flush()?;
        return Ok(());
    }
    for l in &loaded {
        if a.quiet {
            writeln!(out, "{}", l.id)?;
        } else if l.names.is_empty() {
            writeln!(out, "Loaded image ID: {}", l.id)?;
        } else {
            for n in &l.names {
                writeln!(out, "Loaded image: {n}")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

#[derive(Args)]
pub struct ImportArgs {
    /// A root filesystem tarball (.tar, .tar.gz, .tar.xz, .tar.zst), or - for standard input
    #[arg(value_name = "FILE")]
    file: String,
    /// Name for the new image
    #[arg(value_name = "REFERENCE")]
    reference: Option<String>,
    /// Apply a Dockerfile instruction to the config (CMD, ENV, LABEL, ...)
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    change: Vec<String>,
    /// Commit message recorded in the history
    #[arg(short, long)]
    message: Option<String>,
}

pub fn import(ctx: &Ctx, a: ImportArgs) -> Result<()> {
    let mut store = ctx.open_store()?;
    let file = if a.file == "-" { None } else { Some(PathBuf::from(&a.file)) };
    let id = import::import(
        &mut store,
        &import::ImportOptions { file, reference: a.reference, changes: a.change, message: a.message },
    )?;
    let mut out = std::io::stdout().lock();
    if !super::dialect::print_done(&mut out, &Done::Imported(id.hex().to_string()))? {
        writeln!(out, "{id}")?;
    }
    Ok(())
}

#[derive(Args)]
pub struct ExportArgs {
    /// Write to this file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[arg(value_name = "IMAGE")]
    name: String,
}

pub fn export(ctx: &Ctx, a: ExportArgs) -> Result<()> {
    let out = match &a.output {
        // `-o -` is standard output, as for tar and docker.
        Some(p) if p.as_os_str() != "-" => save::Output::File(p.clone()),
        _ => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write a tarball to a terminal; use -o FILE or redirect standard output");
            }
            save::Output::Stdout
        }
    };
    let store = ctx.open_store()?;
    save::export(&store, &a.name, &out)
}

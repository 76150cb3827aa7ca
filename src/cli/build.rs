//! `img build` and its sandbox helper.

use super::registry::RegistryFlags;
use super::Ctx;
use crate::ops::build::{self, BuildOptions};
use crate::ops::build::{deliver, Output};
use crate::ops::{parse_target_name, save};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct BuildArgs {
    #[command(flatten)]
    trust: super::trust::TrustFlags,
    #[command(flatten)]
    sign: super::trust::SignFlags,
    /// The Dockerfile [default: CONTEXT/Dockerfile]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Name the image (repeatable)
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    tags: Vec<String>,
    /// Set a build argument (KEY=VALUE; KEY alone takes the value from the environment)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    build_args: Vec<String>,
    /// Reproducible build: fixed times in layers, config and history (time 0, or
    /// --build-static='build-time=YYYY-MM-DD HH:MM:SS')
    #[arg(long, value_name = "OPTIONS", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    build_static: Option<String>,
    /// Write the image ID to FILE
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Where the image goes: img:NAME (the store, default), docker-archive:PATH[:NAME],
    /// oci-archive:PATH[:NAME], docker://REGISTRY/REPO:TAG, docker-daemon:NAME, isulad:NAME
    #[arg(short = 'o', long = "output", value_name = "OUTPUT")]
    output: Option<String>,
    /// Base images must be for OS/ARCH[/VARIANT]
    #[arg(long)]
    platform: Option<String>,
    /// Pass the host's proxy variables (http_proxy and the like) to RUN
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    proxy: bool,
    /// Give RUN this capability besides docker's default set (repeatable; ALL for every one)
    #[arg(long = "cap-add", value_name = "CAP")]
    cap_add: Vec<String>,
    /// Network for RUN: host or none
    #[arg(long, default_value = "host", value_name = "MODE")]
    network: String,
    /// Build without the layer cache
    #[arg(long)]
    no_cache: bool,
    /// One layer per stage for all its changes (the cache is not used)
    #[arg(long)]
    squash: bool,
    /// Print only the image ID (and the output of a RUN that fails)
    #[arg(short, long)]
    quiet: bool,
    /// Build up to this stage (name or number)
    #[arg(long)]
    target: Option<String>,
    /// Image format: oci or docker
    #[arg(long, default_value = "oci", value_parser = super::format_parser(&["oci", "docker"], false))]
    format: String,
    /// The build context: a directory (the current one by default, as isula-build takes it)
    #[arg(value_name = "CONTEXT", default_value = ".")]
    context: PathBuf,
    #[command(flatten)]
    registry: RegistryFlags,
}

fn parse_output(o: &str) -> Result<Output> {
    let (kind, rest) =
        o.split_once(':').with_context(|| format!("-o {o}: write TYPE:DEST, as img:NAME or docker-archive:PATH"))?;
    let archive = |f: save::Format| -> Result<Output> {
        if rest.is_empty() {
            bail!("-o {o}: give the archive's path");
        }
        // PATH[:NAME]: the name is what follows the last colon, if it looks like one.
        match rest.split_once(':') {
            Some((p, n)) if !n.is_empty() => Ok(Output::Archive(f, p.into(), Some(n.into()))),
            _ => Ok(Output::Archive(f, rest.into(), None)),
        }
    };
    match kind {
        "img" => Ok(Output::Store((!rest.is_empty()).then(|| rest.to_string()))),
        "docker-archive" => archive(save::Format::DockerArchive),
        "oci-archive" => archive(save::Format::OciArchive),
        "docker" => {
            let r = rest.strip_prefix("//").with_context(|| format!("-o {o}: write docker://REGISTRY/REPO:TAG"))?;
            Ok(Output::Registry(r.to_string()))
        }
        "docker-daemon" => Ok(Output::Load("docker", rest.to_string())),
        "isulad" => Ok(Output::Load("isula", rest.to_string())),
        _ => bail!(
            "-o {o}: unknown output type {kind}; use img, docker-archive, oci-archive, docker, docker-daemon or isulad"
        ),
    }
}

pub fn build(ctx: &Ctx, a: BuildArgs) -> Result<()> {
    let output = a.output.as_deref().map(parse_output).transpose()?.unwrap_or(Output::Store(None));
    // Only -t and -o img:NAME name images in the store; another output's
    // name is the name in that output alone (isula-build's meaning; found:
    // -o docker-archive:FILE:busybox:latest retagged the base image).
    let mut names = a.tags.clone();
    if let Output::Store(Some(n)) = &output {
        names.push(n.clone());
    }
    let output_name = match &output {
        Output::Archive(_, _, Some(n)) | Output::Load(_, n) => {
            if n.is_empty() {
                bail!("-o {}: give the image a name", a.output.as_deref().unwrap_or(""));
            }
            Some(parse_target_name(n)?.name)
        }
        _ => None,
    };
    let tags = names.iter().map(|n| parse_target_name(n)).collect::<Result<Vec<_>>>()?;
    let mut build_args = Vec::new();
    for kv in &a.build_args {
        match kv.split_once('=') {
            Some((k, v)) => build_args.push((k.to_string(), v.to_string())),
            None => {
                if let Ok(v) = std::env::var(kv) {
                    build_args.push((kv.clone(), v));
                }
            }
        }
    }
    let host_network = match a.network.as_str() {
        "host" | "default" => true,
        "none" => false,
        n => bail!("--network {n}: use host or none"),
    };
    let docker_format = match a.format.as_str() {
        "oci" => false,
        "docker" => true,
        f => bail!("--format {f}: use oci or docker"),
    };
    let client = a.registry.options()?;
    build::run::capabilities(&a.cap_add)?;
    // The namespaces come first, while this process has one thread; the
    // store's place was decided before (it depends on who the user is).
    let rootless = build::userns::enter(ctx.kernel())?;
    let opts = BuildOptions {
        context: a.context.clone(),
        dockerfile: a.file.clone(),
        build_args,
        build_static: a.build_static.as_deref().map(build::parse_build_static).transpose()?,
        host_network,
        proxy: a.proxy,
        platform: a.platform.clone(),
        docker_format,
        target: a.target.clone(),
        quiet: a.quiet,
        rootless,
        no_cache: a.no_cache,
        squash: a.squash,
        cap_add: a.cap_add.clone(),
        trust: a.trust.options(),
        client: a.registry.options()?,
    };
    let mut store = ctx.open_store()?;
    let quiet = a.quiet;
    let log = move |m: &str| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    let id = build::build_and_store(ctx.kernel(), &mut store, &opts, &tags, &log)?;
    if let Some(f) = &a.iidfile {
        std::fs::write(f, id.as_str()).with_context(|| format!("writing the image ID to {}", f.display()))?;
    }
    let progress = super::progress::Reporter::new(quiet);
    deliver(&store, &id, &output, output_name.as_deref(), client, &a.sign.options(), &a.trust.options(), &progress)?;
    let mut out = super::stdout();
    if !super::dialect::print_done(&mut out, &super::dialect::Done::Built(id.hex().to_string()))? {
        if quiet {
            writeln!(out, "{}", id.as_str())?;
        } else {
            for n in &names {
                eprintln!("Tagged {n}");
            }
            writeln!(out, "{}", id.hex())?;
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct BuildRunArgs {
    /// Be the step's first process
    #[arg(long)]
    init: bool,
    plan: PathBuf,
}

/// The sandbox of one RUN step (started by img build).
pub fn build_run(ctx: &Ctx, a: BuildRunArgs) -> Result<()> {
    let k = ctx.kernel();
    let code = if a.init { build::run::init(k, &a.plan)? } else { build::run::helper(k, &a.plan)? };
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse_as_isula_build_writes_them() {
        assert_eq!(parse_output("img:app:1").unwrap(), Output::Store(Some("app:1".into())));
        assert_eq!(
            parse_output("docker-archive:/tmp/a.tar:app:1").unwrap(),
            Output::Archive(save::Format::DockerArchive, "/tmp/a.tar".into(), Some("app:1".into()))
        );
        assert_eq!(
            parse_output("oci-archive:/tmp/a.tar").unwrap(),
            Output::Archive(save::Format::OciArchive, "/tmp/a.tar".into(), None)
        );
        assert_eq!(parse_output("docker://127.0.0.1:5000/a:1").unwrap(), Output::Registry("127.0.0.1:5000/a:1".into()));
        assert_eq!(parse_output("isulad:app:1").unwrap(), Output::Load("isula", "app:1".into()));
        assert!(parse_output("tar:/x").unwrap_err().to_string().contains("unknown output type"));
        assert!(parse_output("nothing").is_err());
    }
}

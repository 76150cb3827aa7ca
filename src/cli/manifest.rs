//! `img manifest`: manifest lists.

use super::registry::RegistryFlags;
use super::Ctx;
use crate::ops::manifest::{self, Annotation};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::io::Write;

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Make a manifest list of images in the store
    Create {
        /// Replace a list of the same name
        #[arg(long)]
        amend: bool,
        #[command(flatten)]
        registry: RegistryFlags,
        list: String,
        /// Images of the store, or in a registry
        #[arg(value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Add an image to a manifest list
    Add {
        #[command(flatten)]
        registry: RegistryFlags,
        list: String,
        image: String,
    },
    /// Set the platform of an image in a manifest list
    Annotate(AnnotateArgs),
    /// Show a manifest list
    Inspect { list: String },
    /// Remove an image from a manifest list, or the list itself
    Rm {
        list: String,
        /// The image to take out (the whole list when omitted)
        image: Option<String>,
    },
    /// Push a manifest list (and with --all its images) to a registry
    Push(PushArgs),
}

#[derive(Args)]
pub struct AnnotateArgs {
    /// The architecture (amd64, arm64, ...)
    #[arg(long)]
    arch: Option<String>,
    /// The operating system
    #[arg(long)]
    os: Option<String>,
    /// Required OS features (repeatable)
    #[arg(long = "os-features", value_delimiter = ',')]
    os_features: Vec<String>,
    /// The architecture variant (v7, v8, ...)
    #[arg(long)]
    variant: Option<String>,
    #[command(flatten)]
    registry: RegistryFlags,
    list: String,
    /// The image (name, ID or manifest digest)
    image: String,
}

#[derive(Args)]
pub struct PushArgs {
    /// Push the list's images too (the default, as podman 4's; --all=false pushes the list alone)
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    all: bool,
    /// Print nothing but errors
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    registry: RegistryFlags,
    list: String,
    /// REGISTRY/REPO[:TAG]
    dest: String,
}

pub fn run(ctx: &Ctx, cmd: ManifestCommand) -> Result<()> {
    let mut out = super::stdout();
    match cmd {
        ManifestCommand::Create { amend, registry, list, images } => {
            let mut store = ctx.open_store()?;
            let body = manifest::create(&mut store, &list, &images, amend, &registry.options()?)?;
            writeln!(out, "{}", crate::digest::Digest::of_bytes(&body).as_str())?;
        }
        ManifestCommand::Add { registry, list, image } => {
            let mut store = ctx.open_store()?;
            let body = manifest::add(&mut store, &list, &image, &registry.options()?)?;
            writeln!(out, "{}", crate::digest::Digest::of_bytes(&body).as_str())?;
        }
        ManifestCommand::Annotate(a) => {
            let mut store = ctx.open_store()?;
            let ann = Annotation { arch: a.arch, os: a.os, os_features: a.os_features, variant: a.variant };
            let body = manifest::annotate(&mut store, &a.list, &a.image, &ann, &a.registry.options()?)?;
            writeln!(out, "{}", crate::digest::Digest::of_bytes(&body).as_str())?;
        }
        ManifestCommand::Inspect { list } => {
            let store = ctx.open_store()?;
            out.write_all(&manifest::inspect(&store, &list)?)?;
            writeln!(out)?;
        }
        ManifestCommand::Rm { list, image } => {
            let mut store = ctx.open_store()?;
            manifest::remove(&mut store, &list, image.as_deref())?;
        }
        ManifestCommand::Push(a) => {
            let store = ctx.open_store()?;
            let progress = super::progress::Reporter::new(a.quiet);
            let d = manifest::push(&store, &a.list, &a.dest, a.all, &a.registry.options()?, &progress)?;
            writeln!(out, "{}", d.as_str())?;
        }
    }
    Ok(())
}

//! `cargo xtask lock [IMAGE...]`: resolve each image's Debian packages (`[rootfs] packages` of its image.toml) to the
//! newest version in trixie, trixie-updates and trixie-security, write `images/<name>/packages.lock`, and say what
//! changed. Run it for a security update or after changing a package list; the build installs exactly the lock.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use crate::context::Context;
use crate::debian::{self, Lock, Mirrors, DEFAULT_ARCHITECTURE};
use crate::images::Image;

#[derive(clap::Args)]
pub struct LockArgs {
    /// Images to lock (default: every image whose image.toml lists `[rootfs] packages`).
    pub images: Vec<String>,
    /// Debian mirror (default: the host's apt sources or XTASK_DEBIAN_MIRROR, else http://deb.debian.org/debian).
    #[arg(long)]
    pub mirror: Option<String>,
    /// Debian security mirror (default: XTASK_DEBIAN_SECURITY_MIRROR, else http://deb.debian.org/debian-security).
    #[arg(long)]
    pub security_mirror: Option<String>,
    /// Architecture to resolve for, repeated for more (default: those of the existing locks, else amd64).
    #[arg(long = "architecture", value_name = "ARCH")]
    pub architectures: Vec<String>,
}

pub fn run(ctx: &Context, args: &LockArgs) -> Result<()> {
    let images = chosen(ctx, &args.images)?;
    if images.is_empty() {
        bail!("no image lists `[rootfs] packages` in its image.toml: nothing to lock");
    }
    let mut plans = Vec::new();
    for image in images {
        let old = read_old(image);
        let architectures = match (&args.architectures[..], &old) {
            ([], Some(old)) => old.architectures.clone(),
            ([], None) => vec![DEFAULT_ARCHITECTURE.to_owned()],
            (given, _) => given.to_vec(),
        };
        plans.push((image, old, architectures));
    }
    let mut architectures: Vec<String> = plans.iter().flat_map(|(_, _, archs)| archs.iter().cloned()).collect();
    architectures.sort();
    architectures.dedup();
    let wanted: HashSet<&str> =
        plans.iter().flat_map(|(image, _, _)| &image.settings.rootfs.packages).map(String::as_str).collect();

    let mirrors = Mirrors::for_host(args.mirror.as_deref(), args.security_mirror.as_deref());
    let started = Instant::now();
    let archive = debian::read_archive(&ctx.sh, &mirrors, &architectures, &wanted).with_context(|| {
        format!("lock: reading the Debian archive from {} and {}", mirrors.debian, mirrors.security)
    })?;
    let dates: Vec<String> =
        archive.suites.iter().map(|state| format!("{} of {}", state.suite, state.date.strftime("%F %T UTC"))).collect();
    eprintln!(
        "xtask: read {} for {} in {:.1}s",
        dates.join(", "),
        architectures.join(", "),
        started.elapsed().as_secs_f64()
    );

    for (image, old, image_architectures) in plans {
        let name = &image.name;
        let lock = archive
            .lock(&image.settings.rootfs.packages, &image_architectures)
            .with_context(|| format!("image {name}: lock"))?;
        let changes = lock.changes_from(old.as_ref());
        if changes.is_empty() && old.as_ref().is_some_and(|old| old.architectures == lock.architectures) {
            println!("{name}: unchanged ({} packages)", lock.packages.len());
            continue;
        }
        let path = debian::lock_path(image);
        std::fs::write(&path, lock.render(name)?)
            .with_context(|| format!("image {name}: writing {}", path.display()))?;
        for change in &changes {
            println!("{name}: {change}");
        }
        if changes.is_empty() {
            println!("{name}: packages unchanged, architectures now {}", lock.architectures.join(", "));
        }
    }
    Ok(())
}

/// The images named (each must list packages), or every image that lists packages.
fn chosen<'a>(ctx: &'a Context, names: &[String]) -> Result<Vec<&'a Image>> {
    if names.is_empty() {
        return Ok(ctx.images().iter().filter(|image| !image.settings.rootfs.packages.is_empty()).collect());
    }
    let images = ctx.select(names)?;
    if let Some(image) = images.iter().find(|image| image.settings.rootfs.packages.is_empty()) {
        bail!("image {}: its image.toml lists no `[rootfs] packages`: nothing to lock", image.name);
    }
    Ok(images)
}

/// The image's current lock, if it has a readable one (an unreadable one is replaced, with a word about it).
fn read_old(image: &Image) -> Option<Lock> {
    let text = std::fs::read_to_string(debian::lock_path(image)).ok()?;
    Lock::parse(&text)
        .inspect_err(|error| {
            eprintln!("xtask: image {}: replacing an unreadable packages.lock ({error:#})", image.name)
        })
        .ok()
}

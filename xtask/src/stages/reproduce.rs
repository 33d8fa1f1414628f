//! `cargo xtask reproduce [IMAGE...]`: proof that the same commit gives the same image digests.
//!
//! The images are built here as usual, then again in a fresh clone of the commit, under another time zone and a
//! umask of 077, with every file's time changed and without the build cache; the manifest digests must match. When
//! they do not, the first differing layer and its first differing files are named. `--release` compares a released
//! image (by tag or digest) with this commit's build instead.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _, Result};
use comfy_table::{presets, Table};
use xshell::cmd;

use crate::built::Built;
use crate::context::Context;
use crate::image_diff::{first_difference, ImageBlobs};
use crate::registry::Reference;

#[derive(clap::Args)]
pub struct ReproduceArgs {
    /// Images to reproduce (default: every deliverable).
    pub images: Vec<String>,
    /// Compare this released image (HOST/NAMESPACE/IMAGE:TAG or @sha256:DIGEST) with the build of this commit instead
    /// of building again; repeatable. The image is the last path segment.
    #[arg(long, value_name = "REFERENCE")]
    pub release: Vec<String>,
}

/// The time zone and umask of the second build: as far from the usual ones as they get.
const OTHER_TIME_ZONE: &str = "Pacific/Chatham";
const OTHER_UMASK: &str = "077";

pub fn run(ctx: &Context, args: &ReproduceArgs) -> Result<()> {
    if !args.release.is_empty() {
        return compare_releases(ctx, &args.release);
    }
    let revision = ctx.revision()?;
    if revision.dirty {
        bail!(
            "the working tree has uncommitted changes: reproduce compares builds of a commit; commit or stash them \
             first (`git status` lists them)"
        );
    }
    let images = ctx.select(&args.images)?;
    let names: Vec<String> = images.iter().map(|image| image.name.clone()).collect();
    let ours = super::build::build_all(ctx, &images)?;

    let started = Instant::now();
    let clone = fresh_clone(ctx)?;
    eprintln!(
        "xtask: building {} again in {} (TZ={OTHER_TIME_ZONE}, umask {OTHER_UMASK}, other file times, no build cache)",
        names.join(", "),
        clone.display()
    );
    build_in_clone(ctx, &clone, &names)?;
    let clone_ctx = Context::at(clone.clone())?;
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header(["IMAGE", "HERE", "FRESH CLONE", "SAME"]);
    let mut differences = Vec::new();
    for built in &ours {
        let theirs: Built = serde_json::from_str(&std::fs::read_to_string(clone_ctx.out.build_record(&built.image))?)
            .with_context(|| format!("reading the clone's build record of {}", built.image))?;
        let same = theirs.layout.digest == built.layout.digest;
        table.add_row([
            built.image.as_str(),
            &built.layout.digest,
            &theirs.layout.digest,
            if same { "yes" } else { "NO" },
        ]);
        if !same {
            let difference = first_difference(
                &ImageBlobs::from_layout(&built.layout.dir)?,
                &ImageBlobs::from_layout(&theirs.layout.dir)?,
            )?;
            differences.push(format!(
                "{}: {}",
                built.image,
                difference.map_or("none found".to_owned(), |d| d.to_string())
            ));
        }
    }
    println!("{table}");
    eprintln!("xtask: reproduced in {:.0?}", started.elapsed());
    if !differences.is_empty() {
        bail!("the images differ:\n{}", differences.join("\n"));
    }
    println!("reproduce: the same commit gave the same digests");
    Ok(())
}

/// A clone of HEAD under `out/reproduce/`, every file's time moved to a day in 2001.
fn fresh_clone(ctx: &Context) -> Result<PathBuf> {
    let folder = ctx.out.dir().join("reproduce");
    let clone = folder.join("checkout");
    if clone.exists() {
        std::fs::remove_dir_all(&clone).with_context(|| format!("removing {}", clone.display()))?;
    }
    std::fs::create_dir_all(&folder)?;
    let (sh, root) = (&ctx.sh, &ctx.root);
    cmd!(sh, "git clone --quiet --no-hardlinks {root} {clone}").run().context("cloning the commit")?;
    touch_all(&clone, SystemTime::UNIX_EPOCH + Duration::from_secs(981_173_106))?;
    Ok(clone)
}

fn touch_all(dir: &Path, time: SystemTime) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && !path.ends_with(".git") {
            touch_all(&path, time)?;
        } else if path.is_file() {
            std::fs::File::options().write(true).open(&path)?.set_modified(time)?;
        }
    }
    Ok(())
}

/// `cargo xtask build` in the clone, as another user on another machine would run it: another time zone and umask,
/// no build cache, its own image tags and cargo target folder; the package cache is shared (every file in it is
/// checked against the lock's hash).
fn build_in_clone(ctx: &Context, clone: &Path, images: &[String]) -> Result<()> {
    let sh = &ctx.sh;
    let _dir = sh.push_dir(clone);
    let target = ctx.out.dir().join("reproduce").join("target");
    let package_cache = ctx.package_cache();
    let script = format!("umask {OTHER_UMASK} && exec cargo xtask build \"$@\"");
    cmd!(sh, "sh -c {script} build {images...}")
        .env("TZ", OTHER_TIME_ZONE)
        .env("XTASK_NO_CACHE", "1")
        .env("XTASK_REPOSITORY", "xtask-reproduce")
        .env("XTASK_PACKAGE_CACHE", package_cache)
        .env("CARGO_TARGET_DIR", target)
        .run()
        .context("the build in the fresh clone failed")
}

/// Each released image against the build of this commit.
fn compare_releases(ctx: &Context, releases: &[String]) -> Result<()> {
    let mut differences = Vec::new();
    for release in releases {
        let reference = Reference::parse(release)?;
        let image = reference.repository.rsplit('/').next().unwrap_or_default();
        ctx.image(image).with_context(|| format!("{release}: its last path segment names no image of this project"))?;
        let ours = match Built::current(ctx, image) {
            Ok(built) => built,
            Err(_) => {
                super::build::build_all(ctx, &[ctx.image(image)?])?;
                Built::current(ctx, image)?
            }
        };
        let released = crate::registry::fetch_image(&reference)?;
        let same = released.manifest_digest == ours.layout.digest;
        println!(
            "{release}: released {}, this commit builds {}: {}",
            released.manifest_digest,
            ours.layout.digest,
            if same { "the same" } else { "DIFFERENT" }
        );
        if !same {
            let difference = first_difference(&ImageBlobs::from_layout(&ours.layout.dir)?, &released)?;
            differences.push(format!("{release}: {}", difference.map_or("none found".to_owned(), |d| d.to_string())));
        }
    }
    if !differences.is_empty() {
        bail!("the releases differ from this commit's build:\n{}", differences.join("\n"));
    }
    Ok(())
}

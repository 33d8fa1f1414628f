//! `cargo xtask reproduce [IMAGE...]`: proof that the same commit gives the same image digests.
//!
//! The images are built here as usual, then again in a fresh clone of the commit, under another time zone and a
//! umask of 077, with every file's time changed and without the build cache; the manifest digests must match. When
//! they do not, the first differing layer and its first differing files are named. With more than one platform, the
//! image index digests must match too. `--release` compares a released image or index (by tag or digest) with this
//! commit's build instead.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _, Result};
use comfy_table::{presets, Table};
use xshell::cmd;

use crate::built::Built;
use crate::context::Context;
use crate::files::remove_dir_if_present;
use crate::image_diff::{first_difference, ImageBlobs};
use crate::platform::{Platform, PlatformArgs};
use crate::registry::Reference;

#[derive(clap::Args)]
pub struct ReproduceArgs {
    /// Images to reproduce (default: every deliverable).
    pub images: Vec<String>,
    /// Compare this released image (HOST/NAMESPACE/IMAGE:TAG or @sha256:DIGEST) with the build of this commit instead
    /// of building again; repeatable. The image is the last path segment.
    #[arg(long, value_name = "REFERENCE")]
    pub release: Vec<String>,
    #[command(flatten)]
    pub platforms: PlatformArgs,
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
    let platforms = args.platforms.chosen();
    let ours = super::build::build_all(ctx, &images, &platforms)?;

    let started = Instant::now();
    let clone = fresh_clone(ctx)?;
    eprintln!(
        "xtask: building {} again in {} (TZ={OTHER_TIME_ZONE}, umask {OTHER_UMASK}, other file times, no build cache)",
        names.join(", "),
        clone.display()
    );
    let platform_list: Vec<String> = platforms.iter().map(|platform| platform.docker()).collect();
    build_in_clone(ctx, &clone, &names, &platform_list.join(","))?;
    let clone_ctx = Context::at(clone.clone())?;
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header(["IMAGE", "HERE", "FRESH CLONE", "SAME"]);
    let mut differences = Vec::new();
    let mut row = |name: String, here: &str, there: &str| {
        let same = here == there;
        table.add_row([name.as_str(), here, there, if same { "yes" } else { "NO" }]);
        same
    };
    if platforms.len() > 1 {
        for image in &images {
            let index = |ctx: &Context| crate::oci::layout_top_digest(&ctx.out.index_layout(&image.name));
            if !row(format!("{} (index)", image.name), &index(ctx)?, &index(&clone_ctx)?) {
                differences.push(format!("{}: the image indexes differ", image.name));
            }
        }
    }
    for built in &ours {
        let record = clone_ctx.out.build_record(&built.image, built.platform);
        let theirs: Built = serde_json::from_str(&std::fs::read_to_string(record)?)
            .with_context(|| format!("reading the clone's build record of {}", built.name()))?;
        let same = row(built.name(), &built.layout.digest, &theirs.layout.digest);
        if !same {
            let difference = first_difference(
                &ImageBlobs::from_layout(&built.layout.dir)?,
                &ImageBlobs::from_layout(&theirs.layout.dir)?,
            )?;
            differences.push(format!(
                "{}: {}",
                built.name(),
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
    remove_dir_if_present(&clone)?;
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
fn build_in_clone(ctx: &Context, clone: &Path, images: &[String], platforms: &str) -> Result<()> {
    let sh = &ctx.sh;
    let _dir = sh.push_dir(clone);
    let target = ctx.out.dir().join("reproduce").join("target");
    let package_cache = ctx.package_cache();
    let script = format!("umask {OTHER_UMASK} && exec cargo xtask build \"$@\"");
    cmd!(sh, "sh -c {script} build --platform {platforms} {images...}")
        .env("TZ", OTHER_TIME_ZONE)
        .env("XTASK_NO_CACHE", "1")
        .env("XTASK_REPOSITORY", "xtask-reproduce")
        .env("XTASK_PACKAGE_CACHE", package_cache)
        .env("CARGO_TARGET_DIR", target)
        .run()
        .context("the build in the fresh clone failed")
}

/// Each released image, or each platform of a released image index and the index itself, against the build of this
/// commit.
fn compare_releases(ctx: &Context, releases: &[String]) -> Result<()> {
    let mut differences = Vec::new();
    for release in releases {
        let reference = Reference::parse(release)?;
        let name = reference.repository.rsplit('/').next().unwrap_or_default();
        let image = ctx
            .image(name)
            .with_context(|| format!("{release}: its last path segment names no image of this project"))?;
        let crate::registry::Released { digest, index: is_index, platforms: released } =
            crate::registry::resolve_platforms(&reference)?;
        let platforms: Vec<Platform> = released.iter().map(|(platform, _)| *platform).collect();
        let ours = match Built::current_for(ctx, name, &platforms) {
            Ok(built) => built,
            Err(_) => super::build::build_all(ctx, &[image], &platforms)?,
        };
        if is_index {
            let layouts: Vec<(Platform, &Path)> =
                ours.iter().map(|built| (built.platform, built.layout.dir.as_path())).collect();
            let index = crate::assemble::write_index(ctx, &ctx.out.index_layout(name), &layouts)?;
            println!("{release}: released index {digest}, this commit builds {index}: {}", verdict(index == digest));
            if index != digest {
                differences.push(format!("{release}: the image indexes differ"));
            }
        }
        for ((platform, digest), built) in released.iter().zip(&ours) {
            let same = *digest == built.layout.digest;
            println!(
                "{release} ({platform}): released {digest}, this commit builds {}: {}",
                built.layout.digest,
                verdict(same)
            );
            if !same {
                let pinned = Reference::parse(&reference.pinned(digest))?;
                let theirs = crate::registry::fetch_image(&pinned)?;
                let difference = first_difference(&ImageBlobs::from_layout(&built.layout.dir)?, &theirs)?;
                differences.push(format!(
                    "{release} ({platform}): {}",
                    difference.map_or("none found".to_owned(), |d| d.to_string())
                ));
            }
        }
    }
    if !differences.is_empty() {
        bail!("the releases differ from this commit's build:\n{}", differences.join("\n"));
    }
    Ok(())
}

fn verdict(same: bool) -> &'static str {
    if same {
        "the same"
    } else {
        "DIFFERENT"
    }
}

//! `cargo xtask rescan --registry HOST/NAMESPACE`: the released images against today's vulnerability database.
//!
//! A CVE published after a release makes an image that passed its gate vulnerable without any change here. For each
//! deliverable image this resolves its released tags (every `vX.Y.Z`, and the current commit's) to digests, scans
//! each digest in the registry (each platform's, for an image index: scanners look at one platform of an index only)
//! with the database `XTASK_TRIVY_ONLINE` / `--db-repository` select and the project's policy, writes
//! `out/rescan/<image>/<arch>/trivy.json` and `trivy.sarif`, prints a GitHub `::error` annotation per failing
//! finding, and fails when any image fails.

use std::collections::BTreeSet;

use anyhow::{bail, Context as _, Result};

use crate::context::Context;
use crate::files::remove_dir_if_present;
use crate::platform::Platform;
use crate::policy::Policy;
use crate::registry::{self, Reference};
use crate::trivy_db::Database;

#[derive(clap::Args)]
pub struct RescanArgs {
    /// Where the images were released: HOST[:PORT]/NAMESPACE, as given to `release`.
    #[arg(long, value_name = "HOST[:PORT]/NAMESPACE")]
    pub registry: String,
    /// Tags to rescan (repeatable; default: every vX.Y.Z tag, and the current commit's).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Images to rescan (default: every deliverable).
    pub images: Vec<String>,
}

pub fn run(ctx: &Context, args: &RescanArgs) -> Result<()> {
    let destination = super::release::Destination::parse(&args.registry)?;
    let database = Database::from_env()?;
    // Only tonight's reports: a report left by an earlier rescan would reach code scanning as if it were new.
    let reports_root = ctx.out.dir().join("rescan");
    remove_dir_if_present(&reports_root).context("clearing the previous reports")?;
    let mut failed = Vec::new();
    for image in ctx.select(&args.images)? {
        let repository = destination.repository(&image.name);
        let digests = released_digests(ctx, &repository, &args.tags)?;
        if digests.is_empty() {
            eprintln!("xtask: {repository}: no released tag to rescan");
            continue;
        }
        let policy = Policy::load(&ctx.root, &image.settings.scan).with_context(|| format!("image {}", image.name))?;
        for (digest, platform) in digests {
            let pinned = format!("{repository}@{digest}");
            let source =
                super::scan::ImageSource { path: None, reference: &pinned, expect: super::scan::expectations(image) };
            let name = format!("{}/{}", image.name, platform.arch());
            let outcome = super::scan::scan_source(ctx, &name, &source, &policy, &database)
                .with_context(|| format!("rescanning {pinned} ({platform})"))?;
            let reports = reports_root.join(&name);
            std::fs::create_dir_all(&reports)?;
            std::fs::copy(&outcome.report, reports.join("trivy.json"))?;
            std::fs::copy(&outcome.sarif, reports.join("trivy.sarif"))?;
            if !outcome.passed {
                for finding in &outcome.decisive {
                    annotate(&format!(
                        "{pinned} ({platform}): {} in {} {} (fixed in {}): {}",
                        finding.id, finding.package, finding.installed, finding.fixed, finding.title
                    ));
                }
                failed.push(pinned);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "released images now fail the scan gate: {}\n  refresh the locks (`cargo xtask lock`, the apps' requirements.lock), \
             rebuild and release (README, \"When the nightly rescan fails\")",
            failed.join(", ")
        );
    }
    Ok(())
}

/// The image digests behind the tags to rescan, each once with its platform: an image index stands for each of its
/// platforms' images.
fn released_digests(ctx: &Context, repository: &str, tags: &[String]) -> Result<BTreeSet<(String, Platform)>> {
    let tags: Vec<String> = if tags.is_empty() {
        let head = ctx.revision()?.tag.clone();
        registry::list_tags(repository)?
            .into_iter()
            .filter(|tag| *tag == head || crate::revision::is_version(tag))
            .collect()
    } else {
        tags.to_vec()
    };
    let mut digests = BTreeSet::new();
    for tag in tags {
        let released = registry::resolve_platforms(&Reference::parse(&format!("{repository}:{tag}"))?)?;
        digests.extend(released.platforms.into_iter().map(|(platform, digest)| (digest, platform)));
    }
    Ok(digests)
}

/// A GitHub Actions error annotation; elsewhere a plain line.
fn annotate(message: &str) {
    if Context::is_github_actions() {
        let escaped = message.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
        println!("::error title=rescan::{escaped}");
    } else {
        println!("rescan: {message}");
    }
}

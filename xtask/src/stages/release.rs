//! `cargo xtask release`: from a clean, tested checkout to signed images with signed SBOMs in a registry.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::verify::RequireArgs;
use crate::built::Built;
use crate::context::Context;
use crate::cosign::{self, Tlog};
use crate::platform::{Platform, PlatformArgs};
use crate::policy::Policy;
use crate::registry::{self, Reference};
use crate::signing::{Signer, SigningArgs, Verifier};

#[derive(clap::Args, Debug)]
pub struct ReleaseArgs {
    /// Where to push: HOST[:PORT]/NAMESPACE, e.g. ghcr.io/OWNER or 127.0.0.1:5000/team.
    #[arg(long, value_name = "HOST[:PORT]/NAMESPACE")]
    pub registry: String,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// Images to release (default: every deliverable image under images/).
    pub images: Vec<String>,
    /// Platforms to release, comma-separated (default: linux/amd64,linux/arm64); more than one is pushed as an
    /// image index.
    #[arg(long = "platform", value_name = "PLATFORM", value_delimiter = ',')]
    pub platforms: Vec<Platform>,
}

/// A registry and the namespace the images go under.
#[derive(Debug, Clone)]
pub struct Destination {
    pub registry: String,
    pub namespace: String,
}

impl Destination {
    pub fn parse(text: &str) -> Result<Self> {
        let (registry, namespace) = text.trim_end_matches('/').split_once('/').with_context(|| {
            format!("--registry {text}: write HOST[:PORT]/NAMESPACE (e.g. ghcr.io/OWNER or 127.0.0.1:5000/team)")
        })?;
        // Parsing a sample reference applies the same rules to host and namespace as to any image.
        Reference::parse(&format!("{registry}/{namespace}/image:tag")).with_context(|| format!("--registry {text}"))?;
        Ok(Self { registry: registry.to_owned(), namespace: namespace.to_owned() })
    }

    /// `HOST[:PORT]/NAMESPACE/<image>`, without tag or digest.
    pub fn repository(&self, image: &str) -> String {
        format!("{}/{}/{image}", self.registry, self.namespace)
    }
}

/// One platform's image as `release` publishes it: its OCI layout and the evidence attested to it.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    pub platform: Platform,
    pub layout: PathBuf,
    pub sbom: PathBuf,
    pub provenance: PathBuf,
}

impl PlatformImage {
    /// A build with the SBOM `ci` wrote for it and the provenance `build` wrote.
    pub fn of(ctx: &Context, built: &Built) -> PlatformImage {
        PlatformImage {
            platform: built.platform,
            layout: built.layout.dir.clone(),
            sbom: ctx.out.sbom(&built.name()),
            provenance: ctx.out.provenance(&built.image, built.platform),
        }
    }
}

/// What a release put into the registry for one image.
#[derive(Debug)]
pub struct Published {
    pub image: String,
    /// `HOST[:PORT]/NAMESPACE/<image>@sha256:...`: the image index when more than one platform was released.
    pub pinned: String,
    pub digest: String,
    /// Each platform's image digest, signed and attested on its own.
    pub platforms: Vec<(Platform, String)>,
    pub tags: Vec<String>,
    /// The cosign signature of the digest, `HOST[:PORT]/NAMESPACE/<image>@sha256:...`.
    pub signature: String,
    /// How many VEX statements (accepted vulnerabilities) were attested.
    pub vex_statements: usize,
}

/// How an image is signed, and how its signatures are then checked.
pub struct Signing {
    pub signer: Signer,
    pub verifier: Verifier,
    pub tlog: Tlog,
    pub cosign: PathBuf,
}

pub fn run(ctx: &Context, args: &ReleaseArgs) -> Result<()> {
    // Preconditions first: nothing is built or pushed for a release that cannot finish.
    let revision = ctx.revision()?;
    if revision.dirty {
        bail!(
            "the working tree has uncommitted changes (revision {}): a release must be exactly a commit; \
             commit or stash them first (`git status` lists them)",
            revision.tag
        );
    }
    let destination = Destination::parse(&args.registry)?;
    let images = ctx.select(&args.images)?;
    let (signer, tlog) = Signer::from_args(&args.signing)?;
    let cosign = cosign::cosign(ctx)?;
    let verifier = signer.verifier(&cosign, args.signing.public_key.as_deref(), &ctx.out.release_public_key())?;
    let signing = Signing { signer, verifier, tlog, cosign };

    // No release without every suite of this exact commit: a record of a full `cargo xtask test` pass, or a run now.
    if !super::test::passed_for_this_commit(ctx)? {
        eprintln!("xtask: no full `cargo xtask test` has passed for {} yet: running it first", revision.commit);
        super::test::run(ctx, &super::test::TestArgs::default())
            .context("the test suites failed: nothing was released")?;
    }
    // The whole ci, as CI runs it (every deliverable, whichever images are released): build, scan gate, SBOMs, tests.
    let platforms = PlatformArgs { platforms: args.platforms.clone() }.or(Platform::ALL.to_vec());
    let ci = super::ci::CiArgs { platforms: PlatformArgs { platforms: platforms.clone() }, ..Default::default() };
    super::ci::main(ctx, &ci).context("ci failed: nothing was released")?;

    eprintln!("xtask: {}", tlog.describe());
    let mut published = Vec::new();
    for image in &images {
        let builds = Built::current_for(ctx, &image.name, &Platform::for_image(image, &platforms))?;
        let platform_images: Vec<PlatformImage> = builds.iter().map(|built| PlatformImage::of(ctx, built)).collect();
        published.push(
            publish(ctx, &image.name, &platform_images, &destination, &signing)
                .with_context(|| format!("releasing image {}", image.name))?,
        );
    }
    for release in &published {
        println!("released {}", release.image);
        println!("  digest     {}", release.digest);
        println!("  image      {}", release.pinned);
        for (platform, digest) in &release.platforms {
            println!("  {:<10} {digest}", platform.docker());
        }
        println!("  tags       {}", release.tags.join(", "));
        println!("  signature  {}", release.signature);
        let vex = match release.vex_statements {
            0 => String::new(),
            count => format!(", VEX ({count} accepted vulnerabilities)"),
        };
        println!("  attested   SBOM (CycloneDX), provenance (SLSA v1){vex}");
    }
    Ok(())
}

/// Pushes one image (each platform's OCI image layout byte for byte, so that every digest is the one computed when
/// it was written; with more than one platform, their image index) under its tags; signs each platform's digest and
/// attests its SBOM, provenance and VEX; signs the index and attests its SBOM (its platform images) and provenance; and
/// verifies all of it before it reports success.
pub fn publish(
    ctx: &Context,
    image: &str,
    platforms: &[PlatformImage],
    destination: &Destination,
    signing: &Signing,
) -> Result<Published> {
    if platforms.is_empty() {
        bail!("image {image}: no platform to release");
    }
    for platform in platforms {
        for (path, what) in [(&platform.sbom, "SBOM"), (&platform.provenance, "provenance")] {
            if !path.is_file() {
                bail!(
                    "image {image} ({}): no {what} at {}; `cargo xtask ci` writes it",
                    platform.platform,
                    path.display()
                );
            }
        }
    }
    let repository = destination.repository(image);
    let revision = ctx.revision()?;
    let tags: Vec<String> =
        std::iter::once(revision.tag.clone()).chain(revision.version_tags.iter().cloned()).collect();
    let (signer, cosign, tlog) = (&signing.signer, &signing.cosign, signing.tlog);

    // Each platform by digest first, its evidence attached: nothing is tagged before every part is in place.
    let mut pushed = Vec::new();
    for platform in platforms {
        let single = platforms.len() == 1;
        let digest = registry::push_layout(&platform.layout, &repository, if single { &tags } else { &[] })?;
        let pinned = format!("{repository}@{digest}");
        signer.sign(cosign, &pinned, tlog)?;
        signer.attest(cosign, &pinned, cosign::SBOM_PREDICATE, &platform.sbom, tlog)?;
        signer.attest(cosign, &pinned, crate::provenance::COSIGN_TYPE, &platform.provenance, tlog)?;
        if let Some(vex) = write_vex(ctx, image, platform.platform, &repository, &digest)? {
            signer.attest(cosign, &pinned, crate::vex::COSIGN_TYPE, &vex, tlog)?;
        }
        pushed.push((platform.platform, digest));
    }
    let digest = match &pushed[..] {
        [(_, digest)] => digest.clone(),
        _ => {
            let layouts: Vec<(Platform, &Path)> =
                platforms.iter().map(|platform| (platform.platform, platform.layout.as_path())).collect();
            let index_layout = ctx.out.index_layout(image);
            crate::assemble::write_index(ctx, &index_layout, &layouts)?;
            let provenance = crate::provenance::write_index(ctx, image, &pushed)?;
            let sbom = crate::index_sbom::write(ctx, image, &repository, &pushed)?;
            let digest = registry::push_layout(&index_layout, &repository, &tags)?;
            let pinned = format!("{repository}@{digest}");
            signer.sign(cosign, &pinned, tlog)?;
            // An admission controller checks the digest a pod names, the index's: it needs the SBOM there too.
            signer.attest(cosign, &pinned, cosign::SBOM_PREDICATE, &sbom, tlog)?;
            signer.attest(cosign, &pinned, crate::provenance::COSIGN_TYPE, &provenance, tlog)?;
            digest
        }
    };
    let pinned = format!("{repository}@{digest}");

    // Everything `verify` requires, of every platform, as a deploy step will check it.
    let require =
        RequireArgs { source_revision: Some(revision.commit.clone()), all_platforms: true, ..RequireArgs::default() };
    let verified = super::verify::image(cosign, &Reference::parse(&pinned)?, &signing.verifier, tlog, &require)?;
    eprintln!("xtask: {pinned}: signature, SBOM, provenance and VEX verified with {}", signing.verifier.describe());
    let signature = signature_reference(&repository, &digest);
    Ok(Published {
        image: image.to_owned(),
        signature,
        pinned,
        digest,
        platforms: pushed,
        tags,
        vex_statements: verified.vex_statements,
    })
}

/// The OpenVEX document of the allow-list entries that apply to the image (the workspace's and its own), when there
/// are any: written to `out/images/<image>/<arch>/vex.json`.
fn write_vex(
    ctx: &Context,
    image: &str,
    platform: Platform,
    repository: &str,
    digest: &str,
) -> Result<Option<PathBuf>> {
    let overrides = ctx.image(image).map(|image| image.settings.scan.clone()).unwrap_or_default();
    let policy = Policy::load(&ctx.root, &overrides)?;
    let timestamp = &ctx.revision()?.created;
    let Some(document) = crate::vex::document(&policy, repository, digest, crate::policy::today(), timestamp) else {
        return Ok(None);
    };
    let path = ctx.out.vex(image, platform);
    crate::files::write(&path, serde_json::to_string_pretty(&document)?)?;
    Ok(Some(path))
}

/// The signature of the digest, where cosign keeps it (`cosign::SIGNING_FORMAT`): the tag `sha256-<hex>.sig` beside
/// the image, as `repository@sha256:...`; that tag itself when the registry does not resolve it.
fn signature_reference(repository: &str, digest: &str) -> String {
    let tag = format!("{repository}:{}.sig", digest.replace(':', "-"));
    match Reference::parse(&tag).and_then(|reference| registry::resolve_digest(&reference)) {
        Ok(signature) => format!("{repository}@{signature}"),
        Err(error) => format!("{tag} (resolving it failed: {error:#})"),
    }
}

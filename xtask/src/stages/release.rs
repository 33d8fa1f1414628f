//! `cargo xtask release`: from a clean, tested checkout to signed images with signed SBOMs in a registry.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::verify::RequireArgs;
use crate::context::Context;
use crate::cosign::{self, Tlog};
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

/// What a release put into the registry for one image.
#[derive(Debug)]
pub struct Published {
    pub image: String,
    /// `HOST[:PORT]/NAMESPACE/<image>@sha256:...`
    pub pinned: String,
    pub digest: String,
    pub tags: Vec<String>,
    /// The newest cosign signature referring to the digest, `HOST[:PORT]/NAMESPACE/<image>@sha256:...`.
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
    super::ci::main(ctx, &super::ci::CiArgs::default()).context("ci failed: nothing was released")?;

    eprintln!("xtask: {}", tlog.describe());
    let mut published = Vec::new();
    for image in &images {
        let layout = ctx.out.image_layout(&image.name);
        published.push(
            publish(ctx, &image.name, &layout, &destination, &signing)
                .with_context(|| format!("releasing image {}", image.name))?,
        );
    }
    for release in &published {
        println!("released {}", release.image);
        println!("  digest     {}", release.digest);
        println!("  image      {}", release.pinned);
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

/// Pushes one built image (its OCI image layout, byte for byte, so that the digest is the one computed when it was
/// written) under its tags, signs that digest, attaches its SBOM as a signed attestation, and verifies both before it
/// reports success.
pub fn publish(
    ctx: &Context,
    image: &str,
    layout: &Path,
    destination: &Destination,
    signing: &Signing,
) -> Result<Published> {
    let evidence = |path: std::path::PathBuf, what: &str| {
        if path.is_file() {
            Ok(path)
        } else {
            Err(anyhow::anyhow!("image {image}: no {what} at {}; `cargo xtask ci` writes it", path.display()))
        }
    };
    let sbom = evidence(ctx.out.sbom(image), "SBOM")?;
    let provenance = evidence(ctx.out.provenance(image), "provenance")?;
    let repository = destination.repository(image);
    let revision = ctx.revision()?;
    let tags: Vec<String> =
        std::iter::once(revision.tag.clone()).chain(revision.version_tags.iter().cloned()).collect();
    let digest = registry::push_layout(layout, &repository, &tags)?;
    let pinned = format!("{repository}@{digest}");

    let (signer, cosign, tlog) = (&signing.signer, &signing.cosign, signing.tlog);
    signer.sign(cosign, &pinned, tlog)?;
    signer.attest(cosign, &pinned, cosign::SBOM_PREDICATE, &sbom, tlog)?;
    signer.attest(cosign, &pinned, crate::provenance::COSIGN_TYPE, &provenance, tlog)?;
    if let Some(vex) = write_vex(ctx, image, &repository, &digest)? {
        signer.attest(cosign, &pinned, crate::vex::COSIGN_TYPE, &vex, tlog)?;
    }

    // Everything `verify` requires, as a deploy step will check it.
    let require = RequireArgs { source_revision: Some(revision.commit.clone()), ..RequireArgs::default() };
    let verified = super::verify::image(cosign, &Reference::parse(&pinned)?, &signing.verifier, tlog, &require)?;
    eprintln!("xtask: {pinned}: signature, SBOM, provenance and VEX verified with {}", signing.verifier.describe());
    let signature = signature_reference(&repository, &digest);
    Ok(Published { image: image.to_owned(), signature, pinned, digest, tags, vex_statements: verified.vex_statements })
}

/// The OpenVEX document of the allow-list entries that apply to the image (the workspace's and its own), when there
/// are any: written to `out/images/<image>/vex.json`.
fn write_vex(ctx: &Context, image: &str, repository: &str, digest: &str) -> Result<Option<std::path::PathBuf>> {
    let overrides = ctx.image(image).map(|image| image.settings.scan.clone()).unwrap_or_default();
    let policy = Policy::load(&ctx.root, &overrides)?;
    let timestamp = &ctx.revision()?.created;
    let Some(document) = crate::vex::document(&policy, repository, digest, crate::policy::today(), timestamp) else {
        return Ok(None);
    };
    let path = ctx.out.vex(image);
    std::fs::create_dir_all(path.parent().context("a VEX path without a folder")?)?;
    std::fs::write(&path, serde_json::to_string_pretty(&document)?)?;
    Ok(Some(path))
}

/// The newest cosign signature referring to the digest, as `repository@sha256:...`; a description of where cosign
/// keeps it when the registry does not show it.
fn signature_reference(repository: &str, digest: &str) -> String {
    let subject = format!("{repository}@{digest}");
    let newest =
        Reference::parse(&subject).and_then(|reference| registry::referrers(&reference, digest)).map(|referrers| {
            referrers
                .into_iter()
                .filter(|referrer| referrer.predicate_type.as_deref() == Some(cosign::SIGNATURE_PREDICATE))
                .max_by(|a, b| a.created.cmp(&b.created))
        });
    match newest {
        Ok(Some(signature)) => format!("{repository}@{}", signature.digest),
        Ok(None) => format!("a referrer of {subject} (not listed by the registry)"),
        Err(error) => format!("a referrer of {subject} (listing referrers failed: {error:#})"),
    }
}

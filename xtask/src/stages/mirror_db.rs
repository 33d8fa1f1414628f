//! `cargo xtask mirror-db --to HOST[:PORT]/PATH[:TAG]`: publishes the offline database built from `advisories/` to a
//! registry as the OCI artifact Trivy downloads with `--db-repository` (tag `2`, Trivy's default, unless given).

use anyhow::Result;

use crate::context::Context;
use crate::trivy_db;

#[derive(clap::Args)]
pub struct MirrorDbArgs {
    /// The repository to publish to, HOST[:PORT]/NAMESPACE/NAME[:TAG].
    #[arg(long, value_name = "REF")]
    to: String,
}

/// Publishes the database and prints the reference it now has, pinned to its digest.
pub fn run(ctx: &Context, args: &MirrorDbArgs) -> Result<()> {
    let target = trivy_db::repository_reference(&args.to)?;
    let digest = trivy_db::publish(ctx, &target)?;
    eprintln!("xtask: scan with it: cargo xtask scan --db-repository {target}");
    println!("{}", target.pinned(&digest));
    Ok(())
}

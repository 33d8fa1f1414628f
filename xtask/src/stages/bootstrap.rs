//! `cargo xtask bootstrap`: build the Debian 13 base image from the Debian archive, for engines that cannot pull it.

use anyhow::Result;

use crate::context::Context;
use crate::debian_base::{self, LOCAL_BASE};

#[derive(clap::Args)]
pub struct BootstrapArgs {
    /// Debian mirror to build from (default: the host's apt sources, else XTASK_DEBIAN_MIRROR).
    #[arg(long)]
    mirror: Option<String>,
    /// Build the local base again even when the engine has it.
    #[arg(long)]
    force: bool,
}

pub fn run(ctx: &Context, args: &BootstrapArgs) -> Result<()> {
    ctx.engine()?;
    if args.force || !crate::docker::has_image(&ctx.sh, LOCAL_BASE) {
        debian_base::build_local_base(ctx, args.mirror.as_deref())?;
    } else {
        eprintln!("xtask: {LOCAL_BASE} is present (use --force to build it again)");
    }
    Ok(())
}

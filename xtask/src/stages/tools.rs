//! `cargo xtask tools`: install or find the pinned supply-chain tools, and say which are used.

use anyhow::Result;

use crate::context::Context;
use crate::pinned_tools::{self, Tool};

#[derive(clap::Args)]
pub struct ToolsArgs {
    /// Tools to install (default: all).
    #[arg(value_enum)]
    tools: Vec<Tool>,
}

pub fn run(ctx: &Context, args: &ToolsArgs) -> Result<()> {
    let resolved = if args.tools.is_empty() {
        pinned_tools::ensure_all(ctx, &Tool::all())?
    } else {
        args.tools.iter().map(|&tool| Ok((tool, pinned_tools::ensure(ctx, tool)?))).collect::<Result<Vec<_>>>()?
    };
    for (tool, path) in resolved {
        println!("{:<10} {}", tool.binary(), path.display());
    }
    Ok(())
}

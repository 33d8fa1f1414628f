//! The GitHub Actions workflows pass actionlint (the pinned one from `cargo xtask tools`).

use xshell::cmd;
use xtask::context::Context;
use xtask::pinned_tools::{self, Tool};

#[test]
fn workflows_pass_actionlint() {
    let ctx = Context::discover().unwrap();
    let actionlint = match pinned_tools::ensure(&ctx, Tool::Actionlint) {
        Ok(path) => path,
        Err(error) if !Context::in_ci() => return eprintln!("skipped: {error:#}"),
        Err(error) => panic!("CI=true and actionlint is not available: {error:#}"),
    };
    let workflows: Vec<_> = std::fs::read_dir(ctx.root.join(".github/workflows"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml" || ext == "yaml"))
        .collect();
    assert!(workflows.len() >= 2, "ci and release workflows");
    let sh = &ctx.sh;
    cmd!(sh, "{actionlint} {workflows...}").run().expect("actionlint found problems (listed above)");
}

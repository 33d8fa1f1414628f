//! The same commit gives the same image digests: `cargo xtask reproduce` builds both images again in a fresh clone
//! (another time zone, umask 077, other file times, no build cache) and compares; `--release` compares a pushed
//! image with this commit's build, and names the first differing layer and files when they differ.

mod common;

use xtask::built::Built;
use xtask::context::Context;
use xtask::platform::{Platform, PlatformArgs};
use xtask::registry;
use xtask::stages::reproduce::{self, ReproduceArgs};

use common::registry::LocalRegistry;
use common::require;

/// The workspace, when its tree is committed: reproduce compares builds of a commit. Under CI the checkout is
/// always clean; elsewhere a tree with uncommitted changes skips the test with the reason.
fn committed_workspace() -> Option<Context> {
    let ctx = Context::discover().expect("workspace");
    require("the Docker engine", ctx.engine().map(drop))?;
    let dirty = ctx.revision().expect("the git revision").dirty;
    require("a committed tree", if dirty { Err(anyhow::anyhow!("the tree has uncommitted changes")) } else { Ok(()) })?;
    Some(ctx)
}

#[test]
fn a_fresh_clone_under_another_time_zone_and_umask_builds_the_same_digests() {
    let Some(ctx) = committed_workspace() else { return };
    // Every platform under CI: the image indexes must match too.
    let args = ReproduceArgs { images: Vec::new(), release: Vec::new(), platforms: PlatformArgs::default() };
    reproduce::run(&ctx, &args).expect("both images reproduce");
}

#[test]
fn a_pushed_image_is_checked_against_the_commit_and_a_different_one_is_named() {
    let Some(ctx) = committed_workspace() else { return };
    let Some(local) = require("a registry binary", LocalRegistry::start(&ctx)) else { return };
    let names: Vec<String> = ctx.select(&[]).unwrap().iter().map(|image| image.name.clone()).collect();
    let platforms = Platform::defaults();
    xtask::stages::build::build_all(&ctx, &ctx.select(&[]).unwrap(), &platforms).expect("the images build");
    let (ours, other) = (Built::current(&ctx, &names[0]).unwrap(), Built::current(&ctx, &names[1]).unwrap());

    let repository = format!("{}/team/{}", local.address, ours.image);
    let digest = registry::push_layout(&ours.layout.dir, &repository, &["released".to_owned()]).unwrap();
    assert_eq!(digest, ours.layout.digest, "the registry holds exactly the digest computed locally");
    let release = |reference: String| ReproduceArgs {
        images: Vec::new(),
        release: vec![reference],
        platforms: PlatformArgs::default(),
    };
    reproduce::run(&ctx, &release(format!("{repository}@{digest}"))).expect("the release is this commit's build");
    if platforms.len() > 1 {
        // The image index of every platform, as `release` pushes it.
        let index = registry::push_layout(&ctx.out.index_layout(&ours.image), &repository, &["index".to_owned()]);
        reproduce::run(&ctx, &release(format!("{repository}@{}", index.unwrap()))).expect("the index is this commit's");
    }

    // Another image under the same name: the comparison fails and says where.
    registry::push_layout(&other.layout.dir, &repository, &["impostor".to_owned()]).unwrap();
    let error = format!("{:#}", reproduce::run(&ctx, &release(format!("{repository}:impostor"))).unwrap_err());
    assert!(error.contains("differ") && error.contains("layer"), "{error}");
}

//! `cargo xtask rescan` against a registry on 127.0.0.1 with the real Trivy and the offline database: a released
//! image that is clean passes; one that has become vulnerable fails, naming the finding, with its SARIF written.

mod common;

use std::path::Path;

use xshell::cmd;
use xtask::built::Built;
use xtask::context::Context;
use xtask::oci::{self, LayoutWriter};
use xtask::stages::rescan::{self, RescanArgs};

use common::registry::LocalRegistry;
use common::require;

/// The Flask 2.2.2 fixture image (tests/fixtures/flask-2.2.2) as an OCI layout: what a release made before
/// CVE-2023-30861 was known would look like.
fn vulnerable_layout(ctx: &Context, dir: &Path) -> anyhow::Result<()> {
    let fixture = ctx.root.join("tests/fixtures/flask-2.2.2");
    let sh = &ctx.sh;
    cmd!(sh, "docker build --quiet --tag xtask-test/flask-2.2.2:rescan {fixture}")
        .env("DOCKER_BUILDKIT", "0")
        .quiet()
        .ignore_stdout()
        .run()?;
    let archive = cmd!(sh, "docker save xtask-test/flask-2.2.2:rescan").quiet().output()?.stdout;
    let saved = oci::read_docker_save(archive.as_slice())?;
    let writer = LayoutWriter::create(dir)?;
    let (mut layers, mut diff_ids) = (Vec::new(), Vec::new());
    for layer in &saved.layers {
        diff_ids.push(oci::sha256(layer));
        layers.push(writer.blob(oci::LAYER_TYPE, &oci::gzip(layer)?)?);
    }
    let config = oci::normalize_config(&saved.config, &diff_ids, "2023-05-01T00:00:00Z", &Default::default())?;
    let config = writer.blob(oci::CONFIG_TYPE, &config)?;
    let manifest =
        serde_json::json!({ "schemaVersion": 2, "mediaType": oci::MANIFEST_TYPE, "config": config, "layers": layers });
    let manifest = writer.blob(oci::MANIFEST_TYPE, &oci::canonical_json(&manifest)?)?;
    writer.finish(manifest, "rescan", &[])?;
    Ok(())
}

#[test]
fn a_clean_release_passes_and_one_that_became_vulnerable_fails_naming_the_finding() {
    let ctx = Context::discover().unwrap();
    let Some(()) = require("the Docker engine", ctx.engine().map(drop)) else { return };
    let Some(local) = require("a registry binary", LocalRegistry::start(&ctx)) else { return };
    let Some(clean) = require("the built giropops-senhas image", Built::current(&ctx, "giropops-senhas")) else {
        return;
    };
    let namespace = format!("{}/team", local.address);

    xtask::registry::push_layout(&clean.layout.dir, &format!("{namespace}/giropops-senhas"), &["v1.0.0".to_owned()])
        .unwrap();
    let only = |image: &str, tag: &str| RescanArgs {
        registry: namespace.clone(),
        tags: vec![tag.to_owned()],
        images: vec![image.to_owned()],
    };
    rescan::run(&ctx, &only("giropops-senhas", "v1.0.0")).expect("the clean release passes");

    let folder = tempfile::tempdir().unwrap();
    let layout = folder.path().join("oci");
    vulnerable_layout(&ctx, &layout).unwrap();
    xtask::registry::push_layout(&layout, &format!("{namespace}/fake-shop"), &["v0.9.0".to_owned()]).unwrap();
    let error = format!("{:#}", rescan::run(&ctx, &only("fake-shop", "v0.9.0")).unwrap_err());
    assert!(error.contains("now fail the scan gate") && error.contains("fake-shop@sha256:"), "{error}");
    let sarif = std::fs::read_to_string(ctx.out.dir().join("rescan/fake-shop/amd64/trivy.sarif")).unwrap();
    assert!(sarif.contains("CVE-2023-30861"), "the SARIF names the finding");
}

//! Every image's launcher.toml passes `launcher check` with the environment its Dockerfile sets.

use xshell::cmd;
use xtask::context::Context;

#[test]
fn every_image_launcher_config_is_valid() {
    let ctx = Context::discover().unwrap();
    // `cargo xtask test` hands over the binary it built; alone, the test builds it.
    let launcher = match std::env::var_os("LAUNCHER_STATIC_BIN") {
        Some(path) => path.into(),
        None => xtask::static_launcher::build(&ctx, xtask::platform::Platform::Amd64).expect("static launcher"),
    };
    let mut checked = 0;
    for image in ctx.images() {
        let config = image.dir.join("launcher.toml");
        if !config.is_file() {
            continue;
        }
        // What the images' ENV lines provide.
        let output = cmd!(ctx.sh, "{launcher} check --config {config}")
            .env("PROMETHEUS_MULTIPROC_DIR", "/tmp/prometheus-multiproc")
            .env("EMBEDDED_REDIS", "true")
            .quiet()
            .ignore_status()
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}: {}{}",
            config.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 2, "both app images have a launcher config");
}

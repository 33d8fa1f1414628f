//! The evidence `ci` leaves for `release`, written by hand: an SBOM, a provenance, and the committed checkout they
//! are about.

use xtask::context::Context;

/// The repository the provenances name.
pub const REPOSITORY: &str = "https://example.test/distroless-python";

/// A CycloneDX SBOM that lists nothing: what `release` and `verify` check is that one is attached and signed.
pub const EMPTY_SBOM: &str = r#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[]}"#;

/// A provenance of this pipeline for `image` on `platform` (`linux/amd64`), naming `commit` of [`REPOSITORY`], as
/// `build` writes one.
pub fn provenance(image: &str, platform: &str, commit: &str) -> serde_json::Value {
    serde_json::json!({
        "buildDefinition": {
            "buildType": xtask::provenance::BUILD_TYPE,
            "externalParameters": {
                "image": image,
                "platform": platform,
                "source": { "repository": REPOSITORY, "revision": commit },
            },
            "resolvedDependencies": [{ "uri": format!("git+{REPOSITORY}"), "digest": { "gitCommit": commit } }],
        },
        "runDetails": { "builder": { "id": "urn:distroless-python:host:test" } },
    })
}

/// Commits everything in the checkout of `ctx` (its `out/` ignored) as the first commit of a new repository, as
/// `release` wants a clean tree; returns the commit.
pub fn commit_all(ctx: &Context) -> String {
    std::fs::write(ctx.root.join(".gitignore"), "/out/\n").unwrap();
    for args in [
        &["init", "--quiet"][..],
        &["add", "."],
        &["-c", "user.name=xtask", "-c", "user.email=xtask@localhost", "commit", "--quiet", "-m", "release me"],
    ] {
        ctx.read("git", args).unwrap();
    }
    ctx.read("git", &["rev-parse", "HEAD"]).unwrap()
}

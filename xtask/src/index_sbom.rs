//! The SBOM of an image index: a CycloneDX document whose components are the index's platform images, each by its
//! manifest digest (each of them carries its own full SBOM). `release` attests it to the index because an admission
//! controller checks the digest a pod names, which is the index's, and never looks into its platforms; `verify`
//! reads it back and requires that it names exactly the platform images the index holds.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{json, Value};

use crate::context::Context;
use crate::platform::Platform;

/// The property that names a component's platform.
const PLATFORM: &str = "oci:platform";

/// Writes the SBOM of the index of `platforms` (each with its manifest digest) to `out/images/<image>/sbom.cdx.json`.
pub fn write(ctx: &Context, image: &str, repository: &str, platforms: &[(Platform, String)]) -> Result<PathBuf> {
    let created = &ctx.revision()?.created;
    let platforms: Vec<(String, String)> =
        platforms.iter().map(|(platform, digest)| (platform.docker(), digest.clone())).collect();
    let path = ctx.out.index_sbom(image);
    crate::files::write(&path, serde_json::to_string_pretty(&document(repository, image, &platforms, created))?)?;
    Ok(path)
}

/// The CycloneDX 1.6 document: the index as the subject, one `container` component per platform image (a package URL
/// by digest, the digest as its SHA-256 hash, the platform as a property), and the index depending on each.
pub fn document(repository: &str, image: &str, platforms: &[(String, String)], created: &str) -> Value {
    let components: Vec<Value> = platforms
        .iter()
        .map(|(platform, digest)| {
            let hex = digest.trim_start_matches("sha256:");
            let arch = platform.rsplit('/').next().unwrap_or(platform);
            json!({
                "type": "container",
                "bom-ref": format!("{repository}@{digest}"),
                "name": image,
                "version": digest,
                "purl": format!("pkg:oci/{image}@sha256%3A{hex}?arch={arch}&repository_url={repository}"),
                "hashes": [{ "alg": "SHA-256", "content": hex }],
                "properties": [{ "name": PLATFORM, "value": platform }],
            })
        })
        .collect();
    let references: Vec<&Value> = components.iter().map(|component| &component["bom-ref"]).collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {
            "timestamp": created,
            "component": { "type": "container", "bom-ref": repository, "name": image },
        },
        "components": components,
        "dependencies": [{ "ref": repository, "dependsOn": references }],
    })
}

/// The platform images an index's SBOM names, `(platform, digest)`, sorted.
pub fn platform_images(sbom: &Value) -> Vec<(String, String)> {
    let mut images: Vec<(String, String)> = sbom["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|component| {
            let platform = component["properties"].as_array()?.iter().find(|property| property["name"] == PLATFORM)?
                ["value"]
                .as_str()?;
            Some((platform.to_owned(), component["version"].as_str()?.to_owned()))
        })
        .collect();
    images.sort();
    images
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sbom_names_each_platform_image_by_digest_and_is_read_back() {
        let platforms = [
            ("linux/arm64".to_owned(), format!("sha256:{}", "b".repeat(64))),
            ("linux/amd64".to_owned(), format!("sha256:{}", "a".repeat(64))),
        ];
        let sbom = document("127.0.0.1:5000/team/app", "app", &platforms, "2026-01-02T03:04:05Z");
        assert_eq!(sbom["bomFormat"], "CycloneDX");
        assert_eq!(
            sbom["components"][1]["purl"],
            format!("pkg:oci/app@sha256%3A{}?arch=amd64&repository_url=127.0.0.1:5000/team/app", "a".repeat(64))
        );
        assert_eq!(sbom["dependencies"][0]["dependsOn"].as_array().unwrap().len(), 2);
        let mut expected = platforms.to_vec();
        expected.sort();
        assert_eq!(platform_images(&sbom), expected);
        assert!(platform_images(&json!({ "bomFormat": "CycloneDX", "components": [] })).is_empty());
    }
}

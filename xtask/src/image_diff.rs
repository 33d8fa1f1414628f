//! Where two images differ, as diffoci tells it: the first differing layer, then the first differing files in it
//! (path, size, mode, time, content hash), or the configuration's differing fields.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// An image as its manifest, configuration and layer blobs.
pub struct ImageBlobs {
    pub manifest_digest: String,
    pub config: Vec<u8>,
    /// Compressed layers, in order.
    pub layers: Vec<Vec<u8>>,
}

impl ImageBlobs {
    /// The image of an OCI layout whose `index.json` names one image manifest.
    pub fn from_layout(dir: &Path) -> Result<ImageBlobs> {
        let read = |digest: &str| {
            let path = dir.join("blobs").join("sha256").join(digest.trim_start_matches("sha256:"));
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
        };
        let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json"))?)?;
        let manifest_digest =
            index["manifests"][0]["digest"].as_str().context("index.json names no manifest")?.to_owned();
        let manifest: Value = serde_json::from_slice(&read(&manifest_digest)?)?;
        let config = read(manifest["config"]["digest"].as_str().context("a manifest without config")?)?;
        let layers = manifest["layers"]
            .as_array()
            .context("a manifest without layers")?
            .iter()
            .map(|layer| read(layer["digest"].as_str().unwrap_or_default()))
            .collect::<Result<_>>()?;
        Ok(ImageBlobs { manifest_digest, config, layers })
    }
}

/// The first place two images differ.
#[derive(Debug, PartialEq)]
pub enum Difference {
    LayerCount {
        ours: usize,
        theirs: usize,
    },
    /// Layer `index` (from 1, base first) differs; its first differing files.
    Layer {
        index: usize,
        files: Vec<FileDifference>,
    },
    /// Same layers, different configuration: the fields that differ.
    Config {
        fields: Vec<String>,
    },
}

/// One path whose entry differs, with both sides (`None`: absent on that side).
#[derive(Debug, PartialEq)]
pub struct FileDifference {
    pub path: String,
    pub ours: Option<FileFacts>,
    pub theirs: Option<FileFacts>,
}

#[derive(Debug, PartialEq, Clone)]
pub struct FileFacts {
    pub size: u64,
    pub mode: u32,
    pub mtime: u64,
    pub sha256: String,
}

/// How many differing files a layer difference lists at most.
const FILES_SHOWN: usize = 10;

/// The first difference between `ours` and `theirs`, or `None` when their manifests are the same.
pub fn first_difference(ours: &ImageBlobs, theirs: &ImageBlobs) -> Result<Option<Difference>> {
    if ours.manifest_digest == theirs.manifest_digest {
        return Ok(None);
    }
    if ours.layers.len() != theirs.layers.len() {
        return Ok(Some(Difference::LayerCount { ours: ours.layers.len(), theirs: theirs.layers.len() }));
    }
    for (index, (a, b)) in ours.layers.iter().zip(&theirs.layers).enumerate() {
        if a != b {
            let (a, b) = (entries(a)?, entries(b)?);
            let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
            paths.sort();
            paths.dedup();
            let files: Vec<FileDifference> = paths
                .into_iter()
                .filter(|path| a.get(*path) != b.get(*path))
                .take(FILES_SHOWN)
                .map(|path| FileDifference {
                    path: path.clone(),
                    ours: a.get(path).cloned(),
                    theirs: b.get(path).cloned(),
                })
                .collect();
            return Ok(Some(Difference::Layer { index: index + 1, files }));
        }
    }
    let (a, b): (Value, Value) = (serde_json::from_slice(&ours.config)?, serde_json::from_slice(&theirs.config)?);
    let mut fields = Vec::new();
    differing_fields(&a, &b, "", &mut fields);
    Ok(Some(Difference::Config { fields }))
}

/// Every entry of a (gzip) layer by path.
fn entries(layer: &[u8]) -> Result<BTreeMap<String, FileFacts>> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(layer).read_to_end(&mut plain).context("decompressing a layer")?;
    let mut facts = BTreeMap::new();
    let mut archive = tar::Archive::new(plain.as_slice());
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let header = entry.header().clone();
        let mut content = Vec::new();
        entry.read_to_end(&mut content)?;
        let sha256 = hex::encode(Sha256::digest(&content));
        facts.insert(
            path,
            FileFacts { size: content.len() as u64, mode: header.mode()?, mtime: header.mtime()?, sha256 },
        );
    }
    Ok(facts)
}

fn differing_fields(a: &Value, b: &Value, at: &str, fields: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let inner = format!("{at}/{key}");
                differing_fields(
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    &inner,
                    fields,
                );
            }
        }
        _ if a != b => fields.push(format!("{at}: {a} ≠ {b}")),
        _ => {}
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::LayerCount { ours, theirs } => write!(f, "{ours} layers here, {theirs} there"),
            Difference::Config { fields } => write!(f, "same layers, the configuration differs: {}", fields.join("; ")),
            Difference::Layer { index, files } => {
                write!(f, "layer {index} differs first")?;
                for file in files {
                    write!(f, "\n  {}: {} | {}", file.path, side(&file.ours), side(&file.theirs))?;
                }
                Ok(())
            }
        }
    }
}

fn side(facts: &Option<FileFacts>) -> String {
    match facts {
        Some(facts) => {
            format!("size {} mode {:o} mtime {} sha256 {}", facts.size, facts.mode, facts.mtime, &facts.sha256[..12])
        }
        None => "absent".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci;

    fn layer(files: &[(&str, &str, u64)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content, mtime) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(*mtime);
            builder.append_data(&mut header, path, content.as_bytes()).unwrap();
        }
        oci::gzip(&builder.into_inner().unwrap()).unwrap()
    }

    fn image(layers: Vec<Vec<u8>>, config: &str) -> ImageBlobs {
        let digest = oci::sha256(&[layers.concat(), config.as_bytes().to_vec()].concat());
        ImageBlobs { manifest_digest: digest, config: config.as_bytes().to_vec(), layers }
    }

    #[test]
    fn the_first_differing_layer_names_its_differing_files() {
        let base = layer(&[("etc/passwd", "root", 1)]);
        let ours = image(vec![base.clone(), layer(&[("app/a.py", "one", 1), ("app/b.py", "same", 1)])], "{}");
        let theirs = image(vec![base, layer(&[("app/a.py", "two", 1), ("app/b.py", "same", 5)])], "{}");
        let Some(Difference::Layer { index, files }) = first_difference(&ours, &theirs).unwrap() else { panic!() };
        assert_eq!(index, 2);
        let paths: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
        assert_eq!(paths, ["app/a.py", "app/b.py"]);
        assert_eq!(files[1].ours.as_ref().unwrap().mtime, 1);
        assert_eq!(files[1].theirs.as_ref().unwrap().mtime, 5);
        assert!(Difference::Layer { index, files }.to_string().contains("app/a.py: size 3"));
    }

    #[test]
    fn same_layers_with_another_configuration_name_the_fields() {
        let layers = vec![layer(&[("x", "x", 1)])];
        let ours = image(layers.clone(), r#"{"created":"2026-01-01T00:00:00Z","os":"linux"}"#);
        let theirs = image(layers, r#"{"created":"2026-01-02T00:00:00Z","os":"linux"}"#);
        let difference = first_difference(&ours, &theirs).unwrap().unwrap();
        assert_eq!(
            difference,
            Difference::Config {
                fields: vec![r#"/created: "2026-01-01T00:00:00Z" ≠ "2026-01-02T00:00:00Z""#.to_owned()]
            }
        );
        assert_eq!(first_difference(&ours, &ours).unwrap(), None);
    }
}

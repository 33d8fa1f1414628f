//! The platforms images are built for, and the names each goes by in Docker, Debian, Rust and pip.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::images::Image;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Amd64,
    Arm64,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::Amd64, Platform::Arm64];

    /// What builds run for unless told: amd64 alone locally; every platform in CI (`CI=true`/`CI=1`).
    pub fn defaults() -> Vec<Platform> {
        if Context::in_ci() {
            Platform::ALL.to_vec()
        } else {
            vec![Platform::Amd64]
        }
    }

    /// Debian's architecture, which is also BuildKit's `TARGETARCH` and the OCI `architecture`.
    pub fn arch(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }

    /// `linux/amd64`, as Docker writes it.
    pub fn docker(self) -> String {
        format!("linux/{}", self.arch())
    }

    /// The Rust target of the static launcher.
    pub fn rust_target(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64-unknown-linux-musl",
            Platform::Arm64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The machine name of pip's wheel tags and of `uname -m`.
    pub fn machine(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64",
            Platform::Arm64 => "aarch64",
        }
    }

    /// The suffix of the engine tag of this platform's image: none for amd64, the platform the tests run the images
    /// on; `-arm64` for arm64 (Engine 20.10 keeps one image per tag).
    pub fn tag_suffix(self) -> &'static str {
        match self {
            Platform::Amd64 => "",
            Platform::Arm64 => "-arm64",
        }
    }

    /// The platforms an image is built for: every requested one for a deliverable; amd64 alone for a companion
    /// (`release = false`), which only ever runs beside the images on the test machine.
    pub fn for_image(image: &Image, requested: &[Platform]) -> Vec<Platform> {
        if image.settings.release {
            requested.to_vec()
        } else {
            vec![Platform::Amd64]
        }
    }
}

/// `--platform linux/amd64,linux/arm64`, shared by the commands that build.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct PlatformArgs {
    /// Platforms to build for, comma-separated: linux/amd64, linux/arm64 (default: linux/amd64 locally, both under
    /// CI).
    #[arg(long = "platform", value_name = "PLATFORM", value_delimiter = ',')]
    pub platforms: Vec<Platform>,
}

impl PlatformArgs {
    /// The platforms asked for, each once and in a fixed order, or the defaults.
    pub fn chosen(&self) -> Vec<Platform> {
        self.or(Platform::defaults())
    }

    /// The platforms asked for, each once and in a fixed order, or `defaults`.
    pub fn or(&self, defaults: Vec<Platform>) -> Vec<Platform> {
        if self.platforms.is_empty() {
            return defaults;
        }
        let mut platforms = self.platforms.clone();
        platforms.sort();
        platforms.dedup();
        platforms
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.docker())
    }
}

impl FromStr for Platform {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Platform> {
        match text.trim() {
            "linux/amd64" | "amd64" => Ok(Platform::Amd64),
            "linux/arm64" | "linux/arm64/v8" | "arm64" => Ok(Platform::Arm64),
            other => bail!("unknown platform `{other}`: the images are built for linux/amd64 and linux/arm64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_read_as_docker_writes_them_and_an_unknown_one_is_named() {
        assert_eq!("linux/arm64/v8".parse::<Platform>().unwrap(), Platform::Arm64);
        assert_eq!("amd64".parse::<Platform>().unwrap().to_string(), "linux/amd64");
        let error = "linux/s390x".parse::<Platform>().unwrap_err().to_string();
        assert!(error.contains("linux/s390x") && error.contains("linux/arm64"), "{error}");
        assert_eq!(Platform::Arm64.tag_suffix(), "-arm64");
        assert_eq!(Platform::Amd64.tag_suffix(), "");
        let both = PlatformArgs { platforms: vec![Platform::Arm64, Platform::Amd64, Platform::Arm64] };
        assert_eq!(both.chosen(), Platform::ALL);
    }
}

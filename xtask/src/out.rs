//! Where every artifact of a run goes under `out/`: one function per artifact, so that no stage spells a path.

use std::path::PathBuf;

pub struct Out {
    dir: PathBuf,
}

impl Out {
    pub fn new(dir: PathBuf) -> Self {
        Out { dir }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// What `build` recorded about an image: `out/build/<image>.json`.
    pub fn build_record(&self, image: &str) -> PathBuf {
        self.dir.join("build").join(format!("{image}.json"))
    }

    /// The build context staged for an image's Dockerfile: `out/context/<image>/`.
    pub fn build_context(&self, image: &str) -> PathBuf {
        self.dir.join("context").join(image)
    }

    /// The wheels of an image's locks, for its build context: `out/wheels/<image>/`.
    pub fn wheels(&self, image: &str) -> PathBuf {
        self.dir.join("wheels").join(image)
    }

    /// The image as an OCI image layout, written by `build` and read by every scanner and by `release`:
    /// `out/images/<image>/oci/`.
    pub fn image_layout(&self, image: &str) -> PathBuf {
        self.dir.join("images").join(image).join("oci")
    }

    /// The SLSA provenance `build` writes for an image: `out/images/<image>/provenance.json`.
    pub fn provenance(&self, image: &str) -> PathBuf {
        self.dir.join("images").join(image).join("provenance.json")
    }

    /// The OpenVEX document `release` writes from an image's allow-list entries: `out/images/<image>/vex.json`.
    pub fn vex(&self, image: &str) -> PathBuf {
        self.dir.join("images").join(image).join("vex.json")
    }

    /// The scan reports and SBOM of an image: `out/scan/<image>/`.
    pub fn scan_dir(&self, image: &str) -> PathBuf {
        self.dir.join("scan").join(image)
    }

    pub fn trivy_report(&self, image: &str) -> PathBuf {
        self.scan_dir(image).join("trivy.json")
    }

    pub fn trivy_sarif(&self, image: &str) -> PathBuf {
        self.scan_dir(image).join("trivy.sarif")
    }

    /// The CycloneDX SBOM syft writes, and `release` attaches.
    pub fn sbom(&self, image: &str) -> PathBuf {
        self.scan_dir(image).join("sbom.cdx.json")
    }

    /// Trivy's cache directory, holding the database built from `advisories/`.
    pub fn trivy_cache(&self) -> PathBuf {
        self.dir.join("trivy")
    }

    /// The root filesystem tarball mmdebstrap writes before it is imported.
    pub fn bootstrap_tarball(&self, suite: &str) -> PathBuf {
        self.dir.join("bootstrap").join(format!("debian-{suite}.tar"))
    }

    /// The public key `release` derives from the signing key.
    pub fn release_public_key(&self) -> PathBuf {
        self.dir.join("release").join("cosign.pub")
    }

    /// The record of the last full `cargo xtask test` that passed: `out/test/passed.json`.
    pub fn test_record(&self) -> PathBuf {
        self.dir.join("test").join("passed.json")
    }

    /// Scratch space of the benchmarks (generated baseline contexts, the quick page).
    pub fn bench_dir(&self) -> PathBuf {
        self.dir.join("bench")
    }
}

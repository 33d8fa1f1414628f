//! Where every artifact of a run goes under `out/`: one function per artifact, so that no stage spells a path.

use std::path::PathBuf;

use crate::platform::Platform;

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

    /// What `build` recorded about an image for one platform: `out/build/<image>/<arch>.json`.
    pub fn build_record(&self, image: &str, platform: Platform) -> PathBuf {
        self.dir.join("build").join(image).join(format!("{}.json", platform.arch()))
    }

    /// The build context staged for an image's Dockerfile: `out/context/<image>/<arch>/`.
    pub fn build_context(&self, image: &str, platform: Platform) -> PathBuf {
        self.dir.join("context").join(image).join(platform.arch())
    }

    /// The wheels of an image's locks for one platform, for its build context: `out/wheels/<image>/<arch>/`.
    pub fn wheels(&self, image: &str, platform: Platform) -> PathBuf {
        self.dir.join("wheels").join(image).join(platform.arch())
    }

    /// One platform's image as an OCI image layout, written by `build` and read by every scanner:
    /// `out/images/<image>/<arch>/oci/`.
    pub fn platform_layout(&self, image: &str, platform: Platform) -> PathBuf {
        self.dir.join("images").join(image).join(platform.arch()).join("oci")
    }

    /// The image index of an image's platforms as an OCI image layout, which `release` pushes:
    /// `out/images/<image>/oci/`.
    pub fn index_layout(&self, image: &str) -> PathBuf {
        self.dir.join("images").join(image).join("oci")
    }

    /// The SLSA provenance `build` writes for an image's platform: `out/images/<image>/<arch>/provenance.json`.
    pub fn provenance(&self, image: &str, platform: Platform) -> PathBuf {
        self.dir.join("images").join(image).join(platform.arch()).join("provenance.json")
    }

    /// The SLSA provenance `release` writes for an image index: `out/images/<image>/provenance.json`.
    pub fn index_provenance(&self, image: &str) -> PathBuf {
        self.dir.join("images").join(image).join("provenance.json")
    }

    /// The SBOM `release` writes for an image index (its platform images by digest): `out/images/<image>/sbom.cdx.json`.
    pub fn index_sbom(&self, image: &str) -> PathBuf {
        self.dir.join("images").join(image).join("sbom.cdx.json")
    }

    /// The OpenVEX document `release` writes from an image's allow-list entries for one platform's digest:
    /// `out/images/<image>/<arch>/vex.json`.
    pub fn vex(&self, image: &str, platform: Platform) -> PathBuf {
        self.dir.join("images").join(image).join(platform.arch()).join("vex.json")
    }

    /// The scan reports and SBOM of an image, or of one platform's image (`<image>/<arch>`): `out/scan/<name>/`.
    pub fn scan_dir(&self, name: &str) -> PathBuf {
        self.dir.join("scan").join(name)
    }

    pub fn trivy_report(&self, name: &str) -> PathBuf {
        self.scan_dir(name).join("trivy.json")
    }

    pub fn trivy_sarif(&self, name: &str) -> PathBuf {
        self.scan_dir(name).join("trivy.sarif")
    }

    /// The CycloneDX SBOM syft writes, and `release` attaches.
    pub fn sbom(&self, name: &str) -> PathBuf {
        self.scan_dir(name).join("sbom.cdx.json")
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

    /// The Namespace `deploy --kubernetes` rendered (its Pod Security and policy-controller labels):
    /// `out/kubernetes/namespace.yaml`.
    pub fn kubernetes_namespace(&self) -> PathBuf {
        self.dir.join("kubernetes").join("namespace.yaml")
    }

    /// The objects in the namespace `deploy --kubernetes` rendered with the verified digests (no secret in them):
    /// `out/kubernetes/manifests.yaml`.
    pub fn kubernetes_manifests(&self) -> PathBuf {
        self.dir.join("kubernetes").join("manifests.yaml")
    }

    /// The admission policy `deploy --kubernetes` rendered from its trust flags: `out/kubernetes/cluster-image-policy.yaml`.
    pub fn kubernetes_policy(&self) -> PathBuf {
        self.dir.join("kubernetes").join("cluster-image-policy.yaml")
    }

    /// The record of the last full `cargo xtask test` that passed: `out/test/passed.json`.
    pub fn test_record(&self) -> PathBuf {
        self.dir.join("test").join("passed.json")
    }

    /// The Kubernetes test cluster's certificates, configuration, state and logs (xtask/tests/common/kube.rs):
    /// `out/kube/`.
    pub fn kube(&self) -> PathBuf {
        self.dir.join("kube")
    }

    /// Scratch space of the benchmarks (generated baseline contexts, the quick page).
    pub fn bench_dir(&self) -> PathBuf {
        self.dir.join("bench")
    }
}

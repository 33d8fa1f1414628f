//! Throwaway cosign key pairs.

use std::path::{Path, PathBuf};

use xshell::cmd;

pub struct KeyPair {
    pub private: PathBuf,
    pub public: PathBuf,
    pub password: String,
}

/// `cosign generate-key-pair` into `folder`, encrypted with `password`.
pub fn generate_key_pair(cosign: &Path, folder: &Path, password: &str) -> KeyPair {
    std::fs::create_dir_all(folder).unwrap();
    let sh = xshell::Shell::new().unwrap();
    let prefix = folder.join("cosign");
    cmd!(sh, "{cosign} generate-key-pair --output-key-prefix {prefix}")
        .env("COSIGN_PASSWORD", password)
        .stdin("")
        .quiet()
        .ignore_stdout()
        .run()
        .expect("cosign generate-key-pair");
    KeyPair { private: folder.join("cosign.key"), public: folder.join("cosign.pub"), password: password.to_owned() }
}

//! A throwaway distribution registry on 127.0.0.1 for the tests that push, sign and verify.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use xshell::cmd;
use xtask::context::Context;
use xtask::pinned_tools::{self, Tool};

/// A distribution registry on 127.0.0.1 with its storage in a temporary folder (or one the caller names), stopped
/// (and the temporary folder deleted) on drop.
pub struct LocalRegistry {
    process: Child,
    pub address: String,
    /// Its configuration, log and data.
    folder: PathBuf,
    /// The temporary folder `folder` is, when the registry made its own.
    _temporary: Option<tempfile::TempDir>,
}

/// The one account of a registry started with [`LocalRegistry::start_with_login`].
pub const LOGIN_USER: &str = "xtask";
pub const LOGIN_PASSWORD: &str = "xtask-test-password";
/// `LOGIN_PASSWORD` hashed with bcrypt (cost 4), the only hash distribution's htpasswd accepts.
const LOGIN_HASH: &str = "$2a$04$jHF7NCx0hV1GRm7OPVEtqONpxg1x/uvcGMc6LxOw5xXrkJpEq6Liy";

impl LocalRegistry {
    pub fn start(ctx: &Context) -> Result<Self> {
        Self::start_with(ctx, false, None)
    }

    /// A registry that wants HTTP basic authentication as [`LOGIN_USER`] with [`LOGIN_PASSWORD`].
    pub fn start_with_login(ctx: &Context) -> Result<Self> {
        Self::start_with(ctx, true, None)
    }

    /// A registry keeping everything in `folder`, which outlives it: for a caller that removes what a killed run
    /// left (with [`LocalRegistry::pid`]).
    pub fn start_in(ctx: &Context, folder: &Path) -> Result<Self> {
        Self::start_with(ctx, false, Some(folder))
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    fn start_with(ctx: &Context, login: bool, folder: Option<&Path>) -> Result<Self> {
        let binary = pinned_tools::ensure(ctx, Tool::Registry)?;
        // The free port can be taken between probing and binding; another try picks another one.
        let mut last_error = None;
        for _ in 0..3 {
            match Self::start_on_free_port(&binary, login, folder) {
                Ok(registry) => return Ok(registry),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("three attempts were made"))
    }

    fn start_on_free_port(binary: &Path, login: bool, folder: Option<&Path>) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address = format!("127.0.0.1:{port}");
        let (folder, temporary) = match folder {
            Some(folder) => {
                std::fs::create_dir_all(folder)?;
                (folder.to_owned(), None)
            }
            None => {
                let temporary = tempfile::Builder::new().prefix("xtask-registry-").tempdir()?;
                (temporary.path().to_owned(), Some(temporary))
            }
        };
        let config = folder.join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
            folder.join("data").display()
        );
        if login {
            let htpasswd = folder.join("htpasswd");
            std::fs::write(&htpasswd, format!("{LOGIN_USER}:{LOGIN_HASH}\n"))?;
            text.push_str(&format!("auth:\n  htpasswd:\n    realm: xtask-test\n    path: {}\n", htpasswd.display()));
        }
        std::fs::write(&config, text)?;
        let log = std::fs::File::create(folder.join("registry.log"))?;
        let sh = xshell::Shell::new()?;
        let mut command = std::process::Command::from(cmd!(sh, "{binary} serve {config}"));
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let process = command.spawn().with_context(|| format!("starting the registry {}", binary.display()))?;
        let mut registry = Self { process, address, folder, _temporary: temporary };
        registry.wait_until_ready()?;
        Ok(registry)
    }

    /// Where the registry keeps blobs and manifests, for tests that inspect everything that was pushed.
    pub fn storage(&self) -> PathBuf {
        self.folder.join("data")
    }

    /// What the registry serves for `repository` at a tag or digest, asked over plain HTTP: the
    /// Docker-Content-Digest it reports and the bytes.
    pub fn manifest(&self, repository: &str, reference: &str) -> Result<(String, Vec<u8>)> {
        let url = format!("http://{}/v2/{repository}/manifests/{reference}", self.address);
        let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let response = client.get(&url).header("Accept", accept).send()?;
        if !response.status().is_success() {
            bail!("GET {url}: HTTP {}", response.status());
        }
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .with_context(|| format!("GET {url}: no Docker-Content-Digest"))?;
        Ok((digest, response.bytes()?.to_vec()))
    }

    /// Every file the registry stores, relative to its storage: blobs, manifests, tag links.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        let root = self.storage();
        let mut files = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    files.push(path.strip_prefix(&root).unwrap().to_owned());
                }
            }
        }
        files.sort();
        files
    }

    fn wait_until_ready(&mut self) -> Result<()> {
        let url = format!("http://{}/v2/", self.address);
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build()?;
        loop {
            if let Some(status) = self.process.try_wait()? {
                bail!("the registry exited ({status}) before answering: {}", self.log());
            }
            // 401 is the answer of a registry that wants a login: it is up.
            let answered = client.get(&url).send().is_ok_and(|response| {
                response.status().is_success() || response.status() == reqwest::StatusCode::UNAUTHORIZED
            });
            if answered {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the registry did not answer on {} within 60 s: {}", self.address, self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.folder.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

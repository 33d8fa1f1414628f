//! A throwaway distribution registry on 127.0.0.1 for the tests that push, sign and verify.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use xshell::cmd;
use xtask::context::Context;
use xtask::pinned_tools::{self, Tool};

/// A distribution registry on 127.0.0.1 with its storage in a temporary folder, stopped and deleted on drop.
pub struct LocalRegistry {
    process: Child,
    pub address: String,
    storage: tempfile::TempDir,
}

impl LocalRegistry {
    pub fn start(ctx: &Context) -> Result<Self> {
        let binary = pinned_tools::ensure(ctx, Tool::Registry)?;
        // The free port can be taken between probing and binding; another try picks another one.
        let mut last_error = None;
        for _ in 0..3 {
            match Self::start_on_free_port(&binary) {
                Ok(registry) => return Ok(registry),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("three attempts were made"))
    }

    fn start_on_free_port(binary: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address = format!("127.0.0.1:{port}");
        let storage = tempfile::Builder::new().prefix("xtask-registry-").tempdir()?;
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
                storage.path().join("data").display()
            ),
        )?;
        let log = std::fs::File::create(storage.path().join("registry.log"))?;
        let sh = xshell::Shell::new()?;
        let mut command = std::process::Command::from(cmd!(sh, "{binary} serve {config}"));
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let process = command.spawn().with_context(|| format!("starting the registry {}", binary.display()))?;
        let mut registry = Self { process, address, storage };
        registry.wait_until_ready()?;
        Ok(registry)
    }

    /// Where the registry keeps blobs and manifests, for tests that inspect everything that was pushed.
    pub fn storage(&self) -> PathBuf {
        self.storage.path().join("data")
    }

    fn wait_until_ready(&mut self) -> Result<()> {
        let url = format!("http://{}/v2/", self.address);
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build()?;
        loop {
            if let Some(status) = self.process.try_wait()? {
                bail!("the registry exited ({status}) before answering: {}", self.log());
            }
            if client.get(&url).send().is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the registry did not answer on {} within 60 s: {}", self.address, self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.storage.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

//! The browser suite: tests/browser/ drives each app's pages in headless Chromium against the built images.
//!
//! Every deliverable image is started as the image tests start it (hardened, with its companions) and waited
//! for until healthy; the pytest suite then gets each app's address as `<IMAGE>_URL` (`FAKE_SHOP_URL`) and writes
//! its screenshots under `out/browser/<image>/`. Images that are not built (or no Docker engine) skip the suite
//! with the reason outside CI and fail it under CI; the suite itself does the same for a missing Chromium.

use anyhow::{Context as _, Result};

use super::Runner;
use crate::built::Built;
use crate::context::Context;
use crate::images::Image;
use crate::stack::{self, Options, Stack};

/// The suite's folder, relative to the workspace root.
const SUITE: &str = "tests/browser";
/// A test suite installs its test tools only.
const LOCKS: [&str; 1] = ["requirements-dev.lock"];

/// The suite's runner, or `None` when it is skipped (outside CI, without built images).
pub(super) fn run(ctx: &Context) -> Option<Runner> {
    let built = match built_apps(ctx) {
        Ok(built) => built,
        Err(error) if !Context::in_ci() => {
            eprintln!("xtask: browser tests will be skipped: {error:#}");
            return None;
        }
        Err(error) => return Some(Runner::died("browser: built images", format!("{error:#}"))),
    };
    let apps = match start_apps(ctx, &built) {
        Ok(started) => started,
        Err(error) => {
            eprintln!("xtask: browser tests: {error:#}");
            return Some(Runner::died("browser: start the apps", format!("{error:#}")));
        }
    };
    let screenshots = ctx.out.dir().join("browser");
    let mut env = apps.urls.clone();
    env.push(("BROWSER_SCREENSHOTS".to_owned(), screenshots.display().to_string()));
    let runner = super::run_pytest(ctx, &ctx.root.join(SUITE), &LOCKS, &env);
    eprintln!("xtask: browser screenshots in {}", screenshots.display());
    // Only now, with pytest done, may the containers go.
    drop(apps);
    Some(runner)
}

/// Every deliverable image with its build at this revision.
fn built_apps(ctx: &Context) -> Result<Vec<(&Image, Built)>> {
    ctx.engine()?;
    ctx.select(&[])?.into_iter().map(|image| Ok((image, Built::current(ctx, &image.name)?))).collect()
}

/// The apps, up and healthy. Dropping this removes their containers.
struct RunningApps {
    _stacks: Vec<Stack>,
    /// `<IMAGE>_URL` and the app's address, for each app: what points the suite at them.
    urls: Vec<(String, String)>,
}

/// Starts every app, then waits for each to be healthy (so that their start-ups overlap).
fn start_apps(ctx: &Context, built: &[(&Image, Built)]) -> Result<RunningApps> {
    stack::sweep(ctx)?;
    let mut stacks = Vec::new();
    for (image, build) in built {
        let running = stack::start(ctx, image, &build.reference, &Options::default())
            .with_context(|| format!("starting {}", build.reference))?;
        stacks.push(running);
    }
    let mut urls = Vec::new();
    for ((image, build), running) in built.iter().zip(&stacks) {
        let elapsed = running.wait_healthy(image.health()?).with_context(|| format!("waiting for {}", image.name))?;
        eprintln!("xtask: {} healthy after {:.2}s", build.reference, elapsed.as_secs_f64());
        urls.push((url_variable(&image.name), running.base_url()?));
    }
    Ok(RunningApps { _stacks: stacks, urls })
}

/// The variable that holds an app's address: `fake-shop` → `FAKE_SHOP_URL` (tests/browser/conftest.py reads it).
fn url_variable(image: &str) -> String {
    format!("{}_URL", image.to_uppercase().replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::url_variable;

    #[test]
    fn each_app_address_is_named_after_its_image() {
        assert_eq!(url_variable("fake-shop"), "FAKE_SHOP_URL");
        assert_eq!(url_variable("giropops-senhas"), "GIROPOPS_SENHAS_URL");
    }
}

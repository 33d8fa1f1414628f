//! The GitHub Actions setup (`.github/`: the workflows, the composite action, dependabot.yml) passes actionlint and
//! zizmor, both pinned, and keeps the rules neither checks: every action pinned by commit with its version beside it,
//! and no cache in a job that publishes.

mod common;

use std::path::{Path, PathBuf};

use xshell::cmd;
use xtask::context::Context;

use common::require;
use xtask::pinned_tools::{self, Tool};

/// The YAML files under `.github/`, sorted.
fn github_yaml(ctx: &Context) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "yml" || ext == "yaml") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&ctx.root.join(".github"), &mut found);
    found.sort();
    found
}

fn workflows(ctx: &Context) -> Vec<PathBuf> {
    let dir = ctx.root.join(".github/workflows");
    github_yaml(ctx).into_iter().filter(|path| path.parent() == Some(dir.as_path())).collect()
}

#[test]
fn workflows_pass_actionlint() {
    let ctx = Context::discover().unwrap();
    let Some(actionlint) = require("actionlint", pinned_tools::ensure(&ctx, Tool::Actionlint)) else { return };
    let workflows = workflows(&ctx);
    assert!(workflows.len() >= 2, "ci and rescan workflows: {workflows:?}");
    // actionlint reads workflows only; it checks each call of the composite action against the action's inputs.
    let sh = &ctx.sh;
    cmd!(sh, "{actionlint} {workflows...}").run().expect("actionlint found problems (listed above)");
}

#[test]
fn github_passes_zizmor() {
    let ctx = Context::discover().unwrap();
    let Some(zizmor) = require("zizmor", pinned_tools::ensure(&ctx, Tool::Zizmor)) else { return };
    let sh = &ctx.sh;
    // Offline and without a token: the audits that ask GitHub's API are left out, the result depends on the tree only.
    // Exit codes: 0 nothing found, 11-14 the highest severity found, anything else a failure to run.
    let output = cmd!(sh, "{zizmor} --offline --strict-collection --no-progress .github")
        .env_remove("GH_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .env_remove("ZIZMOR_GITHUB_TOKEN")
        .ignore_status()
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{stderr}");
    assert!(output.status.success(), "zizmor found problems (listed above; {})", output.status);
    for audited in github_yaml(&ctx) {
        let relative = audited.strip_prefix(&ctx.root).unwrap().display().to_string();
        assert!(stderr.contains(&format!("completed {relative}")), "zizmor did not audit {relative}");
    }
}

#[test]
fn the_zizmor_lock_pins_the_version_requirements_in_names() {
    let ctx = Context::discover().unwrap();
    let pin = |file: &str| {
        let text = std::fs::read_to_string(ctx.root.join("tools/zizmor").join(file)).unwrap();
        let line = text.lines().find(|line| line.starts_with("zizmor==")).unwrap_or_else(|| panic!("no pin in {file}"));
        line.trim_end_matches(" \\").trim().to_owned()
    };
    assert_eq!(
        pin("requirements.lock"),
        pin("requirements.in"),
        "regenerate tools/zizmor/requirements.lock from requirements.in (the command is at the top of the lock)"
    );
    let pinned = pinned_tools::version(&ctx, Tool::Zizmor).unwrap();
    assert_eq!(pin("requirements.lock"), format!("zizmor=={pinned}"), "tools/pins.toml names the locked version");
}

#[test]
fn every_action_is_pinned_by_commit_with_its_version_beside_it() {
    let ctx = Context::discover().unwrap();
    let mut problems = Vec::new();
    for path in github_yaml(&ctx) {
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let Some(uses) = line.trim_start().trim_start_matches("- ").strip_prefix("uses:") else { continue };
            let uses = uses.trim();
            if uses.starts_with("./") || uses.starts_with("$/") {
                continue;
            }
            // owner/repo[/path]@<40 hex> # <version>
            let pinned =
                uses.split_once('@').and_then(|(_, rest)| rest.split_once(" # ")).is_some_and(|(sha, version)| {
                    sha.len() == 40
                        && sha.bytes().all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase())
                        && !version.trim().is_empty()
                });
            if !pinned {
                problems.push(format!("{}:{}: {uses}", path.display(), number + 1));
            }
        }
    }
    assert!(problems.is_empty(), "pin these by full commit SHA with `# vX.Y.Z` after it:\n{}", problems.join("\n"));
}

/// The jobs of a workflow: each job's id and its lines (a job is a two-space key under the top-level `jobs:`).
fn jobs(workflow: &str) -> Vec<(String, String)> {
    let mut jobs: Vec<(String, String)> = Vec::new();
    let mut in_jobs = false;
    for line in workflow.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.trim().is_empty() {
            in_jobs = line.trim_end() == "jobs:";
        } else if in_jobs {
            let key = line.strip_prefix("  ").and_then(|rest| rest.strip_suffix(':'));
            match (key, jobs.last_mut()) {
                (Some(id), _) if !id.starts_with([' ', '#']) => jobs.push((id.to_owned(), String::new())),
                (_, Some((_, body))) => {
                    body.push_str(line);
                    body.push('\n');
                }
                (_, None) => {}
            }
        }
    }
    jobs
}

#[test]
fn no_cache_reaches_a_job_that_publishes() {
    // zizmor's cache-poisoning audit sees the cache-aware steps written in a workflow, not those inside the composite
    // setup action: this checks what it cannot. A job that can push, sign or write publishes.
    let ctx = Context::discover().unwrap();
    let publishing = ["packages: write", "id-token: write", "contents: write", "security-events: write"];
    let caching = [
        "cache: \"true\"",
        "actions/cache",
        "Swatinem/rust-cache",
        "actions/setup-go",
        "actions/setup-python",
        "docker/setup-buildx-action",
        "crazy-max/ghaction-github-runtime",
        "XTASK_BUILDX_CACHE",
    ];
    let mut publishers = Vec::new();
    for path in workflows(&ctx) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for (id, body) in jobs(&std::fs::read_to_string(&path).unwrap()) {
            if publishing.iter().any(|grant| body.contains(grant)) {
                if let Some(cache) = caching.iter().find(|cache| body.contains(*cache)) {
                    panic!("{name} job {id} publishes and has `{cache}`: a cache must not reach a publishing job");
                }
                publishers.push(format!("{name} {id}"));
            }
        }
    }
    assert!(publishers.contains(&"ci.yml release".to_owned()), "the release job was not found: {publishers:?}");
    // The composite action's caches stay off unless a job asks for them.
    let action = std::fs::read_to_string(ctx.root.join(".github/actions/setup/action.yml")).unwrap();
    let cache_input = action.split("\n  cache:\n").nth(1).expect("the setup action has a `cache` input");
    let default = cache_input.lines().find_map(|line| line.trim().strip_prefix("default:"));
    assert_eq!(default.map(str::trim), Some("\"false\""), "the setup action's `cache` input must default to \"false\"");
}

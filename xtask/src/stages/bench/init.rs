//! The launcher against tini: binary size, peak memory while supervising, start-up overhead.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use xshell::{cmd, Shell};

use super::report::{Figure, Goal, Row, Section, Target, Unit};
use super::Bench;

pub const TITLE: &str = "Launcher against tini";

/// Debian's static tini (package `tini`).
const TINI: &str = "/usr/bin/tini-static";
const TRIVIAL_CHILD: &str = "/bin/true";
const MEMORY_TARGET: (f64, &str) = (2.0 * 1024.0 * 1024.0, "≤ 2 MiB");
/// Two idle services, the smallest config that exercises ordering and supervision of several children.
const TWO_SERVICES: &str = r#"
grace_period = "5s"

[[service]]
name = "first"
command = ["sleep", "600"]

[[service]]
name = "second"
after = ["first"]
command = ["sleep", "600"]
"#;

pub fn measure(bench: &Bench) -> Result<Section> {
    let (ctx, plan) = (bench.ctx, &bench.plan);
    super::require_program(TINI, "tini")?;
    let launcher = crate::static_launcher::build(ctx, crate::platform::Platform::Amd64)?;
    let launcher = launcher.to_str().context("launcher path is not UTF-8")?.to_owned();
    let mut section = Section::new(
        TITLE,
        "the static launcher (`cargo xtask launcher`), `launcher -- CMD`",
        "Debian's static tini, `tini-static -s -- CMD` (-s: subreaper, as neither is PID 1 here)",
        "Run on the host, not in a container. Peak RSS is VmHWM of /proc/<pid>/status once the children \
         run. Start-up overhead: wall time of spawning and waiting for `/bin/true` through each, minus the \
         median of exec'ing `/bin/true` directly; the three interleave in rotating order.",
    );

    let size = |path: &str| -> Result<Option<Figure>> {
        Ok(Some(Figure::single(std::fs::metadata(path).with_context(|| format!("reading {path}"))?.len() as f64)))
    };
    section.rows.push(
        Row::new("binary size", Unit::BinaryBytes, size(&launcher)?, size(TINI)?)
            .with_target(Target::new("≤ 1 MiB", &[Goal::AtMost(1024.0 * 1024.0)])),
    );

    let sh = &ctx.sh;
    let one_child = |program: &str, args: &[&str]| supervising_peak_rss(sh, program, args, "sleep", 1);
    let mut launcher_rss = Vec::new();
    let mut tini_rss = Vec::new();
    for round in 0..plan.rounds {
        let launcher_run = || one_child(&launcher, &["--", "sleep", "600"]);
        let tini_run = || one_child(TINI, &["-s", "--", "sleep", "600"]);
        if round % 2 == 0 {
            launcher_rss.push(launcher_run()?);
            tini_rss.push(tini_run()?);
        } else {
            tini_rss.push(tini_run()?);
            launcher_rss.push(launcher_run()?);
        }
    }
    section.rows.push(
        Row::new("peak RSS supervising one child", Unit::BinaryBytes, Figure::of(&launcher_rss), Figure::of(&tini_rss))
            .with_target(Target::new(MEMORY_TARGET.1, &[Goal::AtMost(MEMORY_TARGET.0)])),
    );

    let config = super::TempFile::with_contents("toml", TWO_SERVICES)?;
    let config_path = config.path().to_str().context("temporary path is not UTF-8")?.to_owned();
    let two_services: Vec<f64> = (0..plan.rounds)
        .map(|_| supervising_peak_rss(sh, &launcher, &["--config", &config_path], "sleep", 2))
        .collect::<Result<_>>()?;
    section.rows.push(
        Row::new("peak RSS supervising two services (config file)", Unit::BinaryBytes, Figure::of(&two_services), None)
            .with_target(Target::new(MEMORY_TARGET.1, &[Goal::AtMost(MEMORY_TARGET.0)])),
    );

    let (direct, via_launcher, via_tini) = startup_times(sh, &launcher, plan.startup_runs)?;
    let direct_median = super::report::median(&direct).context("no start-up samples")?;
    let overhead = |samples: &[f64]| {
        Figure::of(samples).map(|figure| Figure { value: figure.value - direct_median, samples: figure.samples })
    };
    section.rows.push(
        Row::new("start-up overhead over a direct exec", Unit::Seconds, overhead(&via_launcher), overhead(&via_tini))
            .with_target(Target::new(
                "≤ 5 ms and no worse than tini",
                &[Goal::AtMost(0.005), Goal::NoWorseThanBaseline],
            )),
    );
    section.notes.push(format!(
        "Direct exec of {TRIVIAL_CHILD}: median {} over {} runs; through the launcher {}, through tini {}.",
        Unit::Seconds.format(direct_median),
        direct.len(),
        Unit::Seconds.format(super::report::median(&via_launcher).unwrap_or(f64::NAN)),
        Unit::Seconds.format(super::report::median(&via_tini).unwrap_or(f64::NAN)),
    ));
    Ok(section)
}

/// Starts `program args`, waits until it has `children` children named `child_name`, reads its peak
/// RSS, then stops it with SIGTERM as a container engine would.
fn supervising_peak_rss(sh: &Shell, program: &str, args: &[&str], child_name: &str, children: usize) -> Result<f64> {
    let mut supervisor = silent(sh, program, args).spawn().with_context(|| format!("starting {program}"))?;
    let outcome = (|| {
        let pid = supervisor.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        while children_named(pid, child_name).len() < children {
            if Instant::now() > deadline {
                bail!("{program} did not start {children} `{child_name}` children within 20 s");
            }
            if let Some(status) = supervisor.try_wait()? {
                bail!("{program} exited early ({status})");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        parse_vm_hwm_bytes(&status).with_context(|| format!("no VmHWM in /proc/{pid}/status"))
    })();
    stop(sh, &mut supervisor, program)?;
    Ok(outcome? as f64)
}

/// `program args` with no input and its output discarded, built as every command is.
fn silent(sh: &Shell, program: &str, args: &[&str]) -> Command {
    let mut command = Command::from(cmd!(sh, "{program} {args...}"));
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    command
}

/// SIGTERM, then waits for the supervisor (which stops its children); SIGKILL after 15 s.
fn stop(sh: &Shell, child: &mut Child, program: &str) -> Result<()> {
    let pid = child.id().to_string();
    let _ = cmd!(sh, "kill -TERM {pid}").quiet().run();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let leftovers = children_named(child.id(), "sleep");
            child.kill()?;
            child.wait()?;
            for (orphan, _) in leftovers {
                let orphan = orphan.to_string();
                let _ = cmd!(sh, "kill -KILL {orphan}").quiet().run();
            }
            bail!("{program} did not stop within 15 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Wall times of `/bin/true` run directly, through the launcher and through tini, interleaved.
fn startup_times(sh: &Shell, launcher: &str, runs: usize) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let variants: [(&str, Vec<&str>); 3] =
        [(TRIVIAL_CHILD, vec![]), (launcher, vec!["--", TRIVIAL_CHILD]), (TINI, vec!["-s", "--", TRIVIAL_CHILD])];
    let mut samples: [Vec<f64>; 3] = Default::default();
    for run in 0..runs {
        for offset in 0..variants.len() {
            let index = (run + offset) % variants.len();
            let (program, args) = &variants[index];
            let mut command = silent(sh, program, args);
            let started = Instant::now();
            let status = command.status().with_context(|| format!("running {program}"))?;
            samples[index].push(started.elapsed().as_secs_f64());
            if !status.success() {
                bail!("`{program} {}` failed ({status})", args.join(" "));
            }
        }
    }
    let [direct, via_launcher, via_tini] = samples;
    Ok((direct, via_launcher, via_tini))
}

/// Pids and names of the processes whose parent is `parent`.
fn children_named(parent: u32, name: &str) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (ppid, comm) = parse_stat(&stat)?;
            (ppid == parent && comm == name).then_some((pid, comm))
        })
        .collect()
}

/// The parent pid and command name from `/proc/<pid>/stat` (the name may hold spaces and parentheses).
fn parse_stat(stat: &str) -> Option<(u32, String)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    Some((rest.next()?.parse().ok()?, comm))
}

/// `VmHWM:      1234 kB` in bytes.
fn parse_vm_hwm_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_parent_and_name() {
        assert_eq!(parse_stat("1234 (sleep) S 1200 1234 1200 0 -1"), Some((1200, "sleep".to_owned())));
        assert_eq!(parse_stat("77 (odd) name) R 5 77 5"), Some((5, "odd) name".to_owned())));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn peak_rss_is_read_in_bytes() {
        let status = "Name:\tlauncher\nVmPeak:\t    1000 kB\nVmHWM:\t     812 kB\nVmRSS:\t     800 kB\n";
        assert_eq!(parse_vm_hwm_bytes(status), Some(812 * 1024));
        assert_eq!(parse_vm_hwm_bytes("Name:\tx\n"), None);
    }

    #[test]
    fn children_are_found_by_parent_and_name() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let me = std::process::id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut found = Vec::new();
        while found.is_empty() && Instant::now() < deadline {
            found = children_named(me, "sleep");
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.iter().any(|(pid, _)| *pid == child.id()), "{found:?}");
    }
}

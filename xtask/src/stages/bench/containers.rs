//! Time to healthy and `docker stop` time, ours against a Python entrypoint as PID 1.

use std::time::Instant;

use anyhow::{Context as _, Result};
use xshell::cmd;

use super::report::{Figure, Goal, Row, Section, Target, Unit};
use super::Bench;
use crate::context::Context;
use crate::images::{self, Image};
use crate::stack::{self, Options};

pub const TITLE: &str = "Start and stop";

/// What one start-to-stop cycle of a container measured.
struct Cycle {
    healthy_seconds: f64,
    stop_seconds: f64,
    exit_code: i64,
}

pub fn measure(bench: &Bench) -> Result<Section> {
    let (ctx, plan) = (bench.ctx, &bench.plan);
    let mut section = Section::new(
        TITLE,
        "the image as built, the launcher as PID 1",
        "the same image with the usual distroless workaround as PID 1, a Python `entrypoint.py` that \
         prepares and then runs gunicorn as a subprocess (`bench/baselines/<image>-python-entrypoint`), \
         for the images that have one",
        "Each round starts the image hardened (read-only root, no capabilities) with its companions through \
         `xtask::stack`, times from `docker run` to the first expected answer of the health endpoint, then \
         times `docker stop` (its default 10 s before SIGKILL). Ours and the baseline alternate.",
    );
    let mut floor = Vec::new();
    for image in ctx.select(&[])? {
        let health = image.health()?;
        let ours = bench.ours(&image.name)?.to_owned();
        let baseline = match &image.settings.bench.entrypoint_baseline {
            Some(folder) => {
                let context_dir = ctx.root.join("bench").join("baselines").join(folder);
                Some(bench.build_baseline(folder, &context_dir, &[("IMAGE".to_owned(), ours.clone())])?)
            }
            None => None,
        };
        let mut ours_cycles = Vec::new();
        let mut baseline_cycles = Vec::new();
        for round in 0..plan.rounds {
            floor.push(engine_floor(ctx)?);
            let mut order: Vec<(&str, &mut Vec<Cycle>)> = vec![(ours.as_str(), &mut ours_cycles)];
            if let Some(baseline) = &baseline {
                order.push((baseline.as_str(), &mut baseline_cycles));
            }
            if round % 2 == 1 {
                order.reverse();
            }
            for (reference, cycles) in order {
                let cycle = start_and_stop(ctx, image, reference, health)
                    .with_context(|| format!("round {} of {reference}", round + 1))?;
                eprintln!(
                    "bench: {reference}: healthy after {:.2}s, stopped in {:.2}s (exit code {})",
                    cycle.healthy_seconds, cycle.stop_seconds, cycle.exit_code
                );
                cycles.push(cycle);
            }
        }
        let figure =
            |cycles: &[Cycle], pick: fn(&Cycle) -> f64| Figure::of(&cycles.iter().map(pick).collect::<Vec<_>>());
        let mut healthy = Row::new(
            format!("{}: time to healthy", image.name),
            Unit::Seconds,
            figure(&ours_cycles, |cycle| cycle.healthy_seconds),
            figure(&baseline_cycles, |cycle| cycle.healthy_seconds),
        );
        if let Some(limit) = image.settings.bench.healthy_target {
            let seconds = limit.as_secs_f64();
            healthy = healthy.with_target(Target::new(&format!("≤ {seconds} s"), &[Goal::AtMost(seconds)]));
        }
        section.rows.push(healthy);
        section.rows.push(
            Row::new(
                format!("{}: docker stop", image.name),
                Unit::Seconds,
                figure(&ours_cycles, |cycle| cycle.stop_seconds),
                figure(&baseline_cycles, |cycle| cycle.stop_seconds),
            )
            .with_target(Target::new("< 1 s", &[Goal::Below(1.0)])),
        );
        section.notes.push(format!(
            "{}: exit codes after `docker stop`: ours {}{}",
            image.name,
            exit_codes(&ours_cycles),
            if baseline_cycles.is_empty() {
                String::new()
            } else {
                format!(", baseline {}", exit_codes(&baseline_cycles))
            },
        ));
    }
    section.notes.push(format!(
        "For scale, the engine's own share: `docker stop` of a bare `sleep` under `docker run --init` (tini \
         passes SIGTERM on, sleep dies at once) takes {} here (median of {}).",
        Unit::Seconds.format(super::report::median(&floor).unwrap_or(f64::NAN)),
        floor.len()
    ));
    section.notes.push(
        "Exit code 137 is the SIGKILL that `docker stop` sends after 10 s: a Python PID 1 without a \
         signal handler ignores SIGTERM (the kernel drops default-action signals to a namespace's init)."
            .to_owned(),
    );
    Ok(section)
}

fn exit_codes(cycles: &[Cycle]) -> String {
    let codes: Vec<String> = cycles.iter().map(|cycle| cycle.exit_code.to_string()).collect();
    codes.join(", ")
}

/// `docker stop` of a container that exits as soon as it gets SIGTERM: what the engine itself costs.
fn engine_floor(ctx: &Context) -> Result<f64> {
    let base = crate::debian_base::ensure_base(ctx)?;
    let label = format!("{}={}", stack::LABEL, stack::owner());
    let sh = &ctx.sh;
    let id = cmd!(sh, "docker run --detach --init --label {label} {base} sleep 600")
        .quiet()
        .read()
        .with_context(|| format!("`docker run --init {base} sleep 600` failed"))?;
    let started = Instant::now();
    let stopped = cmd!(sh, "docker stop {id}").quiet().ignore_stdout().run();
    let seconds = started.elapsed().as_secs_f64();
    let _ = cmd!(sh, "docker rm --force {id}").quiet().ignore_stdout().ignore_stderr().run();
    stopped.with_context(|| format!("`docker stop {id}` failed"))?;
    Ok(seconds)
}

fn start_and_stop(ctx: &Context, image: &Image, reference: &str, health: &images::Health) -> Result<Cycle> {
    let running = stack::start(ctx, image, reference, &Options::default())?;
    let healthy_seconds = running.wait_healthy(health)?.as_secs_f64();
    let id = running.app.id().to_owned();
    let sh = &ctx.sh;
    let started = Instant::now();
    cmd!(sh, "docker stop {id}").quiet().ignore_stdout().run().with_context(|| format!("`docker stop {id}` failed"))?;
    let stop_seconds = started.elapsed().as_secs_f64();
    let exit_code = running.app.exit_code().ok().flatten().unwrap_or(-1);
    Ok(Cycle { healthy_seconds, stop_seconds, exit_code })
}

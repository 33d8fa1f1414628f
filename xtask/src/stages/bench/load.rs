//! Throughput and latency of one endpoint: the image as configured against another way of serving the app (for
//! giropops-senhas: Flask's development server), same image, same companions, same client (wrk). The images, the
//! endpoint, the body and the baseline come from the `[bench.load]` table of each image's settings.

use anyhow::{bail, Context as _, Result};
use xshell::cmd;

use super::report::{Figure, Goal, Row, Section, Target, Unit};
use super::Bench;
use crate::images::{Image, Load};
use crate::stack::{self, Options, Stack};

pub const TITLE: &str = "Throughput";

const THREADS: u64 = 2;
const CONNECTIONS: u64 = 8;
const WARM_UP_SECONDS: u64 = 1;
const WARM_UP_REQUESTS: u64 = 2_000;

pub fn measure(bench: &Bench) -> Result<Section> {
    let ctx = bench.ctx;
    let measured: Vec<(&Image, &Load)> =
        ctx.select(&[])?.into_iter().filter_map(|image| Some((image, image.settings.bench.load.as_ref()?))).collect();
    if measured.is_empty() {
        bail!("no image has a [bench.load] table in its image.toml");
    }
    let wrk = super::require_program("wrk", "wrk")?;
    let mut section = Section::new(
        TITLE,
        "each image as it configures its app server",
        &measured
            .iter()
            .map(|(image, load)| format!("{}: {}", image.name, load.baseline_description))
            .collect::<Vec<_>>()
            .join("; "),
        &format!(
            "Client: wrk on this host, {THREADS} threads, {CONNECTIONS} connections, {} s per run and at most {} \
             requests, POSTing each image's JSON body through the container's published port on 127.0.0.1. Rounds \
             alternate ours and the baseline after a {WARM_UP_SECONDS} s warm-up of each; the figures are medians \
             over rounds, errors are summed. Errors: non-2xx/3xx answers plus socket errors.",
            bench.plan.load_seconds, bench.plan.load_max_requests
        ),
    );
    for (image, load) in measured {
        measure_image(bench, &wrk, image, load, &mut section)
            .with_context(|| format!("image {}: {} {}", image.name, "POST", load.path))?;
    }
    Ok(section)
}

fn measure_image(
    bench: &Bench,
    wrk: &std::path::Path,
    image: &Image,
    load: &Load,
    section: &mut Section,
) -> Result<()> {
    let (ctx, plan) = (bench.ctx, &bench.plan);
    let health = image.health()?;
    let ours = bench.ours(&image.name)?.to_owned();

    // The baseline's launcher config is the image's own with only the app's command changed, so that everything
    // else (an embedded Redis, say) runs exactly as in ours.
    let baseline_context = ctx.out.bench_dir().join(&load.baseline);
    std::fs::create_dir_all(&baseline_context)?;
    let own_config = std::fs::read_to_string(image.dir.join("launcher.toml"))?;
    let config = dev_server_config(&own_config, &load.baseline_command, &image.name, image.settings.port)?;
    std::fs::write(baseline_context.join("launcher.toml"), config)?;
    let baseline = bench.build_baseline(&load.baseline, &baseline_context, &[("IMAGE".to_owned(), ours.clone())])?;

    let ours_stack = stack::start(ctx, image, &ours, &Options::default())?;
    ours_stack.wait_healthy(health)?;
    let baseline_stack = stack::start(ctx, image, &baseline, &Options::default())?;
    baseline_stack.wait_healthy(health)?;

    let per_thread_limit = plan.load_max_requests.div_ceil(THREADS);
    let script = super::TempFile::with_contents("lua", &wrk_script(&load.body, per_thread_limit))?;
    let warm_up_script =
        super::TempFile::with_contents("lua", &wrk_script(&load.body, WARM_UP_REQUESTS.div_ceil(THREADS)))?;
    let sh = &ctx.sh;
    let run = |stack: &Stack, script: &super::TempFile, seconds: u64| -> Result<WrkResult> {
        let url = format!("{}{}", stack.base_url()?, load.path);
        anyhow::ensure!(url.starts_with("http://127.0.0.1:"), "refusing to load anything but 127.0.0.1: {url}");
        let (threads, connections, duration) = (THREADS.to_string(), CONNECTIONS.to_string(), format!("{seconds}s"));
        let script = script.path();
        let output =
            cmd!(sh, "{wrk} -t {threads} -c {connections} -d {duration} --timeout 5s --latency -s {script} {url}")
                .quiet()
                .ignore_status()
                .output()
                .context("running wrk")?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!("wrk failed ({}): {}{}", output.status, text, String::from_utf8_lossy(&output.stderr));
        }
        parse_wrk(&text).with_context(|| format!("reading wrk's report:\n{text}"))
    };
    for stack in [&ours_stack, &baseline_stack] {
        run(stack, &warm_up_script, WARM_UP_SECONDS)?;
    }
    let mut ours_runs = Vec::new();
    let mut baseline_runs = Vec::new();
    for round in 0..plan.rounds {
        let mut order = [(&ours_stack, &mut ours_runs, "ours"), (&baseline_stack, &mut baseline_runs, "baseline")];
        if round % 2 == 1 {
            order.reverse();
        }
        for (stack, runs, name) in order {
            let result = run(stack, &script, plan.load_seconds)?;
            eprintln!(
                "bench: {} ({name}): {:.0} req/s, p50 {}, p99 {}, {} errors",
                image.name,
                result.requests_per_second,
                Unit::Seconds.format(result.p50),
                Unit::Seconds.format(result.p99),
                result.errors()
            );
            runs.push(result);
        }
    }
    if !ours_stack.app.is_running().unwrap_or(false) || !baseline_stack.app.is_running().unwrap_or(false) {
        bail!("a container died under load\n{}\n{}", ours_stack.failure_report(), baseline_stack.failure_report());
    }

    let figure =
        |runs: &[WrkResult], pick: fn(&WrkResult) -> f64| Figure::of(&runs.iter().map(pick).collect::<Vec<_>>());
    let total_errors =
        |runs: &[WrkResult]| Some(Figure { value: runs.iter().map(|r| r.errors() as f64).sum(), samples: runs.len() });
    let name = &image.name;
    section.rows.push(
        Row::new(
            format!("{name}: requests per second"),
            Unit::RequestsPerSecond,
            figure(&ours_runs, |r| r.requests_per_second),
            figure(&baseline_runs, |r| r.requests_per_second),
        )
        .with_target(Target::new(&load.target, &[Goal::TimesBaseline(load.times_baseline)])),
    );
    section.rows.push(Row::new(
        format!("{name}: latency p50"),
        Unit::Seconds,
        figure(&ours_runs, |r| r.p50),
        figure(&baseline_runs, |r| r.p50),
    ));
    section.rows.push(Row::new(
        format!("{name}: latency p99"),
        Unit::Seconds,
        figure(&ours_runs, |r| r.p99),
        figure(&baseline_runs, |r| r.p99),
    ));
    section.rows.push(
        Row::new(
            format!("{name}: errors (all rounds)"),
            Unit::Count,
            total_errors(&ours_runs),
            total_errors(&baseline_runs),
        )
        .with_target(Target::new("0", &[Goal::AtMost(0.0)])),
    );
    let requests = |runs: &[WrkResult]| runs.iter().map(|r| r.requests).sum::<u64>();
    section.notes.push(format!(
        "{name}: POST {} with `{}`; requests answered in all rounds: ours {}, baseline {}.",
        load.path,
        load.body,
        requests(&ours_runs),
        requests(&baseline_runs)
    ));
    Ok(())
}

/// The image's launcher config with the `app` service running `command` instead, ready once it accepts connections
/// on the image's port (another server need not speak the notify protocol).
fn dev_server_config(own: &str, command: &[String], image: &str, port: u16) -> Result<String> {
    let mut config: toml::Table = toml::from_str(own).context("reading the image's launcher.toml")?;
    let services =
        config.get_mut("service").and_then(toml::Value::as_array_mut).context("launcher.toml has no [[service]]")?;
    let app = services
        .iter_mut()
        .filter_map(toml::Value::as_table_mut)
        .find(|service| service.get("name").and_then(toml::Value::as_str) == Some("app"))
        .context("launcher.toml has no service named `app`")?;
    app.insert(
        "command".to_owned(),
        toml::Value::Array(command.iter().map(|arg| toml::Value::from(arg.as_str())).collect()),
    );
    let mut ready = toml::Table::new();
    ready.insert("tcp".to_owned(), format!("127.0.0.1:{port}").into());
    ready.insert("timeout".to_owned(), "60s".into());
    app.insert("ready".to_owned(), toml::Value::Table(ready));
    Ok(format!(
        "# Written by `cargo xtask bench` from images/{image}/launcher.toml: the app served by its baseline,\n\
         # everything else unchanged.\n{}",
        toml::to_string(&config)?
    ))
}

/// A wrk script that POSTs the JSON body and stops each thread after `per_thread_limit` answers.
fn wrk_script(body: &str, per_thread_limit: u64) -> String {
    format!(
        "wrk.method = \"POST\"\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.body = '{body}'\n\
         local limit = {per_thread_limit}\n\
         local answered = 0\n\
         function response(status, headers, body)\n\
         \x20 answered = answered + 1\n\
         \x20 if answered >= limit then wrk.thread:stop() end\n\
         end\n"
    )
}

/// What one wrk run reported. Latencies in seconds.
#[derive(Debug, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    pub requests_per_second: f64,
    pub p50: f64,
    pub p99: f64,
    pub socket_errors: u64,
    pub non_success: u64,
}

impl WrkResult {
    pub fn errors(&self) -> u64 {
        self.socket_errors + self.non_success
    }
}

/// Reads wrk's report (run with `--latency`).
pub fn parse_wrk(output: &str) -> Result<WrkResult> {
    let mut requests = None;
    let mut requests_per_second = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut socket_errors = 0;
    let mut non_success = 0;
    for line in output.lines().map(str::trim) {
        if let Some(rate) = line.strip_prefix("Requests/sec:") {
            requests_per_second = Some(rate.trim().parse::<f64>().context("Requests/sec is not a number")?);
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            requests = Some(count.trim().parse::<u64>().context("the request count is not a number")?);
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_success = count.trim().parse().context("the non-2xx count is not a number")?;
        } else if let Some(kinds) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for kind in kinds.split(',') {
                let count = kind.split_whitespace().nth(1).context("unexpected socket error line")?;
                socket_errors += count.parse::<u64>().context("a socket error count is not a number")?;
            }
        } else if let Some(latency) = line.strip_prefix("50%") {
            p50 = Some(parse_duration(latency.trim())?);
        } else if let Some(latency) = line.strip_prefix("99%") {
            p99 = Some(parse_duration(latency.trim())?);
        }
    }
    Ok(WrkResult {
        requests: requests.context("no `N requests in` line")?,
        requests_per_second: requests_per_second.context("no Requests/sec line")?,
        p50: p50.context("no 50% latency line (was wrk run with --latency?)")?,
        p99: p99.context("no 99% latency line (was wrk run with --latency?)")?,
        socket_errors,
        non_success,
    })
}

/// wrk's durations: `812.00us`, `4.98ms`, `1.02s`, `1.50m`, `2.00h`.
fn parse_duration(text: &str) -> Result<f64> {
    let units = [("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];
    for (suffix, scale) in units {
        if let Some(number) = text.strip_suffix(suffix) {
            if let Ok(value) = number.parse::<f64>() {
                return Ok(value * scale);
            }
        }
    }
    bail!("`{text}` is not a wrk duration")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"tamanho": 12}"#;
    const DEV_SERVER: &[&str] = &["python", "-m", "flask", "run", "--port", "5000"];

    const REPORT: &str = "Running 3s test @ http://127.0.0.1:32768/api/gerar-senha
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.12ms    1.02ms  20.00ms   90.00%
    Req/Sec   780.00     50.00     0.90k    70.00%
  Latency Distribution
     50%  812.00us
     75%    5.50ms
     90%    6.10ms
     99%    1.20s
  4680 requests in 3.00s, 1.10MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 12
Requests/sec:   1558.25
Transfer/sec:    366.00KB
";

    #[test]
    fn reads_rate_latencies_and_errors() {
        let result = parse_wrk(REPORT).unwrap();
        assert_eq!(result.requests, 4680);
        assert_eq!(result.requests_per_second, 1558.25);
        assert!((result.p50 - 0.000812).abs() < 1e-12, "{}", result.p50);
        assert_eq!(result.p99, 1.2);
        assert_eq!(result.socket_errors, 6);
        assert_eq!(result.non_success, 12);
        assert_eq!(result.errors(), 18);
    }

    #[test]
    fn a_clean_run_has_no_errors() {
        let clean: String = REPORT
            .lines()
            .filter(|line| !line.contains("errors") && !line.contains("Non-2xx"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(parse_wrk(&clean).unwrap().errors(), 0);
    }

    #[test]
    fn a_report_without_latency_distribution_is_an_error() {
        let without: String =
            REPORT.lines().filter(|line| !line.trim_start().starts_with("50%")).map(|l| format!("{l}\n")).collect();
        assert!(parse_wrk(&without).unwrap_err().to_string().contains("--latency"));
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("250.00us").unwrap(), 250e-6);
        assert_eq!(parse_duration("4.00ms").unwrap(), 0.004);
        assert_eq!(parse_duration("2.00s").unwrap(), 2.0);
        assert_eq!(parse_duration("1.50m").unwrap(), 90.0);
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn script_posts_json_and_stops_at_the_limit() {
        let script = wrk_script(BODY, 500);
        assert!(script.contains("wrk.method = \"POST\""));
        assert!(script.contains("application/json"));
        assert!(script.contains(BODY));
        assert!(script.contains("local limit = 500"));
        assert!(script.contains("wrk.thread:stop()"));
    }

    #[test]
    fn dev_server_config_changes_only_the_app_command() {
        let own =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../images/giropops-senhas/launcher.toml"))
                .unwrap();
        let dev_server: Vec<String> = DEV_SERVER.iter().map(|arg| arg.to_string()).collect();
        let changed: toml::Table =
            toml::from_str(&dev_server_config(&own, &dev_server, "giropops-senhas", 5000).unwrap()).unwrap();
        let original: toml::Table = toml::from_str(&own).unwrap();
        let services = |config: &toml::Table| config["service"].as_array().unwrap().clone();
        let (before, after) = (services(&original), services(&changed));
        assert_eq!(before.len(), after.len());
        for (old, new) in before.iter().zip(&after) {
            if old["name"].as_str() == Some("app") {
                let command: Vec<&str> =
                    new["command"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
                assert_eq!(command, DEV_SERVER);
                assert_eq!(new["ready"]["tcp"].as_str(), Some("127.0.0.1:5000"));
            } else {
                assert_eq!(old, new, "services other than the app stay as they are");
            }
        }
        assert_eq!(original.get("grace_period"), changed.get("grace_period"));
    }

    #[test]
    fn a_config_without_an_app_service_is_an_error() {
        let error = dev_server_config("[[service]]\nname = \"redis\"\ncommand = [\"redis-server\"]\n", &[], "x", 5000)
            .unwrap_err();
        assert!(error.to_string().contains("no service named `app`"), "{error}");
    }
}

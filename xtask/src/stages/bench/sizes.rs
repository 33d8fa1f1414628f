//! Image size: ours against a one-stage build of the same app, and where our bytes go.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};
use xshell::{cmd, Shell};

use super::report::{markdown_table, Figure, Goal, Row, Section, Target, Unit};
use super::Bench;

pub const TITLE: &str = "Image size";
const TOP_DIRECTORIES: usize = 12;
const TOP_FILES: usize = 8;

pub fn measure(bench: &Bench) -> Result<Section> {
    let ctx = bench.ctx;
    let mut section = Section::new(
        TITLE,
        "the distroless image (`cargo xtask build`)",
        "a one-stage build of the same app on the same Debian base (`bench/baselines/<app>/Dockerfile`: \
         apt-get install python3 python3-venv, pip install the same requirements.lock, copy the app, run gunicorn)",
        "Uncompressed: `docker image inspect .Size`. Compressed: the gzip size (level 6) of `docker save`, \
         streamed through the encoder, which is about what a registry stores and a node pulls.",
    );
    let base = crate::debian_base::ensure_base(ctx)?;
    for image in ctx.select(&[])? {
        let ours = bench.ours(&image.name)?.to_owned();
        // The one-stage baseline of an image is the folder of its name under bench/baselines/.
        let baseline = bench.build_baseline(&image.name, &ctx.root, &[("DEBIAN_BASE".to_owned(), base.clone())])?;
        let (_, ours_size) = crate::docker::image_id_and_size(&ctx.sh, &ours)?;
        let (_, baseline_size) = crate::docker::image_id_and_size(&ctx.sh, &baseline)?;
        let mut uncompressed = Row::new(
            format!("{} uncompressed", image.name),
            Unit::Bytes,
            Some(Figure::single(ours_size as f64)),
            Some(Figure::single(baseline_size as f64)),
        );
        if let Some(megabytes) = image.settings.bench.size_target_mb {
            let target = Target::new(&format!("≤ {megabytes} MB"), &[Goal::AtMost(megabytes * 1e6)]);
            uncompressed = uncompressed.with_target(target);
        }
        section.rows.push(uncompressed);
        section.rows.push(Row::new(
            format!("{} compressed (gzip of docker save)", image.name),
            Unit::Bytes,
            Some(Figure::single(gzipped_save_size(&ctx.sh, &ours)? as f64)),
            Some(Figure::single(gzipped_save_size(&ctx.sh, &baseline)? as f64)),
        ));
        section.extra.push_str(&contributors_markdown(&ctx.sh, &image.name, &ours)?);
    }
    Ok(section)
}

/// The gzip size of `docker save`, without writing the archive anywhere.
fn gzipped_save_size(sh: &Shell, reference: &str) -> Result<u64> {
    let mut child = piped(cmd!(sh, "docker save {reference}")).spawn().context("starting `docker save`")?;
    let mut encoder = flate2::write::GzEncoder::new(ByteCounter::default(), flate2::Compression::default());
    io::copy(child.stdout.as_mut().context("docker save has no stdout")?, &mut encoder)
        .with_context(|| format!("compressing `docker save {reference}`"))?;
    let counter = encoder.finish()?;
    finish(child, &format!("docker save {reference}"))?;
    Ok(counter.0)
}

#[derive(Default)]
struct ByteCounter(u64);

impl Write for ByteCounter {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.0 += buffer.len() as u64;
        Ok(buffer.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A command whose output is read as it comes.
fn piped(command: xshell::Cmd<'_>) -> Command {
    let mut command = Command::from(command);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

fn finish(mut child: std::process::Child, what: &str) -> Result<()> {
    let mut stderr = String::new();
    if let Some(pipe) = child.stderr.as_mut() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("`{what}` failed ({status}): {}", stderr.trim());
    }
    Ok(())
}

/// Bytes of regular files per directory group, and the largest files, of the image's filesystem.
#[derive(Default, Debug)]
struct Usage {
    total: u64,
    by_group: BTreeMap<String, u64>,
    files: Vec<(String, u64)>,
}

impl Usage {
    fn add(&mut self, path: &str, size: u64) {
        self.total += size;
        *self.by_group.entry(group_of(path)).or_default() += size;
        self.files.push((format!("/{}", path.trim_start_matches("./").trim_start_matches('/')), size));
    }

    fn largest_groups(&self, count: usize) -> Vec<(&str, u64)> {
        let mut groups: Vec<(&str, u64)> = self.by_group.iter().map(|(group, size)| (group.as_str(), *size)).collect();
        groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        groups.truncate(count);
        groups
    }

    fn largest_files(&self, count: usize) -> Vec<(&str, u64)> {
        let mut files: Vec<(&str, u64)> = self.files.iter().map(|(path, size)| (path.as_str(), *size)).collect();
        files.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        files.truncate(count);
        files
    }
}

/// The directory a file is counted under: three levels deep (`/usr/lib/x86_64-linux-gnu`,
/// `/usr/lib/python3.13`), except that each installed Python package is its own group
/// (`/opt/venv/lib/python3.13/site-packages/<package>`), since those are what one can drop.
fn group_of(path: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches("./").trim_start_matches('/').split('/').collect();
    let directories = &parts[..parts.len().saturating_sub(1)];
    let depth = match directories.iter().position(|part| *part == "site-packages") {
        Some(index) => index + 2,
        None => 3,
    };
    format!("/{}", directories[..depth.min(directories.len())].join("/"))
}

/// Streams `docker export` of a created (never started) container through a tar reader.
fn usage_of(sh: &Shell, reference: &str) -> Result<Usage> {
    let label = format!("{}={}", crate::stack::LABEL, crate::stack::owner());
    let id = cmd!(sh, "docker create --label {label} {reference}").quiet().read()?;
    if id.is_empty() {
        bail!("`docker create {reference}` did not create a container");
    }
    let result = (|| {
        let mut child = piped(cmd!(sh, "docker export {id}")).spawn().context("starting `docker export`")?;
        let mut usage = Usage::default();
        let mut archive = tar::Archive::new(child.stdout.take().context("docker export has no stdout")?);
        for entry in archive.entries()? {
            let entry = entry?;
            if entry.header().entry_type().is_file() {
                let path = entry.path()?.to_string_lossy().into_owned();
                usage.add(&path, entry.header().size()?);
            }
        }
        finish(child, &format!("docker export {id}"))?;
        Ok(usage)
    })();
    let _ = cmd!(sh, "docker rm --force {id}").quiet().ignore_stdout().ignore_stderr().run();
    result
}

fn contributors_markdown(sh: &Shell, name: &str, reference: &str) -> Result<String> {
    let usage = usage_of(sh, reference).with_context(|| format!("listing the files of {reference}"))?;
    let share = |size: u64| if usage.total == 0 { 0.0 } else { size as f64 * 100.0 / usage.total as f64 };
    let groups = usage.largest_groups(TOP_DIRECTORIES).into_iter().map(|(group, size)| {
        vec![format!("`{group}`"), Unit::Bytes.format(size as f64), format!("{:.1} %", share(size))]
    });
    let files = usage
        .largest_files(TOP_FILES)
        .into_iter()
        .map(|(file, size)| vec![format!("`{file}`"), Unit::Bytes.format(size as f64)]);
    Ok(format!(
        "Largest contributors to {name} ({} in regular files):\n\n{}\nLargest files of {name}:\n\n{}\n",
        Unit::Bytes.format(usage.total as f64),
        markdown_table(&["directory", "size", "share"], groups),
        markdown_table(&["file", "size"], files),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_grouped_three_levels_deep_and_by_python_package() {
        assert_eq!(group_of("usr/lib/x86_64-linux-gnu/libssl.so.3"), "/usr/lib/x86_64-linux-gnu");
        assert_eq!(group_of("./usr/lib/python3.13/lib-dynload/_ssl.so"), "/usr/lib/python3.13");
        assert_eq!(group_of("usr/bin/redis-server"), "/usr/bin");
        assert_eq!(
            group_of("opt/venv/lib/python3.13/site-packages/flask/app.py"),
            "/opt/venv/lib/python3.13/site-packages/flask"
        );
        assert_eq!(
            group_of("opt/venv/lib/python3.13/site-packages/psycopg_binary.libs/libpq.so"),
            "/opt/venv/lib/python3.13/site-packages/psycopg_binary.libs"
        );
        assert_eq!(
            group_of("opt/venv/lib/python3.13/site-packages/typing_extensions.py"),
            "/opt/venv/lib/python3.13/site-packages"
        );
        assert_eq!(group_of("etc/passwd"), "/etc");
    }

    #[test]
    fn usage_ranks_groups_and_files_by_size() {
        let mut usage = Usage::default();
        usage.add("usr/lib/x86_64-linux-gnu/libcrypto.so.3", 5_000_000);
        usage.add("usr/lib/x86_64-linux-gnu/libssl.so.3", 700_000);
        usage.add("usr/bin/redis-server", 2_000_000);
        usage.add("etc/passwd", 100);
        assert_eq!(usage.total, 7_700_100);
        assert_eq!(usage.largest_groups(2), vec![("/usr/lib/x86_64-linux-gnu", 5_700_000), ("/usr/bin", 2_000_000)]);
        assert_eq!(usage.largest_files(1), vec![("/usr/lib/x86_64-linux-gnu/libcrypto.so.3", 5_000_000)]);
    }

    #[test]
    fn counting_writer_counts_gzip_output() {
        let mut encoder = flate2::write::GzEncoder::new(ByteCounter::default(), flate2::Compression::default());
        encoder.write_all(&[0u8; 100_000]).unwrap();
        let compressed = encoder.finish().unwrap().0;
        assert!(compressed > 0 && compressed < 1_000, "{compressed}");
    }
}

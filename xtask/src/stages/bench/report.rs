//! Figures, targets and their rendering as Markdown: the pure part of the benchmarks.

use std::fmt::Write as _;

use comfy_table::{presets, Table};

/// A Markdown table with the given header and rows, as every table of the page is written.
pub fn markdown_table<R: IntoIterator<Item = String>>(header: &[&str], rows: impl IntoIterator<Item = R>) -> String {
    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN).set_header(header.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    format!("{table}\n")
}

/// What a figure counts, which decides how it is shown and which direction is better.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    /// Image sizes, in decimal megabytes as `docker images` shows them.
    Bytes,
    /// Binary sizes and memory, in KiB/MiB as the targets are stated.
    BinaryBytes,
    Seconds,
    RequestsPerSecond,
    Count,
}

impl Unit {
    fn higher_is_better(self) -> bool {
        self == Unit::RequestsPerSecond
    }

    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Bytes => format!("{:.1} MB", value / 1e6),
            Unit::BinaryBytes if value.abs() >= 1024.0 * 1024.0 => format!("{:.2} MiB", value / (1024.0 * 1024.0)),
            Unit::BinaryBytes => format!("{:.0} KiB", value / 1024.0),
            Unit::Seconds if value.abs() < 0.01 => format!("{:.2} ms", value * 1e3),
            Unit::Seconds if value.abs() < 1.0 => format!("{:.0} ms", value * 1e3),
            Unit::Seconds => format!("{value:.2} s"),
            Unit::RequestsPerSecond => format!("{value:.0} req/s"),
            Unit::Count => format!("{value:.0}"),
        }
    }
}

/// The median of the samples (the mean of the middle two for an even count); `None` when there are none.
pub fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|value| value.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) { (sorted[middle - 1] + sorted[middle]) / 2.0 } else { sorted[middle] })
}

/// How many times better ours is than the baseline (above 1: ours is better), for either direction of
/// "better"; `None` when a figure is missing or not positive.
pub fn gain(unit: Unit, ours: f64, baseline: f64) -> Option<f64> {
    if ours <= 0.0 || baseline <= 0.0 {
        return None;
    }
    Some(if unit.higher_is_better() { ours / baseline } else { baseline / ours })
}

/// A median over some samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figure {
    pub value: f64,
    pub samples: usize,
}

impl Figure {
    pub fn of(samples: &[f64]) -> Option<Self> {
        median(samples).map(|value| Figure { value, samples: samples.len() })
    }

    pub fn single(value: f64) -> Self {
        Figure { value, samples: 1 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    AtMost(f64),
    Below(f64),
    /// Ours at least this many times the baseline (higher is better).
    TimesBaseline(f64),
    /// Ours no worse than the baseline, in the unit's direction of better.
    NoWorseThanBaseline,
}

/// A goal from an issue, with the words it is stated in.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub text: String,
    pub goals: Vec<Goal>,
}

impl Target {
    pub fn new(text: &str, goals: &[Goal]) -> Self {
        Target { text: text.to_owned(), goals: goals.to_vec() }
    }

    /// Whether every goal is met; `None` when a figure it needs is missing.
    pub fn met(&self, unit: Unit, ours: Option<f64>, baseline: Option<f64>) -> Option<bool> {
        let ours = ours?;
        let mut all = true;
        for goal in &self.goals {
            all &= match *goal {
                Goal::AtMost(limit) => ours <= limit,
                Goal::Below(limit) => ours < limit,
                Goal::TimesBaseline(factor) => ours >= factor * baseline?,
                Goal::NoWorseThanBaseline if unit.higher_is_better() => ours >= baseline?,
                Goal::NoWorseThanBaseline => ours <= baseline?,
            };
        }
        Some(all)
    }
}

#[derive(Clone, Debug)]
pub struct Row {
    pub measure: String,
    pub unit: Unit,
    pub ours: Option<Figure>,
    pub baseline: Option<Figure>,
    pub target: Option<Target>,
}

impl Row {
    pub fn new(measure: impl Into<String>, unit: Unit, ours: Option<Figure>, baseline: Option<Figure>) -> Self {
        Row { measure: measure.into(), unit, ours, baseline, target: None }
    }

    pub fn with_target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    pub fn met(&self) -> Option<bool> {
        let target = self.target.as_ref()?;
        target.met(self.unit, self.ours.map(|figure| figure.value), self.baseline.map(|figure| figure.value))
    }

    fn gain_text(&self) -> String {
        match (self.ours, self.baseline) {
            (Some(ours), Some(baseline)) => match gain(self.unit, ours.value, baseline.value) {
                Some(times) if times >= 1.0 => format!("{times:.1}× better"),
                Some(times) => format!("{times:.2}× (worse)"),
                None => "-".to_owned(),
            },
            _ => "-".to_owned(),
        }
    }

    fn figure_text(&self, figure: Option<Figure>) -> String {
        figure.map_or("-".to_owned(), |figure| self.unit.format(figure.value))
    }
}

fn met_text(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "-",
    }
}

/// One comparison: its rows, what "ours" and the baseline are, notes, and any extra Markdown.
#[derive(Clone, Debug, Default)]
pub struct Section {
    pub title: String,
    pub ours: String,
    pub baseline: String,
    pub method: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// More Markdown after the table (breakdowns, per-step times).
    pub extra: String,
    /// Why the comparison could not be measured, when it could not.
    pub failure: Option<String>,
}

impl Section {
    pub fn new(title: &str, ours: &str, baseline: &str, method: &str) -> Self {
        Section {
            title: title.to_owned(),
            ours: ours.to_owned(),
            baseline: baseline.to_owned(),
            method: method.to_owned(),
            ..Default::default()
        }
    }

    pub fn failed(title: &str, reason: String) -> Self {
        Section { title: title.to_owned(), failure: Some(reason), ..Default::default() }
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## {}\n", self.title);
        if let Some(reason) = &self.failure {
            let _ = writeln!(out, "**Not measured**: {reason}\n");
            return out;
        }
        let _ = writeln!(out, "Ours: {}. Baseline: {}.\n", self.ours, self.baseline);
        if !self.method.is_empty() {
            let _ = writeln!(out, "{}\n", self.method);
        }
        let rows = self.rows.iter().map(|row| {
            let samples = row.ours.or(row.baseline).map_or("-".to_owned(), |figure| figure.samples.to_string());
            vec![
                row.measure.clone(),
                row.figure_text(row.ours),
                row.figure_text(row.baseline),
                row.gain_text(),
                samples,
                row.target.as_ref().map_or("-".to_owned(), |target| target.text.clone()),
                met_text(row.met()).to_owned(),
            ]
        });
        out.push_str(&markdown_table(&["measure", "ours", "baseline", "ours vs baseline", "n", "target", "met"], rows));
        out.push('\n');
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        if !self.extra.is_empty() {
            out.push_str(&self.extra);
            if !self.extra.ends_with('\n') {
                out.push('\n');
            }
            out.push('\n');
        }
        out
    }
}

/// Every figure that has a target, in one table: the page's summary.
pub fn targets_table(sections: &[Section]) -> String {
    let mut rows = Vec::new();
    for section in sections {
        for row in section.rows.iter().filter(|row| row.target.is_some()) {
            rows.push(vec![
                section.title.clone(),
                row.measure.clone(),
                row.figure_text(row.ours),
                row.target.as_ref().map_or("-".to_owned(), |target| target.text.clone()),
                met_text(row.met()).to_owned(),
            ]);
        }
        if section.failure.is_some() {
            rows.push([section.title.as_str(), "-", "not measured", "-", "-"].map(str::to_owned).to_vec());
        }
    }
    markdown_table(&["comparison", "measure", "ours", "target", "met"], rows)
}

#[cfg(test)]
pub(super) fn has_row(markdown: &str, cells: &[&str]) -> bool {
    markdown.lines().any(|line| {
        let found: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        found == cells
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.5]), Some(7.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn median_ignores_values_that_are_not_numbers() {
        assert_eq!(median(&[f64::NAN, 1.0, 5.0, f64::INFINITY, 3.0]), Some(3.0));
    }

    #[test]
    fn gain_is_above_one_when_ours_is_better_in_either_direction() {
        assert_eq!(gain(Unit::Bytes, 50.0, 200.0), Some(4.0));
        assert_eq!(gain(Unit::Seconds, 0.5, 10.0), Some(20.0));
        assert_eq!(gain(Unit::RequestsPerSecond, 1000.0, 200.0), Some(5.0));
        assert_eq!(gain(Unit::RequestsPerSecond, 100.0, 200.0), Some(0.5));
        assert_eq!(gain(Unit::Count, 0.0, 3.0), None);
    }

    #[test]
    fn units_render_readably() {
        assert_eq!(Unit::Bytes.format(45_200_000.0), "45.2 MB");
        assert_eq!(Unit::BinaryBytes.format(786_432.0), "768 KiB");
        assert_eq!(Unit::BinaryBytes.format(1.5 * 1024.0 * 1024.0), "1.50 MiB");
        assert_eq!(Unit::Seconds.format(0.00042), "0.42 ms");
        assert_eq!(Unit::Seconds.format(0.25), "250 ms");
        assert_eq!(Unit::Seconds.format(10.04), "10.04 s");
        assert_eq!(Unit::RequestsPerSecond.format(1234.4), "1234 req/s");
        assert_eq!(Unit::Count.format(0.0), "0");
    }

    #[test]
    fn targets_check_limits_and_the_baseline() {
        let size = Target::new("≤ 45 MB", &[Goal::AtMost(45e6)]);
        assert_eq!(size.met(Unit::Bytes, Some(44e6), None), Some(true));
        assert_eq!(size.met(Unit::Bytes, Some(46e6), None), Some(false));
        assert_eq!(size.met(Unit::Bytes, None, None), None);

        let stop = Target::new("< 1 s", &[Goal::Below(1.0)]);
        assert_eq!(stop.met(Unit::Seconds, Some(1.0), None), Some(false));

        let throughput = Target::new("≥ 5× baseline", &[Goal::TimesBaseline(5.0)]);
        assert_eq!(throughput.met(Unit::RequestsPerSecond, Some(1000.0), Some(200.0)), Some(true));
        assert_eq!(throughput.met(Unit::RequestsPerSecond, Some(999.0), Some(200.0)), Some(false));
        assert_eq!(throughput.met(Unit::RequestsPerSecond, Some(999.0), None), None);

        let overhead = Target::new("≤ 5 ms, no worse than tini", &[Goal::AtMost(0.005), Goal::NoWorseThanBaseline]);
        assert_eq!(overhead.met(Unit::Seconds, Some(0.0004), Some(0.0005)), Some(true));
        assert_eq!(overhead.met(Unit::Seconds, Some(0.0006), Some(0.0005)), Some(false));
        assert_eq!(overhead.met(Unit::Seconds, Some(0.006), Some(0.007)), Some(false));
    }

    #[test]
    fn section_renders_figures_ratio_and_target() {
        let mut section = Section::new("Image size", "distroless", "one-stage", "Measured with docker image inspect.");
        section.rows.push(
            Row::new(
                "giropops-senhas uncompressed",
                Unit::Bytes,
                Some(Figure::single(44e6)),
                Some(Figure::single(176e6)),
            )
            .with_target(Target::new("≤ 45 MB", &[Goal::AtMost(45e6)])),
        );
        section.rows.push(Row::new(
            "stop",
            Unit::Seconds,
            Figure::of(&[0.3, 0.5, 0.4]),
            Figure::of(&[10.2, 10.1, 10.3]),
        ));
        section.notes.push("a note".to_owned());
        let markdown = section.markdown();
        assert!(markdown.starts_with("## Image size\n"), "{markdown}");
        assert!(
            has_row(
                &markdown,
                &["giropops-senhas uncompressed", "44.0 MB", "176.0 MB", "4.0× better", "1", "≤ 45 MB", "met"]
            ),
            "{markdown}"
        );
        assert!(has_row(&markdown, &["stop", "400 ms", "10.20 s", "25.5× better", "3", "-", "-"]), "{markdown}");
        assert!(markdown.contains("- a note\n"), "{markdown}");

        let summary = targets_table(&[section, Section::failed("Load", "wrk is not installed".to_owned())]);
        assert!(
            has_row(&summary, &["Image size", "giropops-senhas uncompressed", "44.0 MB", "≤ 45 MB", "met"]),
            "{summary}"
        );
        assert!(!summary.contains("| stop "), "rows without a target stay out of the summary: {summary}");
        assert!(has_row(&summary, &["Load", "-", "not measured", "-", "-"]), "{summary}");
    }

    #[test]
    fn failed_section_says_why() {
        let markdown = Section::failed("Load", "wrk is not installed: apt-get install wrk".to_owned()).markdown();
        assert!(markdown.contains("**Not measured**: wrk is not installed: apt-get install wrk"), "{markdown}");
    }
}

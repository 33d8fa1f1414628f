//! Durations as the config and the command line write them: a whole number and a unit,
//! "500ms", "8s", "2m", "1h". Parsing and display, so that messages echo the config's notation.

use std::fmt;
use std::time::Duration;

/// Parses "500ms", "8s", "2m" or "1h". No fractions, no spaces, no other units: one notation,
/// so that what `launcher check` prints is what the config says.
pub fn parse(text: &str) -> Result<Duration, String> {
    let malformed = || {
        format!("malformed duration {text:?}: write a whole number followed by ms, s, m or h, e.g. \"500ms\", \"8s\", \"2m\"")
    };
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(malformed)?;
    let amount: u64 = text[..digits_end].parse().map_err(|_| malformed())?;
    let millis_per_unit = match &text[digits_end..] {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(malformed()),
    };
    amount.checked_mul(millis_per_unit).map(Duration::from_millis).ok_or_else(malformed)
}

/// Formats a duration the way the config writes it: "500ms", "8s", "2m".
pub struct DisplayDuration(pub Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        match millis {
            m if m % 3_600_000 == 0 && m > 0 => write!(f, "{}h", m / 3_600_000),
            m if m % 60_000 == 0 && m > 0 => write!(f, "{}m", m / 60_000),
            m if m % 1000 == 0 => write!(f, "{}s", m / 1000),
            m => write!(f, "{m}ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("8s").unwrap(), Duration::from_secs(8));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "8", "s", "8 s", "1.5s", "-1s", "8sec", "99999999999999999999s"] {
            assert!(parse(bad).unwrap_err().contains("malformed duration"), "{bad}");
        }
    }

    #[test]
    fn displays_durations_as_the_config_writes_them() {
        assert_eq!(DisplayDuration(Duration::from_millis(1500)).to_string(), "1500ms");
        assert_eq!(DisplayDuration(Duration::from_secs(120)).to_string(), "2m");
        assert_eq!(DisplayDuration(Duration::from_secs(300)).to_string(), "5m");
        assert_eq!(DisplayDuration(Duration::from_secs(7200)).to_string(), "2h");
        assert_eq!(DisplayDuration(Duration::ZERO).to_string(), "0s");
    }
}

//! Retention: how long a file must stay as it is, legal holds that keep it longer, and the
//! clock floor that stops a clock set back from expiring anything early. Pure rules over
//! nanosecond timestamps; the clock is injected.

use super::path::RelPath;

pub const NS_PER_SEC: u64 = 1_000_000_000;

/// A length of time in nanoseconds, written `90d`, `12h`, `7y` (a year is 365 days).
pub fn parse_duration_ns(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 90d (units s, m, h, d, y)"))?;
    let secs_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "y" => 365 * 86_400,
        "" => return Err(format!("`{text}` needs a unit: s, m, h, d or y")),
        other => return Err(format!("unknown unit `{other}` in `{text}` (use s, m, h, d or y)")),
    };
    n.checked_mul(secs_per_unit).and_then(|s| s.checked_mul(NS_PER_SEC)).ok_or_else(|| format!("`{text}` is too long"))
}

/// A retention rule for every file under `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub prefix: RelPath,
    pub retention_ns: u64,
}

/// How long files are retained: a default, per-directory rules (the longest matching prefix
/// wins), and bounds every rule is clamped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub default_ns: u64,
    pub rules: Vec<Rule>,
    pub min_ns: Option<u64>,
    pub max_ns: Option<u64>,
}

impl RetentionPolicy {
    /// Retain everything for `default_ns`, with no rules or bounds.
    pub fn uniform(default_ns: u64) -> Self {
        RetentionPolicy { default_ns, rules: Vec::new(), min_ns: None, max_ns: None }
    }

    /// The retention that applies to `path`.
    pub fn retention_for(&self, path: &RelPath) -> u64 {
        let chosen = self
            .rules
            .iter()
            .filter(|r| path.is_under(&r.prefix))
            .max_by_key(|r| r.prefix.as_os_str().len())
            .map_or(self.default_ns, |r| r.retention_ns);
        let at_least = self.min_ns.map_or(chosen, |min| chosen.max(min));
        self.max_ns.map_or(at_least, |max| at_least.min(max))
    }
}

/// Where a file stands for the operations retention gates (unlink, rename, truncate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Retention runs until `until_ns` (a time on the chain's clock).
    Retained { until_ns: u64 },
    /// A legal hold covers the file, whatever its retention.
    Held { prefix: RelPath, reason: String },
    /// The file has open handles: it cannot go away under a writer.
    Open,
    /// Retention expired, no hold, nothing open: it may be deleted, renamed or truncated.
    Expired,
}

/// What retention says about a file at chain time `now_ns`.
pub fn standing(retain_until_ns: u64, hold: Option<(&RelPath, &str)>, open: bool, now_ns: u64) -> Standing {
    if let Some((prefix, reason)) = hold {
        return Standing::Held { prefix: prefix.clone(), reason: reason.to_string() };
    }
    if now_ns < retain_until_ns {
        return Standing::Retained { until_ns: retain_until_ns };
    }
    if open {
        return Standing::Open;
    }
    Standing::Expired
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn p(s: &str) -> RelPath {
        RelPath::parse(OsStr::new(s)).unwrap()
    }

    #[test]
    fn durations_have_units() {
        assert_eq!(parse_duration_ns("90d"), Ok(90 * 86_400 * NS_PER_SEC));
        assert_eq!(parse_duration_ns("2s"), Ok(2 * NS_PER_SEC));
        assert_eq!(parse_duration_ns("1y"), Ok(365 * 86_400 * NS_PER_SEC));
        assert!(parse_duration_ns("90").is_err());
        assert!(parse_duration_ns("d").is_err());
        assert!(parse_duration_ns("5w").is_err());
        assert!(parse_duration_ns("99999999999999y").is_err());
    }

    #[test]
    fn the_longest_matching_prefix_wins_within_bounds() {
        let policy = RetentionPolicy {
            default_ns: 10,
            rules: vec![
                Rule { prefix: p("audit"), retention_ns: 100 },
                Rule { prefix: p("audit/keep"), retention_ns: 1000 },
                Rule { prefix: p("tmp"), retention_ns: 1 },
            ],
            min_ns: Some(5),
            max_ns: Some(500),
        };
        assert_eq!(policy.retention_for(&p("app.log")), 10);
        assert_eq!(policy.retention_for(&p("audit/x.log")), 100);
        assert_eq!(policy.retention_for(&p("audit/keep/x.log")), 500, "clamped to max");
        assert_eq!(policy.retention_for(&p("tmp/x.log")), 5, "clamped to min");
        assert_eq!(policy.retention_for(&p("auditor.log")), 10, "a prefix is whole components");
    }

    #[test]
    fn holds_beat_expiry_and_open_files_stay() {
        let prefix = p("case");
        assert_eq!(standing(100, None, false, 50), Standing::Retained { until_ns: 100 });
        assert_eq!(standing(100, None, false, 100), Standing::Expired);
        assert_eq!(standing(100, None, true, 200), Standing::Open);
        assert_eq!(
            standing(100, Some((&prefix, "subpoena")), false, 200),
            Standing::Held { prefix: prefix.clone(), reason: "subpoena".into() }
        );
    }
}

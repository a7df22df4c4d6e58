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

/// A recurring interval (the seal interval): a duration as above, more than zero.
pub fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    match parse_duration_ns(text)? {
        0 => Err("the duration must be more than zero".into()),
        ns => Ok(std::time::Duration::from_nanos(ns)),
    }
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

/// A file's retain-until after a Create or Seal at `at_ns` under `retention_ns`: retention runs
/// from the newest seal, and never ends earlier than already promised (`previous_ns`: an
/// extended retention stays extended).
pub fn retain_until(previous_ns: u64, at_ns: u64, retention_ns: u64) -> u64 {
    previous_ns.max(at_ns.saturating_add(retention_ns))
}

/// The time retention decisions use: the system clock, but never earlier than the newest
/// record (`floor_ns`), so setting the clock back cannot expire anything early.
pub fn chain_now(clock_ns: u64, floor_ns: u64) -> u64 {
    clock_ns.max(floor_ns)
}

/// The hold covering `path` among `holds` (set on the path itself or on a directory above
/// it; the root's hold covers everything): the first in path order, which is the outermost.
pub fn hold_covering<'a, H>(
    holds: impl IntoIterator<Item = (&'a RelPath, H)>,
    path: &RelPath,
) -> Option<(&'a RelPath, H)> {
    holds.into_iter().find(|(prefix, _)| path.is_under(prefix))
}

/// Where a file stands for the operations retention gates (unlink, rename, truncate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The index has no record of the file (placed in DATA_DIR behind wormfs' back, not
    /// adopted yet): nothing says when it may go, so it may not.
    Untracked,
    /// Retention runs until `until_ns` (a time on the chain's clock).
    Retained { until_ns: u64 },
    /// A legal hold covers the file, whatever its retention.
    Held { prefix: RelPath, reason: String },
    /// The file has open handles: it cannot go away under a writer.
    Open,
    /// Retention expired, no hold, nothing open: it may be deleted, renamed or truncated.
    Expired,
}

/// What retention says about a file at chain time `now_ns`. A hold wins over everything, then
/// retention, then open handles.
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
    fn intervals_are_durations_above_zero() {
        use std::time::Duration;
        assert_eq!(parse_interval("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_interval("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("60").is_err(), "a unit is required");
        assert!(parse_interval("5x").is_err());
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
    fn retention_runs_from_the_newest_seal_and_never_shrinks() {
        assert_eq!(retain_until(0, 100, 10), 110);
        assert_eq!(retain_until(500, 100, 10), 500, "an extension is kept");
        assert_eq!(retain_until(0, u64::MAX - 1, 10), u64::MAX, "saturates instead of wrapping");
        assert_eq!(chain_now(5, 9), 9, "the clock floor");
        assert_eq!(chain_now(10, 9), 10);
    }

    #[test]
    fn the_outermost_covering_hold_is_named() {
        let holds = [(p("a"), 1), (p("a/b"), 2), (p("c"), 3)];
        let found = hold_covering(holds.iter().map(|(p, n)| (p, *n)), &p("a/b/x.log"));
        assert_eq!(found.map(|(prefix, n)| (prefix.clone(), n)), Some((p("a"), 1)));
        assert!(hold_covering(holds.iter().map(|(p, n)| (p, *n)), &p("ab/x.log")).is_none());
        let root = [(RelPath::root(), 9)];
        assert!(hold_covering(root.iter().map(|(p, n)| (p, *n)), &p("any/thing")).is_some());
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

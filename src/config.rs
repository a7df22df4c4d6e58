//! The mount's config file (`--config /etc/wormfs/wormfs.toml`): retention defaults, bounds and
//! per-directory rules. A malformed file is refused with its line and the reason.
//!
//! ```toml
//! retention = "90d"          # default for files no rule matches (units s, m, h, d, y)
//! min_retention = "30d"      # no rule (nor the default) may be shorter ...
//! max_retention = "10y"      # ... or longer
//!
//! [[rule]]
//! path = "/audit"            # this directory and everything under it
//! retention = "7y"           # the longest matching path wins
//! ```

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::core::retention::{parse_duration_ns, RetentionPolicy, Rule};
use crate::core::RelPath;

#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line of the problem, when it has one.
    pub line: Option<usize>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    retention: Option<Spanned<String>>,
    min_retention: Option<Spanned<String>>,
    max_retention: Option<Spanned<String>>,
    #[serde(default)]
    rule: Vec<RuleEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    path: Spanned<String>,
    retention: Spanned<String>,
}

/// The retention policy from an optional config file and an optional `--retention`, which
/// overrides the file's default. Without either, files are retained for `fallback_ns`.
pub fn retention_policy(
    config: Option<&Path>,
    retention_flag: Option<&str>,
    fallback_ns: u64,
) -> Result<RetentionPolicy, ConfigError> {
    let flag_ns = retention_flag
        .map(|text| {
            parse_duration_ns(text).map_err(|reason| ConfigError {
                file: PathBuf::from("--retention"),
                line: None,
                reason,
            })
        })
        .transpose()?;
    let Some(path) = config else {
        return Ok(RetentionPolicy::uniform(flag_ns.unwrap_or(fallback_ns)));
    };
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        reason: e.to_string(),
    })?;
    let mut policy = parse(&text).map_err(|(span, reason)| ConfigError {
        file: path.to_path_buf(),
        line: span.map(|s| line_of(&text, s.start)),
        reason,
    })?;
    if let (Some(ns), Some(text)) = (flag_ns, retention_flag) {
        // The file's bounds hold for the flag too: they are the admin's promise about every file.
        let out_of_bounds = |reason: String| ConfigError { file: PathBuf::from("--retention"), line: None, reason };
        if policy.min_ns.is_some_and(|min| ns < min) {
            return Err(out_of_bounds(format!("{text} is shorter than min_retention in {}", path.display())));
        }
        if policy.max_ns.is_some_and(|max| ns > max) {
            return Err(out_of_bounds(format!("{text} is longer than max_retention in {}", path.display())));
        }
        policy.default_ns = ns;
    }
    Ok(policy)
}

type ParseError = (Option<Range<usize>>, String);

fn parse(text: &str) -> Result<RetentionPolicy, ParseError> {
    let file: File = toml::from_str(text).map_err(|e| (e.span(), e.message().to_string()))?;
    let duration = |v: &Spanned<String>| parse_duration_ns(v.get_ref()).map_err(|r| (Some(v.span()), r));
    let min_ns = file.min_retention.as_ref().map(duration).transpose()?;
    let max_ns = file.max_retention.as_ref().map(duration).transpose()?;
    if let (Some(min), Some(max), Some(m)) = (min_ns, max_ns, &file.max_retention) {
        if min > max {
            return Err((Some(m.span()), "max_retention is shorter than min_retention".into()));
        }
    }
    let within = |ns: u64, v: &Spanned<String>| -> Result<u64, ParseError> {
        if min_ns.is_some_and(|min| ns < min) {
            return Err((Some(v.span()), format!("{} is shorter than min_retention", v.get_ref())));
        }
        if max_ns.is_some_and(|max| ns > max) {
            return Err((Some(v.span()), format!("{} is longer than max_retention", v.get_ref())));
        }
        Ok(ns)
    };
    let default_ns = match &file.retention {
        Some(v) => within(duration(v)?, v)?,
        None => return Err((None, "missing `retention = \"...\"` (the default retention)".into())),
    };
    let mut rules = Vec::new();
    for entry in &file.rule {
        let raw = entry.path.get_ref();
        let prefix = RelPath::from_mount_path(raw)
            .map_err(|_| (Some(entry.path.span()), format!("`{raw}` is not a path inside the mount like /audit")))?;
        if rules.iter().any(|r: &Rule| r.prefix == prefix) {
            return Err((Some(entry.path.span()), format!("a rule for {raw} is already defined")));
        }
        let retention_ns = within(duration(&entry.retention)?, &entry.retention)?;
        rules.push(Rule { prefix, retention_ns });
    }
    Ok(RetentionPolicy { default_ns, rules, min_ns, max_ns })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::retention::NS_PER_SEC;

    const DAY: u64 = 86_400 * NS_PER_SEC;

    #[test]
    fn a_full_config_parses() {
        let p = parse(
            "retention = \"90d\"\nmin_retention = \"1d\"\nmax_retention = \"10y\"\n\n[[rule]]\npath = \"/audit\"\nretention = \"7y\"\n",
        )
        .unwrap();
        assert_eq!(p.default_ns, 90 * DAY);
        assert_eq!(p.min_ns, Some(DAY));
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].prefix.to_string(), "/audit");
        assert_eq!(p.rules[0].retention_ns, 7 * 365 * DAY);
    }

    fn error_line(text: &str) -> (Option<usize>, String) {
        let (span, reason) = parse(text).unwrap_err();
        (span.map(|s| line_of(text, s.start)), reason)
    }

    #[test]
    fn mistakes_name_their_line() {
        let (line, reason) = error_line("retention = \"90d\"\n[[rule]]\npath = \"/a\"\nretention = \"7x\"\n");
        assert_eq!(line, Some(4));
        assert!(reason.contains("unknown unit"), "{reason}");
        let (line, _) = error_line("retention = \"90d\"\nbogus = 1\n");
        assert_eq!(line, Some(2));
        let (line, _) = error_line("retention = \"90d\"\n[[rule]\n");
        assert_eq!(line, Some(2));
        let (line, reason) = error_line("retention = \"1d\"\nmin_retention = \"7d\"\n");
        assert_eq!(line, Some(1));
        assert!(reason.contains("shorter than min_retention"), "{reason}");
        let (line, reason) = error_line("retention = \"9d\"\n[[rule]]\npath = \"../etc\"\nretention = \"1d\"\n");
        assert_eq!(line, Some(3));
        assert!(reason.contains("not a path"), "{reason}");
        let (line, reason) = error_line("min_retention = \"1d\"\n");
        assert_eq!(line, None);
        assert!(reason.contains("missing"), "{reason}");
    }

    #[test]
    fn the_flag_overrides_the_default() {
        let p = retention_policy(None, Some("2s"), DAY).unwrap();
        assert_eq!(p.default_ns, 2 * NS_PER_SEC);
        assert_eq!(retention_policy(None, None, DAY).unwrap().default_ns, DAY);
        assert!(retention_policy(None, Some("2"), DAY).is_err());
    }

    #[test]
    fn the_flag_keeps_within_the_files_bounds() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"retention = \"30d\"\nmin_retention = \"7d\"\nmax_retention = \"1y\"\n")
            .unwrap();
        let policy = |flag| retention_policy(Some(file.path()), Some(flag), DAY);
        assert_eq!(policy("10d").unwrap().default_ns, 10 * DAY);
        let short = policy("1s").unwrap_err();
        assert!(short.reason.contains("shorter than min_retention"), "{}", short.reason);
        assert!(policy("2y").unwrap_err().reason.contains("longer than max_retention"));
    }
}

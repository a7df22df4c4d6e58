//! `wormfs verify --archive`: every copy the chain says went to this bucket, checked there.
//! The recorded version must exist under the key wormfs gives those bytes, hold exactly the
//! archived bytes (read back in full and hashed against the seals), be locked in COMPLIANCE mode
//! until at least the date the chain retains it, carry a legal hold wherever a hold covers it in
//! the chain, and have its receipt beside it. Files with no copy of their sealed bytes there are
//! named too.

use super::s3::{s3_date_ns, LockMode, S3Error, S3};
use super::{check_bytes, key_names, receipt_key, Mismatch};
use crate::core::history::ArchiveDue;
use crate::core::path::RelPath;
use crate::core::segment::Hash;
use crate::verify::{ArchiveFinding, ArchiveProblem, Finding, Warning};

/// What checking the bucket found: findings, warnings, and how many copies were checked.
#[derive(Debug, Default)]
pub struct Checked {
    pub findings: Vec<Finding>,
    pub warnings: Vec<Warning>,
    pub copies: u64,
}

/// Check every copy in `dues` that is in `s3`'s bucket; `sealed` are the files the chain holds
/// now with their sealed size and file_hash (those with no copy of exactly that are named).
/// Err: the bucket could not be reached at all, so there is no verdict on the archive; a
/// failure about one object is a finding about it.
pub fn check(
    s3: &S3,
    dues: &[ArchiveDue],
    sealed: &[(RelPath, u64, Hash)],
    now_ns: u64,
    progress: &dyn Fn(u64),
) -> Result<Checked, S3Error> {
    let mut out = Checked::default();
    let mut elsewhere: std::collections::BTreeMap<&str, u64> = Default::default();
    let here: Vec<&ArchiveDue> = dues.iter().filter(|d| d.copy.archive.bucket == s3.bucket()).collect();
    for due in dues.iter().filter(|d| d.copy.archive.bucket != s3.bucket()) {
        *elsewhere.entry(due.copy.archive.bucket.as_str()).or_default() += 1;
    }
    // The one call whose failure means the store cannot be judged at all.
    if !here.is_empty() && !s3.object_lock_enabled()? {
        out.findings.push(Finding::ArchiveBucketUnlocked { bucket: s3.bucket().to_string() });
    }
    for due in here {
        out.copies += 1;
        check_copy(s3, due, now_ns, progress, &mut out);
    }
    for (path, size, file_hash) in sealed {
        let copied = dues.iter().any(|d| {
            let c = &d.copy;
            c.archive.bucket == s3.bucket()
                && c.file.as_ref() == Some(path)
                && c.archive.size == *size
                && c.archive.file_hash == *file_hash
        });
        if !copied {
            out.warnings.push(Warning::ArchiveNotArchived { path: path.clone(), size: *size });
        }
    }
    for (bucket, copies) in elsewhere {
        out.warnings.push(Warning::ArchiveNotChecked { bucket: bucket.to_string(), copies });
    }
    Ok(out)
}

fn check_copy(s3: &S3, due: &ArchiveDue, now_ns: u64, progress: &dyn Fn(u64), out: &mut Checked) {
    let c = &due.copy;
    let finding = |key: &str, version: &str, problem| {
        Finding::Archive(ArchiveFinding {
            path: c.archive.path.clone(),
            seq: c.seq,
            key: key.to_string(),
            version_id: version.to_string(),
            problem,
        })
    };
    // A key that is not the one wormfs gives these bytes: recorded by something else (or
    // pointing, through `..`, somewhere else than it says).
    if !key_names(&c.archive.key, &c.archive.path, &c.archive.file_hash) {
        out.findings.push(finding(&c.archive.key, &c.archive.version_id, ArchiveProblem::WrongKey));
    }
    let rkey = receipt_key(&c.archive.key);
    for (key, version, is_receipt) in
        [(&c.archive.key, &c.archive.version_id, false), (&rkey, &c.archive.receipt_version_id, true)]
    {
        let mut problems = Vec::new();
        match lock_problems(s3, key, version, due) {
            // Past the date the chain retained it until, a copy may go, as a local file may.
            Ok(None) if due.retain_until_ns < now_ns && due.hold.is_none() => {
                if !is_receipt {
                    let (path, key) = (c.archive.path.clone(), key.clone());
                    out.warnings.push(Warning::ArchiveExpiredGone { path, key, retain_until_ns: due.retain_until_ns });
                }
                continue;
            }
            Ok(None) => {
                problems.push(if is_receipt { ArchiveProblem::ReceiptMissing } else { ArchiveProblem::Missing })
            }
            Ok(Some((lock, stale_hold))) => {
                // A receipt proves only what the chain proves already: a hold on it matters less.
                problems.extend(
                    lock.into_iter().filter(|p| !is_receipt || !matches!(p, ArchiveProblem::HoldMissing { .. })),
                );
                if stale_hold && !is_receipt {
                    out.warnings
                        .push(Warning::ArchiveHoldNotCleared { path: c.archive.path.clone(), key: key.clone() });
                }
                if !is_receipt {
                    problems.extend(content_problem(s3, due, progress));
                }
                let newest = s3.versions(key).ok().and_then(|v| v.into_iter().find(|v| v.latest));
                if newest.is_some_and(|v| v.version_id != *version) {
                    let (path, key, version_id) = (c.archive.path.clone(), key.clone(), version.clone());
                    out.warnings.push(Warning::ArchiveCovered { path, key, version_id });
                }
            }
            Err(reason) => problems.push(ArchiveProblem::Unreadable { reason }),
        }
        out.findings.extend(problems.into_iter().map(|p| finding(key, version, p)));
    }
}

/// The version's lock against what the chain requires: None if the version is gone, else the
/// problems and whether it has a legal hold the chain cleared. Err: why it could not be asked.
fn lock_problems(
    s3: &S3,
    key: &str,
    version: &str,
    due: &ArchiveDue,
) -> Result<Option<(Vec<ArchiveProblem>, bool)>, String> {
    let info = match s3.head(key, Some(version)) {
        Ok(Some(info)) => info,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut problems = Vec::new();
    if info.mode != Some(LockMode::Compliance) {
        problems.push(ArchiveProblem::NotCompliance { mode: info.mode.map(LockMode::as_str) });
    }
    let due_ns = s3_date_ns(due.retain_until_ns);
    if info.retain_until_ns.is_none_or(|until| until < due_ns) {
        problems.push(ArchiveProblem::RetentionShort { until_ns: info.retain_until_ns, due_ns });
    }
    if let (Some(hold), false) = (&due.hold, info.legal_hold) {
        problems.push(ArchiveProblem::HoldMissing { hold: hold.clone() });
    }
    Ok(Some((problems, due.hold.is_none() && info.legal_hold)))
}

/// Read the version back in full and check it against the seals it was archived with.
fn content_problem(s3: &S3, due: &ArchiveDue, progress: &dyn Fn(u64)) -> Option<ArchiveProblem> {
    let c = &due.copy;
    let mut body = match s3.get(&c.archive.key, &c.archive.version_id) {
        Ok(Some(body)) => body,
        Ok(None) => return Some(ArchiveProblem::Missing),
        Err(e) => return Some(ArchiveProblem::Unreadable { reason: e.to_string() }),
    };
    match check_bytes(&mut body, &c.ranges, c.archive.size, progress) {
        Ok(Ok(_)) => None,
        Ok(Err(Mismatch::Range { start, end })) => Some(ArchiveProblem::ContentChanged { start, end }),
        Ok(Err(Mismatch::Size { read })) => Some(ArchiveProblem::SizeDiffers { size: read }),
        // The seals themselves are broken: verify reports that about the chain.
        Ok(Err(Mismatch::Uncovered)) => None,
        Err(e) => Some(ArchiveProblem::Unreadable { reason: format!("reading it back: {e}") }),
    }
}

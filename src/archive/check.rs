//! `wormfs verify --archive`: every copy the chain says went to this bucket, checked there.
//! The recorded version must exist, hold exactly the archived bytes (read back in full and
//! hashed against the seals), be locked in COMPLIANCE mode until at least the date the chain
//! retains it, carry a legal hold wherever a hold covers it in the chain, and have its receipt
//! beside it.

use super::s3::{s3_date_ns, LockMode, S3Error, S3};
use super::{check_bytes, receipt_key, Mismatch};
use crate::core::history::ArchiveDue;
use crate::verify::{ArchiveFinding, ArchiveProblem, Finding, Warning};

/// What checking the bucket found. Err: S3 could not be reached at all (no verdict on the
/// archive is possible), as opposed to a finding about one object.
pub fn check(
    s3: &S3,
    dues: &[ArchiveDue],
    now_ns: u64,
    progress: &dyn Fn(u64),
) -> Result<(Vec<Finding>, Vec<Warning>, u64), S3Error> {
    let mut findings = Vec::new();
    let mut warnings = Vec::new();
    let mut checked = 0;
    let mut elsewhere: std::collections::BTreeMap<&str, u64> = Default::default();
    if dues.iter().any(|d| d.copy.bucket == s3.bucket()) && !s3.object_lock_enabled()? {
        findings.push(Finding::ArchiveBucketUnlocked { bucket: s3.bucket().to_string() });
    }
    for due in dues {
        let c = &due.copy;
        if c.bucket != s3.bucket() {
            *elsewhere.entry(c.bucket.as_str()).or_default() += 1;
            continue;
        }
        checked += 1;
        let finding = |problem| {
            Finding::Archive(ArchiveFinding {
                path: c.path.clone(),
                seq: c.seq,
                key: c.key.clone(),
                version_id: c.version_id.clone(),
                problem,
            })
        };
        let mut found = Vec::new();
        match lock_problems(s3, &c.key, &c.version_id, due)? {
            // Past the date the chain retained it until, a copy may go, as a local file may.
            None if due.retain_until_ns < now_ns && due.hold.is_none() => {
                warnings.push(Warning::ArchiveExpiredGone {
                    path: c.path.clone(),
                    key: c.key.clone(),
                    retain_until_ns: due.retain_until_ns,
                });
                continue;
            }
            None => found.push(ArchiveProblem::Missing),
            Some((problems, stale_hold)) => {
                found.extend(problems);
                if stale_hold {
                    warnings.push(Warning::ArchiveHoldNotCleared { path: c.path.clone(), key: c.key.clone() });
                }
                if let Some(problem) = content_problem(s3, due, progress)? {
                    found.push(problem);
                }
                let newest = match s3.versions(&c.key) {
                    Ok(versions) => versions.into_iter().find(|v| v.latest),
                    // Not allowed to list: the archived version itself was checked above.
                    Err(S3Error::Refused { .. }) => None,
                    Err(e) => return Err(e),
                };
                if newest.is_some_and(|v| v.version_id != c.version_id) {
                    warnings.push(Warning::ArchiveCovered {
                        path: c.path.clone(),
                        key: c.key.clone(),
                        version_id: c.version_id.clone(),
                    });
                }
            }
        }
        match lock_problems(s3, &receipt_key(&c.key), &c.receipt_version_id, due)? {
            None => found.push(ArchiveProblem::ReceiptMissing),
            // A receipt proves only what the chain proves already; its lock matters less than the
            // file's, but a lifted one is still reported.
            Some((problems, _)) => {
                found.extend(problems.into_iter().filter(|p| !matches!(p, ArchiveProblem::HoldMissing { .. })))
            }
        }
        findings.extend(found.into_iter().map(finding));
    }
    for (bucket, copies) in elsewhere {
        warnings.push(Warning::ArchiveNotChecked { bucket: bucket.to_string(), copies });
    }
    Ok((findings, warnings, checked))
}

/// The version's lock against what the chain requires: None if the version is gone, else the
/// problems and whether it has a legal hold the chain cleared.
fn lock_problems(
    s3: &S3,
    key: &str,
    version: &str,
    due: &ArchiveDue,
) -> Result<Option<(Vec<ArchiveProblem>, bool)>, S3Error> {
    let info = match s3.head(key, Some(version)) {
        Ok(Some(info)) => info,
        Ok(None) => return Ok(None),
        Err(e @ S3Error::Refused { .. }) => {
            return Ok(Some((vec![ArchiveProblem::Unreadable { reason: e.to_string() }], false)));
        }
        Err(e) => return Err(e),
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
fn content_problem(s3: &S3, due: &ArchiveDue, progress: &dyn Fn(u64)) -> Result<Option<ArchiveProblem>, S3Error> {
    let c = &due.copy;
    let mut body = match s3.get(&c.key, &c.version_id) {
        Ok(Some(body)) => body,
        Ok(None) => return Ok(Some(ArchiveProblem::Missing)),
        Err(e @ S3Error::Refused { .. }) => return Ok(Some(ArchiveProblem::Unreadable { reason: e.to_string() })),
        Err(e) => return Err(e),
    };
    let checked = check_bytes(&mut body, &c.ranges, c.size, progress).map_err(|err| S3Error::Io {
        op: "GetObject",
        key: c.key.clone(),
        err,
    })?;
    Ok(match checked {
        Ok(_) => None,
        Err(Mismatch::Range { start, end }) => Some(ArchiveProblem::ContentChanged { start, end }),
        Err(Mismatch::Size { read }) => Some(ArchiveProblem::SizeDiffers { size: read }),
        // The seals themselves are broken: verify reports that about the chain.
        Err(Mismatch::Uncovered) => None,
    })
}

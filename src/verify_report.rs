//! How `wormfs verify` shows its result: a human report, or a stable JSON document (format 1,
//! documented in the README), and the exit status (0 intact, 1 tampering or loss found).

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::{json, Value};

use crate::core::chain::ChainFinding;
use crate::core::history::{HistoryFinding, HistoryWarning};
use crate::core::path::RelPath;
use crate::core::segment::hex;
use crate::core::timefmt::rfc3339_ns;
use crate::inspect::{path_text, put_hex};
use crate::verify::{ArchiveProblem, Finding, Report, Warning};

/// Where the trusted public key came from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Given with --pubkey: only that key is trusted.
    Argument,
    /// STATE_DIR/signing.pub: the key came from the state being checked, so someone who could
    /// rewrite the state could have replaced it too.
    State(std::path::PathBuf),
}

pub struct Verdict<'a> {
    pub report: &'a Report,
    pub public_key: [u8; 32],
    pub key_source: KeySource,
}

impl Verdict<'_> {
    pub fn exit_code(&self) -> i32 {
        if self.report.intact() {
            0
        } else {
            1
        }
    }

    fn throughput_mb_s(&self) -> f64 {
        let secs = self.report.hash_time.as_secs_f64();
        if secs > 0.0 {
            self.report.bytes_hashed as f64 / 1e6 / secs
        } else {
            0.0
        }
    }

    fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for f in &self.report.findings {
            *counts.entry(f.kind()).or_insert(0) += 1;
        }
        counts
    }

    pub fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let r = self.report;
        let verdict =
            if r.intact() { "INTACT: every sealed byte and record checks out" } else { "TAMPERING OR LOSS FOUND" };
        writeln!(out, "wormfs verify: {verdict}")?;
        match &self.key_source {
            KeySource::Argument => writeln!(out, "key:       {} (given with --pubkey)", hex(&self.public_key))?,
            KeySource::State(path) => writeln!(
                out,
                "key:       {} (from {}: the key came from the state being checked; pass --pubkey with a copy kept elsewhere for stronger evidence)",
                hex(&self.public_key),
                path.display()
            )?,
        }
        match r.head {
            Some((seq, hash, ns)) => {
                writeln!(out, "head:      record {seq} at {}", rfc3339_ns(ns))?;
                writeln!(out, "head hash: {}", hex(&hash))?;
                writeln!(
                    out,
                    "           (keep `{seq}:{}` elsewhere; pass it as --expect-head next time)",
                    hex(&hash)
                )?;
            }
            None => writeln!(out, "head:      (empty chain)")?,
        }
        writeln!(out, "records:   {}", r.records)?;
        if r.rotations == 0 {
            writeln!(out, "keys:      one key, never rotated (epoch 0): no record is forward-secure yet")?;
        } else {
            writeln!(
                out,
                "keys:      epoch {} since record {} at {} ({} rotation{}); records 1..={} are forward-secure (their keys were destroyed)",
                r.epoch.epoch,
                r.epoch.since_seq,
                rfc3339_ns(r.epoch.since_ns),
                r.rotations,
                if r.rotations == 1 { "" } else { "s" },
                r.forward_secure_through()
            )?;
        }
        for (name, size) in &r.anchored {
            writeln!(out, "anchor:    {name}: the chain extends its {size} records")?;
        }
        if let Some((bucket, copies)) = &r.archive_checked {
            writeln!(
                out,
                "archive:   s3://{bucket}: {copies} archived cop{} checked (bytes, COMPLIANCE lock, retain-until, legal hold, receipt)",
                if *copies == 1 { "y" } else { "ies" }
            )?;
        }
        writeln!(
            out,
            "files:     {} checked, {} bytes hashed in {:.2}s ({:.0} MB/s, {} threads)",
            r.files,
            r.bytes_hashed,
            r.hash_time.as_secs_f64(),
            self.throughput_mb_s(),
            r.threads
        )?;
        let counts = self.counts();
        let by_kind: Vec<String> = counts.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        if by_kind.is_empty() {
            writeln!(out, "findings:  0")?;
        } else {
            writeln!(out, "findings:  {} ({})", r.findings.len(), by_kind.join(", "))?;
        }
        writeln!(out, "warnings:  {}", r.warnings.len())?;
        for f in &r.findings {
            writeln!(out, "FINDING {}: {f}", f.kind())?;
        }
        for w in &r.warnings {
            writeln!(out, "warning {}: {w}", w.kind())?;
        }
        Ok(())
    }

    pub fn to_json(&self) -> Value {
        let r = self.report;
        json!({
            "format": 1,
            "verdict": if r.intact() { "intact" } else { "tampered" },
            "key": {
                "public_key": hex(&self.public_key),
                "source": match &self.key_source { KeySource::Argument => "argument", KeySource::State(_) => "state" },
            },
            "head": r.head.map(|(seq, hash, ns)| json!({ "seq": seq, "hash": hex(&hash), "time": rfc3339_ns(ns), "time_ns": ns })),
            "records": r.records,
            "epoch": {
                "epoch": r.epoch.epoch,
                "since_seq": r.epoch.since_seq,
                "since": rfc3339_ns(r.epoch.since_ns),
                "epoch_ns": r.epoch.epoch_ns,
                "rotations": r.rotations,
                "forward_secure_through": r.forward_secure_through(),
            },
            "anchors": r.anchored.iter().map(|(name, size)| json!({ "anchor": name, "size": size })).collect::<Vec<_>>(),
            "archive": r.archive_checked.as_ref().map(|(bucket, copies)| json!({ "bucket": bucket, "copies_checked": copies })),
            "files": r.files,
            "bytes_hashed": r.bytes_hashed,
            "seconds": r.hash_time.as_secs_f64(),
            "throughput_mb_s": self.throughput_mb_s(),
            "threads": r.threads,
            "counts": self.counts(),
            "findings": r.findings.iter().map(finding_json).collect::<Vec<_>>(),
            "warnings": r.warnings.iter().map(warning_json).collect::<Vec<_>>(),
        })
    }
}

fn finding_json(f: &Finding) -> Value {
    let mut v = json!({ "kind": f.kind(), "message": f.to_string() });
    let extra = match f {
        Finding::Chain(c) => match c {
            ChainFinding::Undecodable { key, .. } => json!({ "seq": key }),
            ChainFinding::Misplaced { key, seq } => json!({ "seq": seq, "stored_at": key }),
            ChainFinding::Gap { from, to } => json!({ "from": from, "to": to }),
            ChainFinding::OutOfOrder { seq, after } => json!({ "seq": seq, "after": after }),
            ChainFinding::BrokenLink { seq }
            | ChainFinding::BadHash { seq }
            | ChainFinding::BadSignature { seq }
            | ChainFinding::SeqExhausted { seq } => json!({ "seq": seq }),
            ChainFinding::UnknownKey { seq, key_id } => json!({ "seq": seq, "key_id": hex(key_id) }),
            ChainFinding::TimeBackwards { seq, previous_ns, time_ns } => {
                json!({ "seq": seq, "previous_ns": previous_ns, "time_ns": time_ns })
            }
            ChainFinding::WrongEpochKey { seq, signed_by, epoch } => {
                json!({ "seq": seq, "signed_by_epoch": signed_by, "epoch": epoch })
            }
            ChainFinding::OutsideEpoch { seq, epoch, time_ns, until_ns } => {
                json!({ "seq": seq, "epoch": epoch, "time_ns": time_ns, "valid_until_ns": until_ns })
            }
            ChainFinding::BadRotation { seq, epoch, expected, why } => {
                json!({ "seq": seq, "epoch": epoch, "expected_epoch": expected, "why": why })
            }
        },
        Finding::History(h) => match h {
            HistoryFinding::Recreated { seq, .. }
            | HistoryFinding::SealWithoutOrigin { seq, .. }
            | HistoryFinding::SealsDoNotChain { seq, .. }
            | HistoryFinding::TruncateMisplaced { seq, .. }
            | HistoryFinding::RecoveredOutsideRecovery { seq, .. } => json!({ "seq": seq }),
            HistoryFinding::NoHistory { op, seq, .. } => json!({ "op": op, "seq": seq }),
            HistoryFinding::WhileUnmounted { seq, kind } => json!({ "seq": seq, "record_kind": kind }),
            HistoryFinding::AbortedNothing { seq, change } => json!({ "seq": seq, "change": change }),
            HistoryFinding::ChangedBeforeExpiry { op, seq, retain_until_ns, .. } => {
                json!({ "op": op, "seq": seq, "retain_until": rfc3339_ns(*retain_until_ns) })
            }
            HistoryFinding::ChangedUnderHold { op, seq, hold, .. } => {
                json!({ "op": op, "seq": seq, "hold": path_text(hold) })
            }
            HistoryFinding::SealedAfterCleanUnmount { start, end, seq, .. } => {
                json!({ "start": start, "end": end, "seq": seq })
            }
            HistoryFinding::Damaged { seq, sealed, size, .. } => json!({ "seq": seq, "sealed": sealed, "size": size }),
            HistoryFinding::ArchivedUnsealed { seq, .. } => json!({ "seq": seq }),
            HistoryFinding::PrunedWithoutArchive { seq, archived, .. } => json!({ "seq": seq, "archived": archived }),
        },
        Finding::ContentChanged { start, end, seq, .. } => json!({ "start": start, "end": end, "seq": seq }),
        Finding::Truncated { size, sealed, .. } => json!({ "size": size, "sealed": sealed }),
        Finding::AppendedAfterUnmount { bytes, .. } => json!({ "bytes": bytes }),
        Finding::Missing { .. } | Finding::Injected { .. } => json!({}),
        Finding::NotAFile { what, .. } => json!({ "what": format!("{what:?}") }),
        Finding::Unreadable { reason, .. } => json!({ "reason": reason }),
        Finding::HeadMismatch { index_seq, chain_seq } => json!({ "index_seq": index_seq, "chain_seq": chain_seq }),
        Finding::ExpectedHeadMissing { seq, .. } => json!({ "seq": seq }),
        Finding::BehindAnchor { anchor, size, records } => {
            json!({ "anchor": anchor, "anchor_size": size, "records": records })
        }
        Finding::ForkedFromAnchor { anchor, size } => json!({ "anchor": anchor, "anchor_size": size }),
        Finding::AnchorUnverified { anchor, why } => json!({ "anchor": anchor, "why": why }),
        Finding::FromTheFuture { seq, time_ns, now_ns } => json!({ "seq": seq, "time_ns": time_ns, "now_ns": now_ns }),
        Finding::ArchiveBucketUnlocked { bucket } => json!({ "bucket": bucket }),
        Finding::Archive(a) => {
            let mut v = json!({ "seq": a.seq, "key": a.key, "version_id": a.version_id });
            let more = match &a.problem {
                ArchiveProblem::ContentChanged { start, end } => json!({ "start": start, "end": end }),
                ArchiveProblem::SizeDiffers { size } => json!({ "size": size }),
                ArchiveProblem::NotCompliance { mode } => json!({ "mode": mode }),
                ArchiveProblem::RetentionShort { until_ns, due_ns } => json!({
                    "retain_until": until_ns.map(rfc3339_ns),
                    "due": rfc3339_ns(*due_ns),
                }),
                ArchiveProblem::HoldMissing { hold } => json!({ "hold": path_text(hold) }),
                ArchiveProblem::Unreadable { reason } => json!({ "reason": reason }),
                ArchiveProblem::Missing | ArchiveProblem::ReceiptMissing | ArchiveProblem::WrongKey => json!({}),
            };
            if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), more) {
                obj.extend(more);
            }
            v
        }
    };
    merge(&mut v, extra, f.path());
    v
}

fn warning_json(w: &Warning) -> Value {
    let mut v = json!({ "kind": w.kind(), "message": w.to_string() });
    let extra = match w {
        Warning::UnsealedTail { bytes, .. } => json!({ "bytes": bytes }),
        Warning::History(HistoryWarning::Adopted { seq, .. }) | Warning::DeleteNotCompleted { seq, .. } => {
            json!({ "seq": seq })
        }
        Warning::History(HistoryWarning::RecoveredUnproven { start, end, seq, .. }) => {
            json!({ "start": start, "end": end, "seq": seq })
        }
        Warning::RenameNotCompleted { from, seq, .. } => json!({ "seq": seq, "from": path_text(from) }),
        Warning::StaleEpoch { epoch, since_ns, epoch_ns } => {
            json!({ "epoch": epoch, "since": rfc3339_ns(*since_ns), "epoch_ns": epoch_ns })
        }
        Warning::ArchiveCovered { key, version_id, .. } => json!({ "key": key, "version_id": version_id }),
        Warning::ArchiveHoldNotCleared { key, .. } => json!({ "key": key }),
        Warning::ArchiveNotChecked { bucket, copies } => json!({ "bucket": bucket, "copies": copies }),
        Warning::ArchiveNotArchived { size, .. } => json!({ "size": size }),
        Warning::ArchiveExpiredGone { key, retain_until_ns, .. } => {
            json!({ "key": key, "retain_until": rfc3339_ns(*retain_until_ns) })
        }
    };
    merge(&mut v, extra, w.path());
    v
}

fn merge(v: &mut Value, extra: Value, path: Option<&RelPath>) {
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
        if let Some(p) = path {
            obj.insert("path".into(), json!(path_text(p)));
            put_hex(obj, "path", p);
        }
    }
}

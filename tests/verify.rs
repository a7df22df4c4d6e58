//! The tamper matrix for `wormfs verify` and the admin script `scripts/wormfs-verify`, through a
//! real mount: build a store by writing through the mount, stop cleanly, tamper with the backing
//! store or the index while nothing is mounted, and check that both the subcommand and the
//! script exit 1 with a finding of the right kind naming the right file or record — and that a
//! store nobody touched exits 0. Every case runs on a fresh store.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use rocksdb::{ColumnFamilyDescriptor, DBCompressionType, Options, DB};
use serde_json::Value;

use common::*;
use wormfs::core::chain;
use wormfs::core::record::{Payload, Record};

/// The admin script under test.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/wormfs-verify");
const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Running verify
// ---------------------------------------------------------------------------------------------

/// `wormfs verify ARGS`, bounded by timeout(1).
fn sub_cmd(args: &[OsString]) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "60"]).arg(WORMFS).arg("verify").args(args).env_remove("RUST_LOG");
    cmd
}

/// `scripts/wormfs-verify ARGS` with the binary under test and no defaults from the host.
fn script_cmd(args: &[OsString]) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "60"])
        .arg(SCRIPT)
        .args(args)
        .env("WORMFS_BIN", WORMFS)
        .env("WORMFS_ENV_FILE", "/nonexistent")
        .env_remove("WORMFS_DATA")
        .env_remove("WORMFS_STATE")
        .env_remove("WORMFS_PUBKEY")
        .env_remove("RUST_LOG");
    cmd
}

fn os_args(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_owned()).collect()
}

/// One verify run: the exit status, the human report, and the `--json` document.
#[derive(Debug)]
struct Outcome {
    human: String,
    json: Value,
}

impl Outcome {
    fn findings(&self) -> &Vec<Value> {
        self.json["findings"].as_array().expect("findings is an array")
    }

    fn warnings(&self) -> &Vec<Value> {
        self.json["warnings"].as_array().expect("warnings is an array")
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.findings().iter().filter(|f| f["kind"] == kind).collect()
    }

    /// The finding of `kind` about the file `path` ("/app.log"); its message must name the file.
    #[track_caller]
    fn file_finding(&self, kind: &str, path: &str) -> &Value {
        let Some(f) = self.findings().iter().find(|f| f["kind"] == kind && f["path"] == path) else {
            panic!("expected a {kind} finding with path {path}, got:\n{:#}", self.json["findings"]);
        };
        let message = f["message"].as_str().unwrap();
        assert!(message.contains(path), "the message of {f:#} does not name {path}");
        f
    }

    /// The finding of `kind` about record `seq`; its message must name the record.
    #[track_caller]
    fn record_finding(&self, kind: &str, seq: u64) -> &Value {
        let Some(f) = self.findings().iter().find(|f| f["kind"] == kind && f["seq"] == seq) else {
            panic!("expected a {kind} finding with seq {seq}, got:\n{:#}", self.json["findings"]);
        };
        let message = f["message"].as_str().unwrap();
        assert!(message.contains(&format!("record {seq}")), "the message of {f:#} does not name record {seq}");
        f
    }

    /// Every finding is about the file `path` (no collateral reports on untouched files or the chain).
    #[track_caller]
    fn assert_only_about(&self, path: &str) {
        for f in self.findings() {
            assert_eq!(f["path"], path, "finding about something else than {path}:\n{:#}", self.json["findings"]);
        }
    }
}

/// Run the subcommand and the script, each with and without `--json`, on `args`; assert all four
/// exit `want`, that the reports agree with each other and with the exit status; return the
/// subcommand's reports.
#[track_caller]
fn verify(args: &[OsString], want: i32) -> Outcome {
    assert!(want == 0 || want == 1, "use cannot_verify for exit 2");
    let mut json_args = args.to_vec();
    json_args.push("--json".into());
    let runs = [
        ("wormfs verify", run_cmd(&mut sub_cmd(args)), run_cmd(&mut sub_cmd(&json_args))),
        ("scripts/wormfs-verify", run_cmd(&mut script_cmd(args)), run_cmd(&mut script_cmd(&json_args))),
    ];
    let mut outcomes = Vec::new();
    for (who, human, json) in runs {
        assert_eq!(human.status.code(), Some(want), "{who} {args:?}: exit status\n{human:#?}");
        assert_eq!(json.status.code(), Some(want), "{who} {args:?} --json: exit status\n{json:#?}");
        let out = &human.stdout;
        let first = out.lines().next().unwrap_or("");
        if want == 0 {
            assert!(first.starts_with("wormfs verify: INTACT"), "{who}: verdict line {first:?}\n{out}");
        } else {
            assert_eq!(first, "wormfs verify: TAMPERING OR LOSS FOUND", "{who}: verdict line\n{out}");
        }
        for label in ["key:", "head:", "records:", "files:", "findings:", "warnings:"] {
            assert!(out.lines().any(|l| l.starts_with(label)), "{who}: no {label:?} summary line\n{out}");
        }

        let doc: Value = serde_json::from_str(&json.stdout)
            .unwrap_or_else(|e| panic!("{who} --json printed no JSON document ({e}):\n{}", json.stdout));
        assert_eq!(doc["format"], 1, "{doc:#}");
        assert_eq!(doc["verdict"], if want == 0 { "intact" } else { "tampered" }, "{doc:#}");
        let findings = doc["findings"].as_array().expect("findings array");
        assert_eq!(findings.is_empty(), want == 0, "{who}: exit {want} with findings {findings:#?}");
        // Each finding once in the human report, and the counts add up.
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for f in findings {
            let kind = f["kind"].as_str().expect("finding kind");
            let line = format!("FINDING {kind}: {}", f["message"].as_str().expect("finding message"));
            assert!(out.lines().any(|l| l == line), "{who}: human report lacks {line:?}\n{out}");
            *counts.entry(kind.to_string()).or_default() += 1;
        }
        assert_eq!(out.lines().filter(|l| l.starts_with("FINDING ")).count(), findings.len(), "{out}");
        assert_eq!(doc["counts"], serde_json::to_value(&counts).unwrap(), "{doc:#}");
        for w in doc["warnings"].as_array().expect("warnings array") {
            assert!(out.contains(w["message"].as_str().unwrap()), "{who}: human report lacks warning {w}\n{out}");
        }
        outcomes.push(Outcome { human: human.stdout, json: doc });
    }
    // The script reports exactly what the subcommand does.
    let (sub, script) = (&outcomes[0], &outcomes[1]);
    for field in ["verdict", "key", "head", "records", "files", "bytes_hashed", "counts", "findings", "warnings"] {
        assert_eq!(sub.json[field], script.json[field], "script and subcommand disagree on {field}");
    }
    outcomes.swap_remove(0)
}

/// Both the subcommand and the script, with and without `--json`, exit 2 without a report, and
/// give `why` on stderr (one of the reasons below), so a failure for another cause fails the test.
#[track_caller]
fn cannot_verify(args: &[OsString], why: &str) {
    let mut json_args = args.to_vec();
    json_args.push("--json".into());
    for (who, out) in [
        ("wormfs verify", run_cmd(&mut sub_cmd(args))),
        ("wormfs verify --json", run_cmd(&mut sub_cmd(&json_args))),
        ("scripts/wormfs-verify", run_cmd(&mut script_cmd(args))),
        ("scripts/wormfs-verify --json", run_cmd(&mut script_cmd(&json_args))),
    ] {
        assert_eq!(out.status.code(), Some(2), "{who} {args:?}: expected exit 2 (cannot verify)\n{out:#?}");
        assert!(out.stdout.trim().is_empty(), "{who}: printed a report although it could not verify\n{out:#?}");
        assert!(out.stderr.contains(why), "{who}: stderr should say {why:?}\n{out:#?}");
    }
}

// Why verify cannot verify, as it prints the reason.

/// STATE_DIR has no index (never mounted, or the wrong directory).
fn no_index(state: &Path) -> String {
    format!("cannot verify: no index at {} (was this state directory ever mounted?)", state.join("index").display())
}

/// No `--pubkey`, and STATE_DIR has no public key to fall back on.
fn no_public_key(state: &Path) -> String {
    format!("cannot verify: no public key at {}; pass --pubkey FILE|HEX", state.join("signing.pub").display())
}

/// `--data` is missing or not a directory.
fn not_a_data_dir(data: &Path) -> String {
    format!("cannot verify: data directory {} is not a directory", data.display())
}

/// `spec` is what was passed to `--pubkey`: a file, or the key as hex.
fn malformed_key(spec: &Path) -> String {
    format!("cannot verify: {} is not a 64-hex-digit ed25519 key", spec.display())
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

/// What each file gets: one entry per open/append/close cycle, each sealed at close.
fn plan() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let lines = |tag: &str, n: usize| -> Vec<u8> {
        (0..n).map(|i| format!("<13>{tag} line {i}: something happened\n")).collect::<String>().into_bytes()
    };
    vec![
        ("app.log", vec![lines("app-a", 3), lines("app-b", 5), lines("app-c", 2)]),
        ("sub/web.log", vec![lines("web-a", 4), lines("web-b", 6)]),
        // The first segment is longer than the checker's 4 MiB read buffer.
        ("big.bin", vec![pseudo_random_bytes(4 * MIB + 4097, 0xb16), pseudo_random_bytes(300_001, 0xb17)]),
    ]
}

/// (start, end, seq) of each Seal of `path` ("/app.log") in `records` (`wormfs log --json`).
fn seals_of(records: &[Value], path: &str) -> Vec<(u64, u64, u64)> {
    records
        .iter()
        .filter(|r| r["kind"] == "Seal" && r["path"] == path)
        .map(|r| (r["start"].as_u64().unwrap(), r["end"].as_u64().unwrap(), r["seq"].as_u64().unwrap()))
        .collect()
}

/// A store written through the mount and cleanly stopped.
struct Store {
    m: TestMount,
    /// The public key as keygen wrote it, read before any tampering.
    pubkey_hex: String,
    /// A copy of it kept outside STATE_DIR, as an admin would.
    pubkey_file: PathBuf,
    /// `wormfs log --json` of the untouched chain.
    records: Vec<Value>,
}

impl Store {
    #[track_caller]
    fn build() -> Store {
        let mut m = TestMount::builder().arg("--seal-interval").arg("1h").start();
        m.mkdir("sub");
        for (rel, cycles) in plan() {
            let path = format!("/{rel}");
            let mut size = 0u64;
            for bytes in cycles {
                m.append(rel, &bytes);
                size += bytes.len() as u64;
                let sealed = wait_until(Duration::from_secs(5), || {
                    seals_of(&m.records(), &path).last().map(|s| s.1) == Some(size)
                });
                assert!(sealed, "close did not seal {path} up to {size}: {:#?}", m.records());
            }
        }
        m.stop();
        let records = m.records();
        assert_eq!(records.last().unwrap()["kind"], "Unmount", "{records:#?}");
        // The segments are exactly the write cycles.
        for (rel, cycles) in plan() {
            let mut at = 0u64;
            let mut want = Vec::new();
            for c in &cycles {
                want.push((at, at + c.len() as u64));
                at += c.len() as u64;
            }
            let got: Vec<(u64, u64)> = seals_of(&records, &format!("/{rel}")).iter().map(|s| (s.0, s.1)).collect();
            assert_eq!(got, want, "segments of /{rel}");
            assert_eq!(fs::metadata(m.backing(rel)).unwrap().len(), at);
        }
        let pubkey_hex = fs::read_to_string(m.state().join("signing.pub")).unwrap().trim().to_string();
        assert_eq!(pubkey_hex.len(), 64);
        let pubkey_file = m.scratch().join("trusted.pub");
        fs::write(&pubkey_file, format!("{pubkey_hex}\n")).unwrap();
        Store { m, pubkey_hex, pubkey_file, records }
    }

    /// `--data DATA --state STATE`: the key from STATE_DIR/signing.pub.
    fn args(&self) -> Vec<OsString> {
        os_args(&[&"--data", &self.m.data(), &"--state", &self.m.state()])
    }

    /// `--data DATA --state STATE --pubkey FILE` with the copy kept outside the state.
    fn args_with_key(&self) -> Vec<OsString> {
        let mut a = self.args();
        a.extend(os_args(&[&"--pubkey", &self.pubkey_file]));
        a
    }

    /// (start, end, seq) of the `i`th seal of `path`.
    #[track_caller]
    fn seal(&self, path: &str, i: usize) -> (u64, u64, u64) {
        seals_of(&self.records, path)[i]
    }

    fn seals(&self, path: &str) -> Vec<(u64, u64, u64)> {
        seals_of(&self.records, path)
    }

    fn size(&self, rel: &str) -> u64 {
        fs::metadata(self.m.backing(rel)).unwrap().len()
    }

    fn last_seq(&self) -> u64 {
        self.records.last().unwrap()["seq"].as_u64().unwrap()
    }
}

/// Invert one byte of a backing file in place.
#[track_caller]
fn flip_byte(path: &Path, offset: u64) {
    unprotect(path);
    let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0xff], offset).unwrap();
    f.sync_all().unwrap();
}

// ---------------------------------------------------------------------------------------------
// The index, opened behind wormfs' back
// ---------------------------------------------------------------------------------------------

fn open_index(state: &Path) -> DB {
    let options = || {
        let mut o = Options::default();
        o.set_compression_type(DBCompressionType::None);
        o
    };
    let path = state.join("index");
    // Every column family the index has ("records", "files", "meta", and any the layout adds):
    // RocksDB refuses to open a database without all of them.
    let names = DB::list_cf(&options(), &path).expect("list the index's column families");
    assert!(names.iter().any(|n| n == "records"), "no records column family in {names:?}");
    let cfs = names.into_iter().map(|name| ColumnFamilyDescriptor::new(name, options()));
    DB::open_cf_descriptors(&options(), &path, cfs).expect("open the index read-write")
}

fn raw_record(db: &DB, seq: u64) -> Vec<u8> {
    let cf = db.cf_handle("records").unwrap();
    db.get_cf(cf, seq.to_be_bytes()).unwrap().unwrap_or_else(|| panic!("no record {seq} in the index"))
}

fn get_record(db: &DB, seq: u64) -> Record {
    Record::decode(&raw_record(db, seq)).expect("decode a stored record")
}

fn put_raw(db: &DB, seq: u64, bytes: &[u8]) {
    let cf = db.cf_handle("records").unwrap();
    db.put_cf(cf, seq.to_be_bytes(), bytes).unwrap();
}

fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Intact
// ---------------------------------------------------------------------------------------------

#[test]
fn an_untouched_store_is_intact_by_subcommand_and_script() {
    let s = Store::build();
    let total: u64 = plan().iter().map(|(_, c)| c.iter().map(|b| b.len() as u64).sum::<u64>()).sum();
    let last = s.records.last().unwrap();

    // The key from STATE_DIR, from a file kept elsewhere, and as hex.
    let mut with_hex = s.args();
    with_hex.extend(os_args(&[&"--pubkey", &s.pubkey_hex]));
    for (args, source) in [(s.args(), "state"), (s.args_with_key(), "argument"), (with_hex, "argument")] {
        let o = verify(&args, 0);
        let j = &o.json;
        assert_eq!(j["key"]["source"], source, "{j:#}");
        assert_eq!(j["key"]["public_key"], s.pubkey_hex.as_str());
        assert_eq!(j["records"], s.records.len() as u64, "{j:#}");
        assert_eq!(j["head"]["seq"], last["seq"], "{j:#}");
        assert_eq!(j["head"]["hash"], last["hash"], "{j:#}");
        assert_eq!(j["files"], 3, "{j:#}");
        assert_eq!(j["bytes_hashed"], total, "{j:#}");
        assert!(j["threads"].as_u64().unwrap() >= 1);
        assert!(j["seconds"].as_f64().unwrap() >= 0.0);
        assert!(j["throughput_mb_s"].as_f64().is_some());
        assert_eq!(j["counts"], serde_json::json!({}));
        assert!(o.warnings().is_empty(), "{j:#}");
        assert!(o.human.lines().any(|l| l.trim_end() == "findings:  0"), "{}", o.human);
        let key_line = o.human.lines().find(|l| l.starts_with("key:")).unwrap();
        assert!(key_line.contains(&s.pubkey_hex), "{key_line}");
        if source == "state" {
            assert!(key_line.contains("from the state being checked") && key_line.contains("--pubkey"), "{key_line}");
        } else {
            assert!(key_line.contains("given with --pubkey"), "{key_line}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tampering with DATA_DIR
// ---------------------------------------------------------------------------------------------

/// Flip the byte at `offset` of `rel`; expect exactly one content_changed naming the segment
/// [start, end) sealed by record `seq`.
#[track_caller]
fn flipped_byte_is_found(s: &Store, rel: &str, offset: u64, segment: (u64, u64, u64)) {
    let path = format!("/{rel}");
    let (start, end, seq) = segment;
    assert!(start <= offset && offset < end, "offset {offset} outside [{start}, {end})");
    let before = fs::read(s.m.backing(rel)).unwrap();
    flip_byte(&s.m.backing(rel), offset);
    let after = fs::read(s.m.backing(rel)).unwrap();
    assert_eq!(before.len(), after.len());
    assert_eq!(before.iter().zip(&after).filter(|(a, b)| a != b).count(), 1, "exactly one byte changed");

    for args in [s.args_with_key(), s.args()] {
        let o = verify(&args, 1);
        let f = o.file_finding("file.content_changed", &path);
        assert_eq!((f["start"].as_u64(), f["end"].as_u64()), (Some(start), Some(end)), "segment of {f:#}");
        assert_eq!(f["seq"], seq, "{f:#}");
        assert!(f["message"].as_str().unwrap().contains(&format!("[{start}, {end})")), "{f:#}");
        assert_eq!(o.findings().len(), 1, "only the changed segment is reported:\n{:#}", o.json);
    }
}

#[test]
fn a_flipped_first_byte_is_content_changed_in_the_first_segment() {
    let s = Store::build();
    flipped_byte_is_found(&s, "app.log", 0, s.seal("/app.log", 0));
}

#[test]
fn a_flipped_middle_byte_is_content_changed_in_the_middle_segment() {
    let s = Store::build();
    let seg = s.seal("/app.log", 1);
    assert!(seg.0 > 0 && seg.1 < s.size("app.log"), "a middle segment");
    flipped_byte_is_found(&s, "app.log", (seg.0 + seg.1) / 2, seg);
}

#[test]
fn a_flipped_last_byte_is_content_changed_in_the_last_segment() {
    let s = Store::build();
    let size = s.size("sub/web.log");
    let seg = *s.seals("/sub/web.log").last().unwrap();
    assert_eq!(seg.1, size);
    flipped_byte_is_found(&s, "sub/web.log", size - 1, seg);
}

#[test]
fn a_flipped_byte_past_the_first_read_buffer_is_found_in_a_long_segment() {
    let s = Store::build();
    // Inside the first 4 MiB + 4097-byte segment, after the checker's first 4 MiB read.
    let seg = s.seal("/big.bin", 0);
    assert!(seg.1 > 4 * MIB as u64);
    flipped_byte_is_found(&s, "big.bin", 4 * MIB as u64 + 100, seg);
}

#[test]
fn a_flipped_last_byte_of_a_long_file_is_found_in_its_second_segment() {
    let s = Store::build();
    let size = s.size("big.bin");
    let seg = s.seal("/big.bin", 1);
    assert_eq!(seg.1, size);
    flipped_byte_is_found(&s, "big.bin", size - 1, seg);
}

#[test]
fn bytes_appended_to_a_backing_file_after_unmount_are_found() {
    let s = Store::build();
    unprotect(s.m.backing("app.log"));
    let mut f = OpenOptions::new().append(true).open(s.m.backing("app.log")).unwrap();
    f.write_all(b"<13>forged line appended while unmounted\n").unwrap();
    drop(f);
    let o = verify(&s.args_with_key(), 1);
    let f = o.file_finding("file.appended_after_unmount", "/app.log");
    assert_eq!(f["bytes"], 41, "{f:#}");
    o.assert_only_about("/app.log");
    assert!(o.of_kind("file.content_changed").is_empty(), "the sealed bytes are untouched: {:#}", o.json);
}

#[test]
fn a_truncated_backing_file_is_found() {
    let s = Store::build();
    let (start, end, _) = *s.seals("/sub/web.log").last().unwrap();
    let cut = start + (end - start) / 2;
    unprotect(s.m.backing("sub/web.log"));
    let f = OpenOptions::new().write(true).open(s.m.backing("sub/web.log")).unwrap();
    f.set_len(cut).unwrap();
    drop(f);
    let o = verify(&s.args_with_key(), 1);
    let f = o.file_finding("file.truncated", "/sub/web.log");
    assert_eq!(f["size"], cut, "{f:#}");
    assert_eq!(f["sealed"], end, "{f:#}");
    o.assert_only_about("/sub/web.log");
}

#[test]
fn a_deleted_backing_file_is_missing() {
    let s = Store::build();
    unprotect(s.m.backing("big.bin"));
    fs::remove_file(s.m.backing("big.bin")).unwrap();
    let o = verify(&s.args_with_key(), 1);
    o.file_finding("file.missing", "/big.bin");
    assert_eq!(o.findings().len(), 1, "{:#}", o.json);
}

#[test]
fn files_added_to_the_data_dir_are_injected() {
    let s = Store::build();
    fs::write(s.m.backing("evil.log"), b"never written through wormfs\n").unwrap();
    fs::create_dir(s.m.backing("newdir")).unwrap();
    fs::write(s.m.backing("newdir/evil2.log"), b"nor this\n").unwrap();
    fs::write(s.m.backing("sub/evil3.log"), b"nor this one\n").unwrap();
    let o = verify(&s.args_with_key(), 1);
    for path in ["/evil.log", "/newdir/evil2.log", "/sub/evil3.log"] {
        o.file_finding("file.injected", path);
    }
    assert_eq!(o.findings().len(), 3, "{:#}", o.json);
}

// ---------------------------------------------------------------------------------------------
// Tampering with the index
// ---------------------------------------------------------------------------------------------

#[test]
fn a_record_deleted_from_the_index_is_a_gap() {
    let s = Store::build();
    let (_, _, seq) = s.seal("/app.log", 1);
    let (_, _, next_seal) = s.seal("/app.log", 2);
    {
        let db = open_index(s.m.state());
        let cf = db.cf_handle("records").unwrap();
        db.delete_cf(cf, seq.to_be_bytes()).unwrap();
        assert!(db.get_cf(cf, seq.to_be_bytes()).unwrap().is_none());
    }
    let o = verify(&s.args_with_key(), 1);
    let gaps = o.of_kind("chain.gap");
    assert_eq!(gaps.len(), 1, "{:#}", o.json);
    let gap = gaps[0];
    // A gap is a range of records: from..=to, here the single deleted one.
    let named = gap["seq"] == seq || (gap["from"] == seq && gap["to"] == seq);
    assert!(named, "the gap does not name record {seq}: {gap:#}");
    assert!(gap["message"].as_str().unwrap().contains(&format!("record {seq} ")), "{gap:#}");
    // The file whose seal vanished no longer chains at its next seal.
    let f = o.file_finding("file.seals_do_not_chain", "/app.log");
    assert_eq!(f["seq"], next_seal, "{f:#}");
}

#[test]
fn a_changed_record_payload_is_a_bad_hash_and_signature() {
    let s = Store::build();
    let (_, _, seq) = s.seal("/app.log", 0);
    {
        let db = open_index(s.m.state());
        let mut rec = get_record(&db, seq);
        let Payload::Seal(seg) = &mut rec.fields.payload else { panic!("record {seq} is not a Seal") };
        seg.segment_hash[0] ^= 1;
        put_raw(&db, seq, &rec.encode());
    }
    let o = verify(&s.args_with_key(), 1);
    o.record_finding("chain.bad_hash", seq);
    o.record_finding("chain.bad_signature", seq);
    // Only record seq itself was touched.
    for f in o.findings().iter().filter(|f| f["kind"] == "chain.bad_signature" || f["kind"] == "chain.bad_hash") {
        assert_eq!(f["seq"], seq, "{:#}", o.json);
    }
}

#[test]
fn a_changed_record_with_a_recomputed_hash_is_a_bad_signature() {
    let s = Store::build();
    // The last seal before the unmount's KeyRotate and Unmount: claim one byte fewer was sealed.
    let (_, end, seq) = s.seal("/big.bin", 1);
    assert_eq!(seq + 2, s.last_seq(), "the unmount's KeyRotate and the Unmount follow");
    {
        let db = open_index(s.m.state());
        let mut rec = get_record(&db, seq);
        let Payload::Seal(seg) = &mut rec.fields.payload else { panic!("record {seq} is not a Seal") };
        assert_eq!(seg.end, end);
        seg.end -= 1;
        rec.hash = rec.fields.hash();
        put_raw(&db, seq, &rec.encode());
    }
    let o = verify(&s.args_with_key(), 1);
    o.record_finding("chain.bad_signature", seq);
    assert!(o.of_kind("chain.bad_hash").is_empty(), "the hash was recomputed: {:#}", o.json);
    assert_eq!(o.of_kind("chain.bad_signature").len(), 1, "{:#}", o.json);
    // The attacker did not rewrite the next record, which still names the old hash.
    o.record_finding("chain.broken_link", seq + 1);
}

#[test]
fn swapped_records_are_misplaced_and_out_of_order() {
    let s = Store::build();
    let (_, _, a) = s.seal("/app.log", 0);
    let (_, _, b) = s.seal("/big.bin", 0);
    assert!(a + 1 < b);
    {
        let db = open_index(s.m.state());
        let (va, vb) = (raw_record(&db, a), raw_record(&db, b));
        put_raw(&db, a, &vb);
        put_raw(&db, b, &va);
    }
    let o = verify(&s.args_with_key(), 1);
    let misplaced = o.of_kind("chain.misplaced");
    let at = |seq: u64, key: u64| misplaced.iter().any(|f| f["seq"] == seq && f["stored_at"] == key);
    assert!(at(b, a) && at(a, b), "expected records {a} and {b} misplaced at each other's key: {:#}", o.json);
    o.record_finding("chain.misplaced", a);
    o.record_finding("chain.misplaced", b);
    o.record_finding("chain.out_of_order", a);
}

#[test]
fn a_record_resigned_with_another_key_is_a_bad_signature() {
    let s = Store::build();
    let (_, _, seq) = s.seal("/app.log", 1);
    {
        let db = open_index(s.m.state());
        let rec = get_record(&db, seq);
        let forged = chain::sign(rec.fields.clone(), &other_key());
        assert_eq!(forged.hash, rec.hash, "same fields, same hash");
        assert_ne!(forged.signature, rec.signature);
        put_raw(&db, seq, &forged.encode());
    }
    let o = verify(&s.args_with_key(), 1);
    o.record_finding("chain.bad_signature", seq);
    assert_eq!(o.findings().len(), 1, "nothing else changed: {:#}", o.json);
}

#[test]
fn a_replaced_signing_pub_fails_every_signature_unless_pubkey_is_given() {
    let s = Store::build();
    let fake = hex(other_key().verifying_key().as_bytes());
    fs::write(s.m.state().join("signing.pub"), format!("{fake}\n")).unwrap();

    // The key from the (tampered) state: every record signed by keygen's key fails under it,
    // up to and including the first KeyRotate (after which the chain's own certificate names
    // the key, so the rotation is where the finding is).
    let o = verify(&s.args(), 1);
    assert_eq!(o.json["key"]["source"], "state");
    assert_eq!(o.json["key"]["public_key"], fake.as_str());
    let key_line = o.human.lines().find(|l| l.starts_with("key:")).unwrap();
    assert!(key_line.contains(&fake) && key_line.contains("from the state being checked"), "{key_line}");
    let first_rotation =
        s.records.iter().find(|r| r["kind"] == "KeyRotate").map(|r| r["seq"].as_u64().unwrap()).expect("a rotation");
    assert_eq!(o.of_kind("chain.bad_signature").len() as u64, first_rotation, "{:#}", o.json);
    for seq in 1..=first_rotation {
        o.record_finding("chain.bad_signature", seq);
    }
    o.record_finding("chain.unknown_key", 1);

    // The copy of the real key kept elsewhere wins over STATE_DIR/signing.pub: the chain is intact.
    let o = verify(&s.args_with_key(), 0);
    assert_eq!(o.json["key"]["source"], "argument");
    assert_eq!(o.json["key"]["public_key"], s.pubkey_hex.as_str());
}

#[test]
fn a_chain_forged_under_another_key_is_caught_only_with_the_kept_pubkey() {
    let s = Store::build();
    // The whole chain re-signed (and relinked) under the attacker's keys, each rotation
    // certifying a key of theirs, Mount records naming them, and STATE_DIR/signing.pub replaced
    // to match.
    let k = other_key();
    let n = s.last_seq();
    {
        let db = open_index(s.m.state());
        let mut prev = [0u8; 32];
        let mut signer = k.clone();
        let mut epoch_keys = 0u8;
        for seq in 1..=n {
            let mut fields = get_record(&db, seq).fields;
            let mut next = None;
            match &mut fields.payload {
                Payload::Mount { key_id, .. } => *key_id = chain::key_id(&signer.verifying_key()),
                Payload::KeyRotate { public_key, .. } => {
                    epoch_keys += 1;
                    let new = SigningKey::from_bytes(&[100 + epoch_keys; 32]);
                    *public_key = new.verifying_key().to_bytes();
                    next = Some(new);
                }
                _ => {}
            }
            fields.prev_hash = prev;
            let rec = chain::sign(fields, &signer);
            prev = rec.hash;
            put_raw(&db, seq, &rec.encode());
            if let Some(new) = next {
                signer = new;
            }
        }
    }
    let fake = hex(k.verifying_key().as_bytes());
    fs::write(s.m.state().join("signing.pub"), format!("{fake}\n")).unwrap();

    // With the real key kept elsewhere: every record is foreign.
    let o = verify(&s.args_with_key(), 1);
    assert_eq!(o.json["key"]["source"], "argument");
    let first_rotation =
        s.records.iter().find(|r| r["kind"] == "KeyRotate").map(|r| r["seq"].as_u64().unwrap()).expect("a rotation");
    for seq in 1..=first_rotation {
        o.record_finding("chain.bad_signature", seq);
    }
    o.record_finding("chain.unknown_key", 1);

    // Trusting the state's own key, the forgery checks out: which is why the report calls that
    // weaker evidence.
    let o = verify(&s.args(), 0);
    assert_eq!(o.json["key"]["source"], "state");
    assert_eq!(o.json["key"]["public_key"], fake.as_str());
    let key_line = o.human.lines().find(|l| l.starts_with("key:")).unwrap();
    assert!(
        key_line.contains("from the state being checked") && key_line.contains("--pubkey"),
        "the report must say a key from the state is weaker evidence: {key_line}"
    );
}

// ---------------------------------------------------------------------------------------------
// Cannot verify
// ---------------------------------------------------------------------------------------------

#[test]
fn a_missing_state_dir_or_index_cannot_be_verified() {
    let s = Store::build();
    let nowhere = s.m.scratch().join("no-such-state");
    // Without --pubkey the key would come from the missing state dir.
    cannot_verify(&os_args(&[&"--data", &s.m.data(), &"--state", &nowhere]), &no_public_key(&nowhere));
    cannot_verify(
        &os_args(&[&"--data", &s.m.data(), &"--state", &nowhere, &"--pubkey", &s.pubkey_file]),
        &no_index(&nowhere),
    );
    // A state dir with its key but without the index.
    fs::remove_dir_all(s.m.state().join("index")).unwrap();
    cannot_verify(&s.args(), &no_index(s.m.state()));
    cannot_verify(&s.args_with_key(), &no_index(s.m.state()));
}

#[test]
fn a_missing_data_dir_cannot_be_verified() {
    let s = Store::build();
    let nowhere = s.m.scratch().join("no-such-data");
    cannot_verify(&os_args(&[&"--data", &nowhere, &"--state", &s.m.state()]), &not_a_data_dir(&nowhere));
    cannot_verify(
        &os_args(&[&"--data", &nowhere, &"--state", &s.m.state(), &"--pubkey", &s.pubkey_file]),
        &not_a_data_dir(&nowhere),
    );
    // A file is not a data directory either.
    cannot_verify(&os_args(&[&"--data", &s.pubkey_file, &"--state", &s.m.state()]), &not_a_data_dir(&s.pubkey_file));
    // The store itself is fine.
    verify(&s.args_with_key(), 0);
}

#[test]
fn a_malformed_pubkey_cannot_be_verified() {
    let s = Store::build();
    let short = &s.pubkey_hex[..63];
    let garbage_file = s.m.scratch().join("garbage.pub");
    fs::write(&garbage_file, "not a key\n").unwrap();
    let non_hex = "z".repeat(64);
    for bad in [&"zz" as &dyn AsRef<std::ffi::OsStr>, &short, &non_hex, &garbage_file, &""] {
        let mut args = s.args();
        args.extend(os_args(&[&"--pubkey", bad]));
        cannot_verify(&args, &malformed_key(Path::new(bad)));
    }
    // A missing STATE_DIR/signing.pub without --pubkey: no key to trust.
    fs::remove_file(s.m.state().join("signing.pub")).unwrap();
    cannot_verify(&s.args(), &no_public_key(s.m.state()));
    verify(&s.args_with_key(), 0);
}

// ---------------------------------------------------------------------------------------------
// --path, live mounts, the script's defaults
// ---------------------------------------------------------------------------------------------

#[test]
fn path_limits_the_file_checks_to_a_subtree() {
    let s = Store::build();
    flip_byte(&s.m.backing("app.log"), 3);
    fs::write(s.m.backing("evil.log"), b"injected outside /sub\n").unwrap();
    let mut sub = s.args_with_key();
    sub.extend(os_args(&[&"--path", &"/sub"]));

    let o = verify(&sub, 0);
    assert_eq!(o.json["files"], 1, "{:#}", o.json);
    assert_eq!(o.json["bytes_hashed"], s.size("sub/web.log"), "{:#}", o.json);
    let o = verify(&s.args_with_key(), 1);
    o.file_finding("file.content_changed", "/app.log");
    o.file_finding("file.injected", "/evil.log");
    assert_eq!(o.findings().len(), 2, "{:#}", o.json);

    // Tampering under /sub is reported with --path /sub, and only that.
    fs::write(s.m.backing("sub/evil.log"), b"injected inside /sub\n").unwrap();
    let last = s.size("sub/web.log") - 1;
    flip_byte(&s.m.backing("sub/web.log"), last);
    let o = verify(&sub, 1);
    o.file_finding("file.content_changed", "/sub/web.log");
    o.file_finding("file.injected", "/sub/evil.log");
    for f in o.findings() {
        assert!(f["path"].as_str().is_some_and(|p| p.starts_with("/sub/")), "outside /sub: {f:#}");
    }
    assert_eq!(o.findings().len(), 2, "{:#}", o.json);
}

#[test]
fn verify_works_while_mounted_and_an_unsealed_tail_is_only_a_warning() {
    let mut m = TestMount::builder().arg("--seal-interval").arg("1h").start();
    m.append("a.log", b"sealed at close\n");
    assert!(wait_until(Duration::from_secs(5), || seals_of(&m.records(), "/a.log").len() == 1));
    let args = os_args(&[&"--data", &m.data(), &"--state", &m.state()]);

    // The daemon holds the index; verify opens it read-only beside it.
    let o = verify(&args, 0);
    assert!(o.warnings().is_empty(), "{:#}", o.json);
    let records = m.records();
    assert_eq!(o.json["records"], records.len() as u64);
    assert_eq!(o.json["head"]["seq"], records.last().unwrap()["seq"]);

    // Bytes written to a file still open, with no seal due for an hour.
    let mut f = OpenOptions::new().append(true).open(m.path("a.log")).unwrap();
    f.write_all(b"not sealed yet\n").unwrap();
    assert!(wait_until(Duration::from_secs(5), || fs::metadata(m.backing("a.log")).unwrap().len() == 31));
    assert_eq!(seals_of(&m.records(), "/a.log").len(), 1, "nothing sealed the tail yet");
    let o = verify(&args, 0);
    assert_eq!(o.warnings().len(), 1, "{:#}", o.json);
    let w = &o.warnings()[0];
    assert_eq!(w["kind"], "file.unsealed_tail", "{w:#}");
    assert_eq!(w["path"], "/a.log", "{w:#}");
    assert_eq!(w["bytes"], 15, "{w:#}");

    // Verify left the daemon alone: it still seals and commits.
    m.assert_append_works("b.log");
    drop(f);
    m.stop();
    let o = verify(&args, 0);
    assert!(o.warnings().is_empty(), "the tail was sealed at close: {:#}", o.json);
    assert_eq!(o.json["files"], 2);
}

#[test]
fn the_script_takes_its_defaults_from_the_env_file() {
    let s = Store::build();
    let env_file = s.m.scratch().join("wormfs.env");
    fs::write(
        &env_file,
        format!(
            "# as in /etc/default/wormfs\nWORMFS_DATA={}\nWORMFS_STATE=\"{}\"\nWORMFS_PUBKEY={}\n",
            s.m.data().display(),
            s.m.state().display(),
            s.pubkey_file.display()
        ),
    )
    .unwrap();
    let script = |env: Option<&Path>, args: &[&str]| {
        let mut cmd = script_cmd(&args.iter().map(OsString::from).collect::<Vec<_>>());
        if let Some(env) = env {
            cmd.env("WORMFS_ENV_FILE", env);
        }
        run_cmd(&mut cmd)
    };

    let out = script(Some(&env_file), &[]);
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    assert!(out.stdout.starts_with("wormfs verify: INTACT"), "{out:#?}");
    let out = script(Some(&env_file), &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["key"]["source"], "argument", "WORMFS_PUBKEY is used: {doc:#}");
    assert_eq!(doc["key"]["public_key"], s.pubkey_hex.as_str());
    assert_eq!(doc["files"], 3);

    // Without an env file or arguments it does not know what to verify.
    let out = script(None, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(out.stdout.is_empty(), "{out:#?}");
    assert!(
        out.stderr.contains("wormfs-verify: say which store to verify: --data DATA_DIR --state STATE_DIR"),
        "{out:#?}"
    );

    // Arguments win over the env file.
    let nowhere = s.m.scratch().join("no-such-data");
    let out = script(Some(&env_file), &["--data", nowhere.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "--data must override WORMFS_DATA: {out:#?}");
    assert!(out.stderr.contains(&not_a_data_dir(&nowhere)), "--data must override WORMFS_DATA: {out:#?}");

    // Tampering found through the env file's defaults.
    unprotect(s.m.backing("big.bin"));
    fs::remove_file(s.m.backing("big.bin")).unwrap();
    let out = script(Some(&env_file), &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["verdict"], "tampered");
    let findings = doc["findings"].as_array().unwrap();
    assert!(findings.iter().any(|f| f["kind"] == "file.missing" && f["path"] == "/big.bin"), "{doc:#}");
    let out = script(Some(&env_file), &[]);
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert!(out.stdout.starts_with("wormfs verify: TAMPERING OR LOSS FOUND\n"), "{out:#?}");
}

#[test]
fn records_dropped_from_the_end_are_found_by_the_index_head_and_by_a_kept_head() {
    let s = Store::build();
    let last = s.last_seq();
    let head = &s.records[(last - 1) as usize];
    let noted = format!("{}:{}", last, head["hash"].as_str().unwrap());
    // The kept head matches the untouched chain.
    verify(
        &{
            let mut a = s.args_with_key();
            a.extend(os_args(&[&"--expect-head", &noted]));
            a
        },
        0,
    );

    // Drop the newest two records (the last seal and Unmount), leaving the index's head alone.
    {
        let db = open_index(s.m.state());
        let cf = db.cf_handle("records").unwrap();
        db.delete_cf(cf, last.to_be_bytes()).unwrap();
        db.delete_cf(cf, (last - 1).to_be_bytes()).unwrap();
    }
    let o = verify(&s.args_with_key(), 1);
    let m = o.of_kind("chain.head_mismatch");
    assert_eq!(m.len(), 1, "{:#}", o.json);
    assert_eq!(m[0]["index_seq"], last);
    assert_eq!(m[0]["chain_seq"], last - 2);

    // A careful attacker also rewinds the index's head: only the head kept elsewhere shows it.
    {
        let db = open_index(s.m.state());
        let meta = db.cf_handle("meta").unwrap();
        let kept = &s.records[(last - 3) as usize];
        let mut value = (last - 2).to_be_bytes().to_vec();
        value.extend(wormfs::core::segment::from_hex(kept["hash"].as_str().unwrap()).unwrap());
        value.extend(kept["time_ns"].as_u64().unwrap().to_be_bytes());
        db.put_cf(meta, b"head", value).unwrap();
    }
    let without = run_cmd(&mut sub_cmd(&s.args_with_key()));
    assert_eq!(without.status.code(), Some(0), "a shortened chain is valid on its own: {}", without.stdout);
    let mut args = s.args_with_key();
    args.extend(os_args(&[&"--expect-head", &noted]));
    let o = verify(&args, 1);
    let f = o.of_kind("chain.expected_head_missing");
    assert_eq!(f.len(), 1, "{:#}", o.json);
    assert_eq!(f[0]["seq"], last);
    let bad = run_cmd(&mut sub_cmd(&{
        let mut a = s.args_with_key();
        a.extend(os_args(&[&"--expect-head", &"12:nothex"]));
        a
    }));
    assert_eq!(bad.status.code(), Some(2), "a malformed head is a usage error");
    assert!(bad.stderr.contains("`12:nothex` is not SEQ:HASH"), "the usage error should say why: {bad:#?}");
}

#[test]
fn under_systemd_findings_get_error_priority_and_the_verdict_feeds_metrics() {
    let s = Store::build();
    flip_byte(&s.m.backing("app.log"), 0);
    let metrics = s.m.scratch().join("verify.prom");
    let mut cmd = script_cmd(&s.args_with_key());
    // What systemd sets when stdout is the journal.
    cmd.env("JOURNAL_STREAM", "8:12345").env("WORMFS_VERIFY_METRICS", &metrics);
    let out = run_cmd(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    assert!(out.stdout.lines().any(|l| l.starts_with("<3>FINDING file.content_changed")), "{}", out.stdout);
    assert!(out.stdout.starts_with("<3>wormfs verify: TAMPERING"), "{}", out.stdout);
    let text = fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("wormfs_verify_intact 0"), "{text}");
    assert!(text.contains("wormfs_verify_findings 1"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// wormfs export
// ---------------------------------------------------------------------------------------------

/// `wormfs verify --json` with `args`: exit status and the findings and warnings (kind, message).
fn verdict(args: &[OsString]) -> (Option<i32>, Value, Vec<(String, String)>) {
    let out = run_cmd(sub_cmd(args).arg("--json"));
    let json: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {out:#?}"));
    let items = ["findings", "warnings"]
        .iter()
        .flat_map(|f| json[*f].as_array().unwrap().clone())
        .map(|v| (v["kind"].as_str().unwrap().to_string(), v["message"].as_str().unwrap().to_string()))
        .collect();
    (out.status.code(), json["verdict"].clone(), items)
}

#[test]
fn an_export_verifies_exactly_as_the_index_it_was_taken_from() {
    let mut m = TestMount::start();
    m.create("a.log", b"first line\n");
    m.append("a.log", b"second line\n");
    m.create("b.log", b"other\n");
    m.stop();
    let (state, data) = (m.state().to_path_buf(), m.data().to_path_buf());
    let pubkey = state.join("signing.pub");
    let (dir, export) = (m.scratch().to_path_buf(), m.scratch().join("records.export"));
    let from_index = || verdict(&os_args(&[&"--data", &data, &"--state", &state, &"--pubkey", &pubkey]));
    let from_export = || verdict(&os_args(&[&"--data", &data, &"--export", &export, &"--pubkey", &pubkey]));
    let take = |to: &Path| {
        let out = run_cmd(Command::new(WORMFS).args(["export", "--state"]).arg(&state).arg("--out").arg(to));
        out.assert_success("wormfs export --out");
    };

    // Intact: the same verdict from both, and --out writes what stdout gets.
    take(&export);
    let stdout = run_cmd(Command::new(WORMFS).args(["export", "--state"]).arg(&state));
    assert_eq!(stdout.stdout, fs::read_to_string(&export).unwrap(), "--out and stdout differ");
    assert!(stdout.stdout.starts_with("wormfs-export 1\nhead "), "{}", stdout.stdout);
    let intact = from_index();
    assert_eq!(intact.0, Some(0), "{intact:?}");
    assert_eq!(from_export(), intact);

    // Damage in the files, in a record and in the head: the export carries every bit of it.
    flip_byte(&data.join("a.log"), 3);
    {
        let db = open_index(&state);
        put_raw(&db, 3, b"garbled");
        db.delete_cf(db.cf_handle("meta").unwrap(), b"head").unwrap();
    }
    take(&export);
    let text = fs::read_to_string(&export).unwrap();
    assert!(
        text.contains("\nhead unreadable\n") && text.contains(&format!("\nrecord 3 {}\n", hex(b"garbled"))),
        "{text}"
    );
    let tampered = from_index();
    assert_eq!(tampered.0, Some(1), "{tampered:?}");
    for kind in ["file.content_changed", "chain.undecodable", "chain.head_mismatch"] {
        assert!(tampered.2.iter().any(|(k, _)| k == kind), "no {kind}: {tampered:?}");
    }
    assert_eq!(from_export(), tampered);

    // An export that is not one (a byte off), or no key, cannot be verified: exit 2, not a verdict.
    fs::write(dir.join("bad.export"), text.replacen("wormfs-export 1", "wormfs-export 2", 1)).unwrap();
    let out = run_cmd(&mut sub_cmd(&os_args(&[
        &"--data",
        &data,
        &"--export",
        &dir.join("bad.export"),
        &"--pubkey",
        &pubkey,
    ])));
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(out.stderr.contains("not a wormfs export: line 1"), "{}", out.stderr);
    let mut cmd = Command::new(WORMFS);
    cmd.args(["verify", "--data"]).arg(&data).arg("--export").arg(&export);
    cmd.env_remove("WORMFS_STATE").env("WORMFS_ENV_FILE", "/nonexistent");
    let out = run_cmd(&mut cmd);
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(out.stderr.contains("an export carries no key; pass --pubkey"), "{}", out.stderr);
}

//! Evidence that survives a root compromise, through a real mount: key epochs (the old key is
//! destroyed, a record signed or dated outside its epoch is caught), checkpoints held against
//! the chain (a rollback or a rewritten history is caught), and a real C2SP witness
//! (`aics-witness`) that cosigns extensions and refuses forks and rollbacks.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use serde_json::Value;

use common::witness::Witness;
use common::*;
use wormfs::core::chain;
use wormfs::core::record::{Payload, Record};

/// `wormfs verify --json` trusting the anchor key kept in STATE_DIR/signing.pub (as a copy an
/// admin kept elsewhere), with `extra` arguments: (exit status, report).
fn verify(tm: &TestMount, extra: &[&str]) -> (i32, Value) {
    let mut cmd = Command::new(WORMFS);
    cmd.arg("verify").arg("--data").arg(tm.data()).arg("--state").arg(tm.state());
    cmd.arg("--pubkey").arg(tm.state().join("signing.pub")).arg("--json").args(extra).env_remove("RUST_LOG");
    let out = run_cmd(&mut cmd);
    let doc: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {out:#?}"));
    (out.status.code().expect("verify exited by a signal"), doc)
}

fn kinds(doc: &Value) -> Vec<String> {
    doc["findings"].as_array().unwrap().iter().map(|f| f["kind"].as_str().unwrap().to_string()).collect()
}

fn open_index(state: &Path) -> DB {
    let cfs = ["records", "files", "holds", "meta", "tree"].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    DB::open_cf_descriptors(&Options::default(), state.join("index"), cfs).expect("open the index")
}

fn get_record(db: &DB, seq: u64) -> Record {
    let bytes = db.get_cf(db.cf_handle("records").unwrap(), seq.to_be_bytes()).unwrap().expect("record");
    Record::decode(&bytes).expect("decodes")
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

fn shown(found: &[(String, Vec<u8>)]) -> String {
    found
        .iter()
        .map(|(region, key)| format!("{} in {region}", wormfs::core::segment::hex(key)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every readable mapping of process `pid` searched for each needle: (mapping, needle) found.
fn search_memory(pid: u32, needles: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    use std::os::unix::fs::FileExt;
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).expect("read the daemon's maps");
    let mem = fs::File::open(format!("/proc/{pid}/mem")).expect("open the daemon's memory (root)");
    let mut found = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        let name = line.split_whitespace().nth(5).unwrap_or("[anonymous]").to_string();
        if !perms.starts_with('r') || name == "[vvar]" || name == "[vsyscall]" {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (u64::from_str_radix(start, 16).unwrap(), u64::from_str_radix(end, 16).unwrap());
        let mut buf = vec![0u8; (end - start) as usize];
        // A mapping that vanished or cannot be read (a guard page) is skipped.
        let Ok(n) = mem.read_at(&mut buf, start) else { continue };
        for needle in needles {
            if contains(&buf[..n], needle) {
                found.push((format!("{name} at {start:#x}"), needle.clone()));
            }
        }
    }
    found
}

/// The checkpoint key's vkey and the log's origin, as keygen wrote them.
fn checkpoint_vkey(tm: &TestMount) -> String {
    fs::read_to_string(tm.state().join("checkpoint.vkey")).unwrap().trim().to_string()
}

fn origin(vkey: &str) -> String {
    vkey.split('+').next().unwrap().to_string()
}

/// `wormfs checkpoint` written to a file in scratch.
fn take_checkpoint(tm: &TestMount, name: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["checkpoint"];
    args.extend_from_slice(extra);
    let out = run_cmd(&mut tm.wormfs_cmd(&args));
    out.assert_success("wormfs checkpoint");
    let path = tm.scratch().join(name);
    fs::write(&path, &out.stdout).unwrap();
    path
}

fn checkpoint_size(note: &str) -> u64 {
    note.lines().nth(1).and_then(|l| l.parse().ok()).unwrap_or_else(|| panic!("not a checkpoint: {note:?}"))
}

#[test]
fn epochs_verify_with_the_first_key_alone_and_no_old_key_is_left() {
    let tm = TestMount::builder().arg("--key-epoch").arg("1s").start();
    let anchor = fs::read_to_string(tm.state().join("signing.pub")).unwrap();
    // Watch the key file as an attacker with root would, collecting every epoch key it held.
    let mut seen = Vec::new();
    for i in 0..45 {
        if i % 3 == 0 {
            tm.append("app.log", format!("line {i}\n").as_bytes());
        }
        if let Ok(text) = fs::read_to_string(tm.state().join("signing.key")) {
            if !seen.contains(&text) {
                seen.push(text);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nor in the running daemon's memory (what root reads through /proc/PID/mem): every key
    // but the newest two seen (one may be mid-rotation) must be wiped.
    let pid = tm.pid().expect("the daemon runs");
    let wiped: Vec<Vec<u8>> =
        seen[..seen.len().saturating_sub(2)].iter().map(|k| wormfs::core::segment::from_hex(k).unwrap()).collect();
    assert!(!wiped.is_empty());
    let found = search_memory(pid, &wiped);
    assert!(found.is_empty(), "old epoch keys are still in the daemon's memory: {}", shown(&found));
    // The search itself works: the key signing now is there.
    let now = wormfs::core::segment::from_hex(&fs::read_to_string(tm.state().join("signing.key")).unwrap()).unwrap();
    assert!(!search_memory(pid, &[now]).is_empty(), "the current key was not found in the daemon's memory");
    // The key that lay on disk while wormfs was down is read by the next mount's main thread,
    // signs the Mount and the rotation away from it, and must then be gone from memory too.
    let mut tm = tm;
    tm.stop();
    let downtime_key = fs::read_to_string(tm.state().join("signing.key")).unwrap();
    tm.restart();
    std::thread::sleep(Duration::from_millis(2500));
    let pid = tm.pid().expect("the daemon runs");
    let mut wiped = wiped;
    wiped.push(wormfs::core::segment::from_hex(&downtime_key).unwrap());
    let found = search_memory(pid, &wiped);
    assert!(found.is_empty(), "after a remount, old keys are in the daemon's memory: {}", shown(&found));
    tm.stop();
    let rotations = tm.records().iter().filter(|r| r["kind"] == "KeyRotate").count();
    assert!(rotations >= 4, "a 1 s epoch over 4.5 s, plus the mount's: {rotations} rotations");
    assert!(seen.len() >= 3, "the key file changed as epochs passed: {} keys seen", seen.len());

    let (code, doc) = verify(&tm, &[]);
    assert_eq!(code, 0, "verified with only the first public key: {doc:#}");
    assert_eq!(doc["epoch"]["rotations"].as_u64(), Some(rotations as u64));
    assert!(doc["epoch"]["forward_secure_through"].as_u64().unwrap() > 1, "{doc:#}");
    assert_eq!(fs::read_to_string(tm.state().join("signing.pub")).unwrap(), anchor, "the trust anchor never changes");

    // No old epoch key is left anywhere in STATE_DIR: key files, RocksDB's tables and logs.
    let current = fs::read_to_string(tm.state().join("signing.key")).unwrap();
    assert!(!tm.state().join("signing.key.next").exists());
    let old: Vec<&String> = seen.iter().filter(|k| **k != current).collect();
    assert!(!old.is_empty());
    for file in files_under(tm.state()) {
        let bytes = fs::read(&file).unwrap();
        for key in &old {
            let seed = wormfs::core::segment::from_hex(key).unwrap();
            assert!(
                !contains(&bytes, key.trim().as_bytes()) && !contains(&bytes, &seed),
                "an old epoch key is still in {}",
                file.display()
            );
        }
    }
}

#[test]
fn a_record_forged_with_the_current_key_in_an_earlier_epoch_is_caught() {
    let mut tm = TestMount::builder().arg("--key-epoch").arg("1s").start();
    for i in 0..8 {
        tm.append("app.log", format!("line {i}\n").as_bytes());
        std::thread::sleep(Duration::from_millis(300));
    }
    tm.stop();
    let records = tm.records();
    let rotations: Vec<u64> =
        records.iter().filter(|r| r["kind"] == "KeyRotate").map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(rotations.len() >= 3, "{rotations:?}");
    // The attacker holds the current key (it is on disk) and rewrites a Seal of an earlier
    // epoch: between the first two timer rotations.
    let current = SigningKey::from_bytes(
        &wormfs::core::segment::from_hex(&fs::read_to_string(tm.state().join("signing.key")).unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    );
    let target = records
        .iter()
        .find(|r| {
            let seq = r["seq"].as_u64().unwrap();
            r["kind"] == "Seal" && seq > rotations[0] && seq < *rotations.last().unwrap()
        })
        .map(|r| r["seq"].as_u64().unwrap())
        .expect("a seal in an earlier epoch");
    {
        let db = open_index(tm.state());
        let mut fields = get_record(&db, target).fields;
        if let Payload::Seal(s) = &mut fields.payload {
            s.retain_until_ns = 1;
        }
        let forged = chain::sign(fields, &current);
        db.put_cf(db.cf_handle("records").unwrap(), target.to_be_bytes(), forged.encode()).unwrap();
    }
    let (code, doc) = verify(&tm, &[]);
    assert_eq!(code, 1, "{doc:#}");
    let at_target: Vec<&Value> = doc["findings"].as_array().unwrap().iter().filter(|f| f["seq"] == target).collect();
    assert!(at_target.iter().any(|f| f["kind"] == "chain.bad_signature"), "{doc:#}");

    // The same key, a new record at the end dated back into an earlier epoch.
    {
        let db = open_index(tm.state());
        let head = records.last().unwrap()["seq"].as_u64().unwrap();
        let last = get_record(&db, head);
        let early = get_record(&db, rotations[0]).fields.time_ns + 1;
        let fields = wormfs::core::record::Unsigned {
            seq: head + 1,
            time_ns: early,
            payload: Payload::Unmount,
            prev_hash: last.fields.hash(),
        };
        let forged = chain::sign(fields, &current);
        db.put_cf(db.cf_handle("records").unwrap(), (head + 1).to_be_bytes(), forged.encode()).unwrap();
    }
    let (code, doc) = verify(&tm, &[]);
    assert_eq!(code, 1);
    assert!(kinds(&doc).contains(&"chain.time_backwards".to_string()), "{doc:#}");
}

#[test]
fn a_key_kept_past_its_epoch_is_caught_signing_later_records() {
    let mut tm = TestMount::builder().arg("--key-epoch").arg("1s").start();
    tm.append("app.log", b"first\n");
    // The attacker copies the epoch key while the daemon runs...
    let stolen = fs::read_to_string(tm.state().join("signing.key")).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    tm.append("app.log", b"second\n");
    tm.stop();
    let stolen = SigningKey::from_bytes(&wormfs::core::segment::from_hex(&stolen).unwrap().try_into().unwrap());
    // ...and after rotations re-signs the last record with it.
    let head = tm.records().last().unwrap()["seq"].as_u64().unwrap();
    {
        let db = open_index(tm.state());
        let forged = chain::sign(get_record(&db, head).fields, &stolen);
        db.put_cf(db.cf_handle("records").unwrap(), head.to_be_bytes(), forged.encode()).unwrap();
    }
    let (code, doc) = verify(&tm, &[]);
    assert_eq!(code, 1);
    let f = doc["findings"].as_array().unwrap().iter().find(|f| f["seq"] == head).expect("a finding at the head");
    assert_eq!(f["kind"], "chain.wrong_epoch_key", "{doc:#}");
}

#[test]
fn a_chain_cut_back_is_caught_against_a_later_anchor() {
    let mut tm = TestMount::start();
    tm.append("a.log", b"one\n");
    tm.append("a.log", b"two\n");
    tm.stop();
    let anchor = take_checkpoint(&tm, "anchor", &[]);
    let (code, doc) = verify(&tm, &["--anchor", anchor.to_str().unwrap()]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["anchors"][0]["size"].as_u64(), Some(checkpoint_size(&fs::read_to_string(&anchor).unwrap())));

    // Drop the newest record and move the index's head back to the one before: nothing inside
    // the chain says a record is missing.
    {
        let db = open_index(tm.state());
        let head = tm.records().last().unwrap()["seq"].as_u64().unwrap();
        let prev = get_record(&db, head - 1);
        db.delete_cf(db.cf_handle("records").unwrap(), head.to_be_bytes()).unwrap();
        let mut value = (head - 1).to_be_bytes().to_vec();
        value.extend_from_slice(&prev.fields.hash());
        value.extend_from_slice(&prev.fields.time_ns.to_be_bytes());
        db.put_cf(db.cf_handle("meta").unwrap(), b"head", value).unwrap();
    }
    let (code, doc) = verify(&tm, &["--anchor", anchor.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(kinds(&doc).contains(&"chain.behind_anchor".to_string()), "{doc:#}");

    // An anchor that is not signed by the log's checkpoint key proves nothing.
    let text = fs::read_to_string(&anchor).unwrap();
    let forged = tm.scratch().join("forged");
    fs::write(&forged, text.replacen(&format!("\n{}\n", checkpoint_size(&text)), "\n1\n", 1)).unwrap();
    let (_, doc) = verify(&tm, &["--anchor", forged.to_str().unwrap()]);
    assert!(kinds(&doc).contains(&"anchor.unverified".to_string()), "{doc:#}");
}

#[test]
fn a_real_witness_cosigns_extensions_and_refuses_forks_and_rollbacks() {
    let mut tm = TestMount::start();
    let log_vkey = checkpoint_vkey(&tm);
    let witness = Witness::start(&origin(&log_vkey), &log_vkey);
    tm.stop();
    let mut tm = tm;
    tm.restart_with(&["--checkpoint-interval", "1s", "--witness", &witness.url, &witness.vkey]);
    tm.append("a.log", b"one\n");

    // The daemon's checkpoint file gets the witness' cosignature.
    let cosigned = |tm: &TestMount, min: u64| {
        let path = tm.state().join("checkpoint");
        wait_until(Duration::from_secs(15), || {
            fs::read_to_string(&path)
                .is_ok_and(|t| t.contains(&format!("— {} ", witness.name)) && checkpoint_size(&t) >= min)
        })
        .then(|| fs::read_to_string(&path).unwrap())
    };
    let first = cosigned(&tm, 1).unwrap_or_else(|| panic!("no cosigned checkpoint: {}", tm.log()));
    let first_size = checkpoint_size(&first);
    let anchor = tm.scratch().join("first");
    fs::write(&anchor, &first).unwrap();

    // An extension is cosigned too.
    tm.append("a.log", b"two\n");
    tm.append("b.log", b"three\n");
    let head_now = tm.records().last().unwrap()["seq"].as_u64().unwrap();
    let later = cosigned(&tm, head_now).unwrap_or_else(|| panic!("the extension was not cosigned: {}", tm.log()));
    assert!(checkpoint_size(&later) > first_size);
    let later_file = tm.scratch().join("later");
    fs::write(&later_file, &later).unwrap();
    assert_eq!(
        witness.log_status(&origin(&log_vkey))["size"].as_u64().map(|s| s >= checkpoint_size(&later)),
        Some(true)
    );
    tm.stop();

    let a = anchor.to_str().unwrap();
    let (code, doc) = verify(&tm, &["--anchor", a, "--witness-key", &witness.vkey]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["anchors"].as_array().unwrap().len(), 1);
    // Without the witness' cosignature an anchor does not satisfy --witness-key.
    let unsigned = take_checkpoint(&tm, "unsigned", &[]);
    let (code, doc) = verify(&tm, &["--anchor", unsigned.to_str().unwrap(), "--witness-key", &witness.vkey]);
    assert_eq!(code, 1);
    assert!(kinds(&doc).contains(&"anchor.unverified".to_string()), "{doc:#}");

    // A receipt against the cosigned checkpoint carries the witness' word to the auditor.
    let receipt = tm.scratch().join("a.receipt");
    let cp = later_file.to_str().unwrap();
    run_cmd(&mut tm.wormfs_cmd(&["receipt", "/a.log", "--checkpoint", cp, "--out", receipt.to_str().unwrap()]))
        .assert_success("wormfs receipt --checkpoint");
    let (code, out) = verify_receipt(&tm, &tm.backing("a.log"), &receipt, &["--witness-key", &witness.vkey]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("cosigned by {}", witness.name)), "{out}");
    let plain = tm.scratch().join("plain.receipt");
    let uncosigned = unsigned.to_str().unwrap();
    run_cmd(&mut tm.wormfs_cmd(&["receipt", "/a.log", "--checkpoint", uncosigned, "--out", plain.to_str().unwrap()]))
        .assert_success("wormfs receipt");
    let (code, out) = verify_receipt(&tm, &tm.backing("a.log"), &plain, &["--witness-key", &witness.vkey]);
    assert_eq!(code, 1, "a receipt without the witness' cosignature: {out}");

    // A rollback: drop records from the end; the witness has cosigned a larger tree.
    let head = tm.records().last().unwrap()["seq"].as_u64().unwrap();
    {
        let db = open_index(tm.state());
        for seq in (first_size + 1)..=head {
            db.delete_cf(db.cf_handle("records").unwrap(), seq.to_be_bytes()).unwrap();
        }
        let prev = get_record(&db, first_size);
        let mut value = first_size.to_be_bytes().to_vec();
        value.extend_from_slice(&prev.fields.hash());
        value.extend_from_slice(&prev.fields.time_ns.to_be_bytes());
        db.put_cf(db.cf_handle("meta").unwrap(), b"head", value).unwrap();
    }
    let out = run_cmd(&mut tm.wormfs_cmd(&["checkpoint", "--witness", &witness.url, &witness.vkey]));
    out.assert_failure("a rolled-back chain's checkpoint");
    assert!(out.stderr.contains("larger than this chain's"), "{out:#?}");

    // A fork: the whole chain rebuilt from the start (new index, adopted files, re-signed with
    // the keys the attacker holds) is caught against the anchor and refused by the witness.
    fs::remove_dir_all(tm.state().join("index")).unwrap();
    unprotect_tree(tm.data());
    tm.restart_with(&["--adopt-existing"]);
    tm.append("c.log", &[b'x'; 100]);
    for i in 0..(first_size as usize) {
        tm.append("c.log", format!("{i}\n").as_bytes());
    }
    tm.stop();
    let (code, doc) = verify(&tm, &["--anchor", a]);
    assert_eq!(code, 1);
    assert!(kinds(&doc).contains(&"chain.forked_from_anchor".to_string()), "{doc:#}");
    let size_before = witness.log_status(&origin(&log_vkey))["size"].as_u64();
    // wormfs' own tool refuses to sign over a chain that does not check out from the anchor...
    let out = run_cmd(&mut tm.wormfs_cmd(&["checkpoint", "--witness", &witness.url, &witness.vkey]));
    out.assert_failure("wormfs checkpoint of a rebuilt chain");
    assert!(out.stderr.contains("refusing to sign a checkpoint"), "{out:#?}");
    // ...so the attacker signs it with the stolen checkpoint key through their own code, and
    // submits it from every size the witness could expect: the witness refuses each.
    let store = wormfs::index::RocksStore::open_read_only(&tm.state().join("index")).unwrap();
    let state = wormfs::state_dir::StateDir::new(tm.state());
    let (name, key) = wormfs::keys::load_checkpoint_key(&state).unwrap();
    let forged = wormfs::checkpoint::sign(&store, &wormfs::checkpoint::LogSigner::new(name, key)).unwrap();
    assert!(forged.size > first_size, "the rebuilt chain is longer than the anchor: {}", forged.size);
    let wkey = wormfs::checkpoint::WitnessKey::parse(&witness.vkey).unwrap();
    for old in [0, first_size, checkpoint_size(&later)] {
        let mut w = wormfs::witness::Witness::new(&witness.url, wkey.clone());
        w.cosigned_size = old;
        let refused = w.cosign(&store, &forged).expect_err("the witness cosigned a fork");
        assert!(
            matches!(
                refused,
                wormfs::witness::WitnessError::Refused { status: 422, .. }
                    | wormfs::witness::WitnessError::Conflict { .. }
                    | wormfs::witness::WitnessError::Ahead { .. }
            ),
            "{refused:?}"
        );
    }
    assert_eq!(witness.log_status(&origin(&log_vkey))["size"].as_u64(), size_before, "the witness kept its view");
}

/// `wormfs verify-receipt` through the verify script, as an auditor runs it: (exit, stdout).
fn verify_receipt(tm: &TestMount, file: &Path, receipt: &Path, extra: &[&str]) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wormfs-verify");
    let mut cmd = Command::new(script);
    cmd.arg("receipt").arg("--key").arg(tm.state().join("checkpoint.vkey")).args(extra).arg(file).arg(receipt);
    cmd.env("WORMFS_BIN", WORMFS).env("WORMFS_ENV_FILE", "/nonexistent").env_remove("RUST_LOG");
    let out = run_cmd(&mut cmd);
    (out.status.code().expect("exit status"), format!("{}{}", out.stdout, out.stderr))
}

#[test]
fn a_receipt_proves_one_file_alone_and_fails_after_any_change() {
    let mut tm = TestMount::start();
    tm.mkdir("app");
    for i in 0..3 {
        tm.append("app/day.log", format!("day line {i}\n").as_bytes());
    }
    tm.append("app/other.log", b"not this one\n");
    tm.stop();
    let receipt = tm.scratch().join("day.receipt");
    run_cmd(&mut tm.wormfs_cmd(&["receipt", "/app/day.log", "--out", receipt.to_str().unwrap()]))
        .assert_success("wormfs receipt");
    // The auditor gets a copy of the file and the receipt, nothing else.
    let copy = tm.scratch().join("day.log");
    fs::copy(tm.backing("app/day.log"), &copy).unwrap();
    let (code, out) = verify_receipt(&tm, &copy, &receipt, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("RECEIPT VALID"), "{out}");
    let doc: Value = serde_json::from_str(&fs::read_to_string(&receipt).unwrap()).unwrap();
    assert_eq!(doc["records"].as_array().unwrap().len(), 3, "one record a seal: {doc:#}");

    // One byte of the file changed, anywhere: refused.
    let original = fs::read(&copy).unwrap();
    for at in [0, original.len() / 2, original.len() - 1] {
        let mut bytes = original.clone();
        bytes[at] ^= 0x20;
        fs::write(&copy, &bytes).unwrap();
        let (code, out) = verify_receipt(&tm, &copy, &receipt, &[]);
        assert_eq!(code, 1, "byte {at} of the file changed: {out}");
    }
    fs::write(&copy, &original).unwrap();
    // Another file's bytes with this receipt: refused.
    let (code, _) = verify_receipt(&tm, &tm.backing("app/other.log"), &receipt, &[]);
    assert_eq!(code, 1);

    // One byte of the receipt changed, at every place a byte means something: refused (1), or
    // not a receipt at all (2); never valid.
    let text = fs::read(&receipt).unwrap();
    let mut mutated = 0;
    for at in (0..text.len()).filter(|i| text[*i].is_ascii_alphanumeric()) {
        let mut bytes = text.clone();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        if bytes == text {
            continue;
        }
        let bad = tm.scratch().join("bad.receipt");
        fs::write(&bad, &bytes).unwrap();
        let (code, out) = verify_receipt(&tm, &copy, &bad, &[]);
        let around = String::from_utf8_lossy(&text[at.saturating_sub(30)..(at + 10).min(text.len())]).into_owned();
        assert_ne!(code, 0, "receipt byte {at} ({around:?}) changed and it still verified: {out}");
        mutated += 1;
        if mutated > 400 {
            break;
        }
    }
    assert!(mutated > 100, "{mutated} mutations tried");
}

#[test]
fn a_witness_that_is_down_is_counted_and_never_stops_sealing() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let vkey = {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let mut raw = vec![0x04];
        raw.extend_from_slice(key.as_bytes());
        let id = signed_note::key_id("witness.test/down", &raw);
        format!("witness.test/down+{id:08x}+{}", wormfs::keys::base64_encode(&raw))
    };
    let mut tm =
        TestMount::builder().arg("--checkpoint-interval").arg("1s").arg("--witness").arg(&url).arg(&vkey).start();
    tm.append("a.log", b"sealed while the witness is down\n");
    let metrics = tm.state().join("metrics.prom");
    let failing = wait_until(Duration::from_secs(15), || {
        fs::read_to_string(&metrics).is_ok_and(|m| {
            m.lines().any(|l| l.starts_with("wormfs_witness_failures_total ") && !l.ends_with(" 0"))
                && m.lines().any(|l| l.starts_with("wormfs_checkpoints_total ") && !l.ends_with(" 0"))
        })
    });
    assert!(
        failing,
        "the failures are counted and checkpoints still written: {}",
        fs::read_to_string(&metrics).unwrap_or_default()
    );
    assert!(tm.log().contains("witness.test/down"), "the failure is logged: {}", tm.log());
    tm.append("a.log", b"and after\n");
    tm.stop();
    let (code, doc) = verify(&tm, &[]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(tm.records().iter().filter(|r| r["kind"] == "Seal").count(), 2, "both appends were sealed");
    // The checkpoint file holds the log's own signature, no cosignature.
    let note = fs::read_to_string(tm.state().join("checkpoint")).unwrap();
    assert!(!note.contains("witness.test/down"), "{note}");
}

#[test]
fn a_record_dated_ahead_of_the_verifiers_clock_is_a_finding() {
    let mut tm = TestMount::start();
    tm.append("a.log", b"retained\n");
    tm.stop();
    // With the key on disk after a clean stop, an attacker dates records a year ahead (a Mount,
    // exempt from the epoch's time limit, would let a Delete pass retention).
    let current = SigningKey::from_bytes(
        &wormfs::core::segment::from_hex(&fs::read_to_string(tm.state().join("signing.key")).unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    );
    {
        let db = open_index(tm.state());
        let head = tm.records().last().unwrap()["seq"].as_u64().unwrap();
        let last = get_record(&db, head);
        let ahead = last.fields.time_ns + 365 * 86_400 * 1_000_000_000;
        let payload = Payload::ClockJump { system_ns: ahead, floor_ns: ahead };
        let fields = wormfs::core::record::Unsigned { seq: head + 1, time_ns: ahead, payload, prev_hash: last.hash };
        let forged = chain::sign(fields, &current);
        db.put_cf(db.cf_handle("records").unwrap(), (head + 1).to_be_bytes(), forged.encode()).unwrap();
        let mut value = (head + 1).to_be_bytes().to_vec();
        value.extend_from_slice(&forged.hash);
        value.extend_from_slice(&ahead.to_be_bytes());
        db.put_cf(db.cf_handle("meta").unwrap(), b"head", value).unwrap();
    }
    let (code, doc) = verify(&tm, &[]);
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(kinds(&doc), vec!["chain.from_the_future".to_string()], "{doc:#}");
}

#[test]
fn a_chain_that_claims_to_be_mounted_but_stopped_rotating_is_warned_about() {
    let mut tm = TestMount::builder().arg("--key-epoch").arg("1s").start();
    tm.append("a.log", b"before the crash\n");
    std::thread::sleep(Duration::from_millis(1500));
    let (code, doc) = verify(&tm, &[]);
    assert_eq!(code, 0, "{doc:#}");
    let warned = |doc: &Value| doc["warnings"].as_array().unwrap().iter().any(|w| w["kind"] == "chain.stale_epoch");
    assert!(!warned(&doc), "a live daemon rotates every epoch: {doc:#}");
    // Killed: no Unmount, the chain still claims to be mounted, and no rotation comes.
    tm.kill9();
    std::thread::sleep(Duration::from_millis(5500));
    let (code, doc) = verify(&tm, &[]);
    assert_eq!(code, 0, "a warning, not a finding: {doc:#}");
    assert!(warned(&doc), "{doc:#}");
    tm.restart();
    tm.stop();
    let (_, doc) = verify(&tm, &[]);
    assert!(!warned(&doc), "after a clean stop: {doc:#}");
}

/// The stored Merkle tree is a cache of the records. One edited while wormfs was down is rebuilt
/// by the next mount (its one pass over the chain also checks the tree), so the checkpoints signed
/// after it name the records' own root and verify against an anchor taken from them.
#[test]
fn a_tree_edited_while_unmounted_is_rebuilt_at_mount_and_checkpoints_stay_true() {
    let mut tm = TestMount::start();
    for i in 0..5 {
        tm.append("a.log", format!("line {i}\n").as_bytes());
    }
    tm.stop();
    {
        // The newest stored hash (the last complete subtree's, which every root is made from).
        let size = tm.records().last().unwrap()["seq"].as_u64().unwrap();
        let last = tlog_tiles::stored_hash_count(size) - 1;
        let db = open_index(tm.state());
        let tree = db.cf_handle("tree").unwrap();
        assert!(db.get_cf(tree, last.to_be_bytes()).unwrap().is_some(), "the index keeps a tree");
        db.put_cf(tree, last.to_be_bytes(), [0xAA; 32]).unwrap();
    }
    // Signed from the forged tree, a checkpoint no longer matches the records.
    let forged = take_checkpoint(&tm, "forged", &[]);
    let (code, doc) = verify(&tm, &["--anchor", forged.to_str().unwrap()]);
    assert_eq!(code, 1, "{doc:#}");
    tm.restart();
    assert!(tm.log().contains("Merkle tree disagreed with the records"), "{}", tm.log());
    tm.append("a.log", b"after the repair\n");
    tm.stop();
    let anchor = take_checkpoint(&tm, "anchor", &[]);
    let (code, doc) = verify(&tm, &["--anchor", anchor.to_str().unwrap()]);
    assert_eq!(code, 0, "the checkpoint after the repair is of the records themselves: {doc:#}");
}

//! The systemd integration: the unit files in systemd/, what their command lines do when run as
//! systemd would run them (readiness over $NOTIFY_SOCKET, SIGTERM, the unit's umask, a crash), and
//! scripts/install into a private root.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use common::*;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Where the units expect things once scripts/install has run.
const INSTALLED_BIN: &str = "/usr/local/bin/wormfs";
const INSTALLED_VERIFY: &str = "/usr/local/share/wormfs/wormfs-verify";

fn repo(rel: &str) -> PathBuf {
    Path::new(REPO).join(rel)
}

// ---------------------------------------------------------------------------------------------
// Unit files
// ---------------------------------------------------------------------------------------------

/// A unit file as (section, key, value) entries, in order (a key may repeat).
struct Unit {
    path: PathBuf,
    entries: Vec<(String, String, String)>,
}

impl Unit {
    #[track_caller]
    fn load(rel: &str) -> Unit {
        let path = repo(rel);
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending = String::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';')) {
                continue;
            }
            // A trailing backslash continues the line (systemd joins them with a space).
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            let line = std::mem::take(&mut pending) + line;
            if line.starts_with('[') {
                assert!(line.ends_with(']'), "{}:{}: bad section header {line:?}", path.display(), n + 1);
                section = line[1..line.len() - 1].to_string();
                continue;
            }
            let (key, value) =
                line.split_once('=').unwrap_or_else(|| panic!("{}:{}: not key=value: {line:?}", path.display(), n + 1));
            assert!(!section.is_empty(), "{}:{}: {key} outside a section", path.display(), n + 1);
            entries.push((section.clone(), key.trim().to_string(), value.trim().to_string()));
        }
        assert!(pending.is_empty(), "{}: ends in a continuation line", path.display());
        Unit { path, entries }
    }

    fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries.iter().filter(|(s, k, _)| s == section && k == key).map(|(_, _, v)| v.as_str()).collect()
    }

    #[track_caller]
    fn one(&self, section: &str, key: &str) -> &str {
        let all = self.all(section, key);
        assert_eq!(all.len(), 1, "{}: expected exactly one [{section}] {key}=, found {all:?}", self.path.display());
        all[0]
    }

    #[track_caller]
    fn assert_value(&self, section: &str, key: &str, expected: &str) {
        assert_eq!(self.one(section, key), expected, "{}: [{section}] {key}=", self.path.display());
    }

    /// Space-separated words of every `key=` in `section`, together.
    fn words(&self, section: &str, key: &str) -> Vec<String> {
        self.all(section, key).iter().flat_map(|v| v.split_whitespace()).map(str::to_string).collect()
    }

    #[track_caller]
    fn assert_lists(&self, section: &str, key: &str, expected: &[&str]) {
        let words = self.words(section, key);
        for e in expected {
            assert!(
                words.iter().any(|w| w == e),
                "{}: [{section}] {key}= must list {e}; has {words:?}",
                self.path.display()
            );
        }
    }

    fn keys_anywhere(&self) -> Vec<&str> {
        self.entries.iter().map(|(_, k, _)| k.as_str()).collect()
    }

    /// The `Environment=` assignments of [Service], in order.
    fn environment(&self) -> Vec<(String, String)> {
        self.all("Service", "Environment")
            .iter()
            .flat_map(|v| split_words(v))
            .map(|w| {
                let (k, v) = w.split_once('=').unwrap_or_else(|| panic!("Environment= word {w:?} is not NAME=value"));
                (k.to_string(), v.to_string())
            })
            .collect()
    }
}

/// Options that give a service its own mount namespace (or otherwise hide its mounts from the
/// rest of the system). A FUSE mount made there is invisible to rsyslog, so wormfs.service must
/// use none of them.
const NAMESPACE_OPTIONS: &[&str] = &[
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateMounts",
    "PrivateNetwork",
    "PrivateIPC",
    "PrivateUsers",
    "ReadWritePaths",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "ExecPaths",
    "NoExecPaths",
    "ReadWriteDirectories",
    "ReadOnlyDirectories",
    "InaccessibleDirectories",
    "TemporaryFileSystem",
    "BindPaths",
    "BindReadOnlyPaths",
    "MountFlags",
    "MountImages",
    "ExtensionImages",
    "ExtensionDirectories",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectHostname",
    "ProtectProc",
    "ProcSubset",
    "RootDirectory",
    "RootImage",
    "MountAPIVFS",
    "DynamicUser",
    "LogNamespace",
    "NetworkNamespacePath",
    "IPCNamespacePath",
    "JoinsNamespaceOf",
];

/// Split a command line or an assignment list as systemd does for the simple cases the units
/// use: whitespace separates words, single and double quotes group. Backslashes are not
/// supported here (the units have none).
#[track_caller]
fn split_words(line: &str) -> Vec<String> {
    assert!(!line.contains('\\'), "backslash escapes are not supported by this test: {line:?}");
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(quote.is_none(), "unbalanced quotes in {line:?}");
    words.extend(word);
    words
}

/// A command line (`ExecStart=` etc.) as argv, after systemd's expansion: `${NAME}` and `$NAME`
/// (a word on its own) from `env`, `$$` for a literal `$`. Panics on an unknown variable.
#[track_caller]
fn expand_command(value: &str, env: &HashMap<String, String>) -> Vec<String> {
    let value = value.trim_start_matches(['-', '@', ':', '+', '!']);
    split_words(value)
        .into_iter()
        .flat_map(|word| {
            // An unbraced `$NAME` word is split on whitespace into several arguments (none when
            // empty), as systemd does; `${NAME}` stays one argument.
            if let Some(name) = word
                .strip_prefix('$')
                .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            {
                let value = env.get(name).unwrap_or_else(|| panic!("{value:?}: ${name} is not set by the unit"));
                return value.split_whitespace().map(str::to_string).collect::<Vec<_>>();
            }
            let mut out = String::new();
            let mut rest = word.as_str();
            while let Some(i) = rest.find('$') {
                out.push_str(&rest[..i]);
                let after = &rest[i + 1..];
                if let Some(tail) = after.strip_prefix('$') {
                    out.push('$');
                    rest = tail;
                } else if let Some(braced) = after.strip_prefix('{') {
                    let end = braced.find('}').unwrap_or_else(|| panic!("unclosed ${{ in {word:?}"));
                    let name = &braced[..end];
                    out.push_str(
                        env.get(name).unwrap_or_else(|| panic!("{value:?}: ${{{name}}} is not set by the unit")),
                    );
                    rest = &braced[end + 1..];
                } else {
                    let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                    let name = &after[..end];
                    assert!(
                        end == after.len() && i == 0,
                        "{value:?}: ${name} must be a word of its own (or use ${{{name}}})"
                    );
                    out.push_str(env.get(name).unwrap_or_else(|| panic!("{value:?}: ${name} is not set by the unit")));
                    rest = "";
                }
            }
            out.push_str(rest);
            vec![out]
        })
        .collect()
}

/// `NAME=value` lines of an environment file (as systemd's EnvironmentFile= reads the simple
/// ones: comments and blank lines skipped, surrounding quotes removed).
fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("env file line {l:?} is not NAME=value"));
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// "5min", "90s", "1h 30min", "300" as seconds (the forms systemd accepts that the units use).
fn timespan_secs(value: &str) -> u64 {
    let mut total = 0;
    for part in value.split_whitespace() {
        let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
        let unit = &part[digits.len()..];
        let n: u64 = digits.parse().unwrap_or_else(|_| panic!("timespan {value:?}"));
        total += n * match unit {
            "" | "s" | "sec" => 1,
            "m" | "min" => 60,
            "h" | "hr" => 3600,
            other => panic!("timespan unit {other:?} in {value:?} not understood by this test"),
        };
    }
    total
}

/// The required content of every unit: checked whether or not systemd-analyze is available.
fn check_unit_contents() {
    // ---- wormfs.service ----
    let u = Unit::load("systemd/wormfs.service");
    u.assert_value("Service", "Type", "notify");
    u.assert_value("Service", "NotifyAccess", "main");
    u.assert_value("Service", "EnvironmentFile", "-/etc/default/wormfs");
    u.assert_value(
        "Service",
        "ExecStart",
        "/usr/local/bin/wormfs mount --config ${WORMFS_CONFIG} --data ${WORMFS_DATA} --state ${WORMFS_STATE} --allow-other $WORMFS_MOUNT_OPTIONS ${WORMFS_MOUNT}",
    );
    let env: HashMap<_, _> = u.environment().into_iter().collect();
    for (k, v) in [
        ("WORMFS_DATA", "/var/lib/wormfs/data"),
        ("WORMFS_STATE", "/var/lib/wormfs/state"),
        ("WORMFS_MOUNT", "/var/log/worm"),
        ("WORMFS_CONFIG", "/etc/wormfs/wormfs.toml"),
    ] {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "wormfs.service: default Environment={k}=");
    }
    u.assert_value("Service", "Restart", "on-failure");
    u.assert_value("Service", "KillSignal", "SIGTERM");
    let stop = timespan_secs(u.one("Service", "TimeoutStopSec"));
    assert!(stop >= 120, "TimeoutStopSec={stop}s is not generous (sealing every tail takes time)");
    u.assert_lists("Unit", "After", &["local-fs.target"]);
    u.assert_lists("Unit", "Before", &["rsyslog.service", "syslog-ng.service"]);
    u.assert_lists("Unit", "RequiresMountsFor", &["/var/lib/wormfs", "/var/log"]);
    u.assert_lists("Install", "WantedBy", &["multi-user.target"]);
    // Hardening that needs no namespace.
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("DevicePolicy", "closed"),
        ("DeviceAllow", "/dev/fuse rw"),
        ("RestrictAddressFamilies", "AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("SystemCallArchitectures", "native"),
        ("UMask", "0077"),
    ] {
        u.assert_value("Service", k, v);
    }
    let mut caps = u.words("Service", "CapabilityBoundingSet");
    caps.sort();
    let mut want = vec![
        "CAP_SYS_ADMIN",
        "CAP_CHOWN",
        "CAP_FOWNER",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FSETID",
        "CAP_LINUX_IMMUTABLE",
    ];
    want.sort();
    assert_eq!(caps, want, "wormfs.service: CapabilityBoundingSet=");
    let keys = u.keys_anywhere();
    for forbidden in NAMESPACE_OPTIONS {
        assert!(
            !keys.contains(forbidden),
            "wormfs.service sets {forbidden}=, which gives it a private mount namespace: the FUSE mount \
             would be invisible to rsyslog"
        );
    }
    // Every variable ExecStart uses has a default.
    expand_command(u.one("Service", "ExecStart"), &env);
    for pre in u.all("Service", "ExecStartPre") {
        expand_command(pre, &env);
    }

    // ---- the env file matches the unit's defaults ----
    let default_env = parse_env_file(&fs::read_to_string(repo("systemd/wormfs.default")).unwrap());
    for name in ["WORMFS_DATA", "WORMFS_STATE", "WORMFS_MOUNT", "WORMFS_CONFIG"] {
        let in_file: Vec<_> = default_env.iter().filter(|(k, _)| k == name).map(|(_, v)| v).collect();
        assert_eq!(in_file, vec![&env[name]], "systemd/wormfs.default: {name}= should be the unit's default");
    }

    // ---- wormfs-verify.service ----
    let v = Unit::load("systemd/wormfs-verify.service");
    v.assert_value("Service", "Type", "oneshot");
    // No "-" prefix and no SuccessExitStatus=: exit 1 (tampering) and 2 fail the unit.
    v.assert_value("Service", "ExecStart", INSTALLED_VERIFY);
    assert!(v.all("Service", "SuccessExitStatus").is_empty(), "verify must fail the unit on a non-zero exit");
    v.assert_value("Service", "EnvironmentFile", "-/etc/default/wormfs");
    for key in ["StandardOutput", "StandardError"] {
        for value in v.all("Service", key) {
            assert!(
                value == "journal" || value == "journal+console" || value == "inherit",
                "{key}={value}: the verdict must reach the journal"
            );
        }
    }
    let venv: HashMap<_, _> = v.environment().into_iter().collect();
    for name in ["WORMFS_DATA", "WORMFS_STATE"] {
        if let Some(value) = venv.get(name) {
            assert_eq!(value, &env[name], "wormfs-verify.service default {name}");
        }
    }

    // ---- wormfs-verify.timer ----
    let t = Unit::load("systemd/wormfs-verify.timer");
    t.assert_value("Timer", "OnCalendar", "daily");
    t.assert_value("Timer", "Persistent", "true");
    assert!(timespan_secs(t.one("Timer", "RandomizedDelaySec")) > 0);
    for unit in t.all("Timer", "Unit") {
        assert_eq!(unit, "wormfs-verify.service");
    }
    t.assert_lists("Install", "WantedBy", &["timers.target"]);
}

#[test]
fn unit_files_have_the_required_settings_and_no_mount_namespace() {
    check_unit_contents();
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let found = Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        eprintln!(
            "systemd-analyze is not installed on this machine: `systemd-analyze verify` NOT run; \
             checking the unit files' content only"
        );
        check_unit_contents();
        return;
    }
    // systemd-analyze verify checks that each Exec*= program exists; the installed paths do not
    // on a build machine, so verify copies whose two wormfs paths point at this checkout's builds.
    // Everything else is byte for byte the shipped unit.
    let dir = TempDir::new().unwrap();
    let mut names = Vec::new();
    for name in ["wormfs.service", "wormfs-verify.service", "wormfs-verify.timer"] {
        let text = fs::read_to_string(repo(&format!("systemd/{name}"))).unwrap();
        let text = text
            .replace(INSTALLED_BIN, WORMFS)
            .replace(INSTALLED_VERIFY, repo("scripts/wormfs-verify").to_str().unwrap());
        fs::write(dir.path().join(name), text).unwrap();
        names.push(dir.path().join(name));
    }
    let out = run_cmd(Command::new("systemd-analyze").arg("verify").args(&names));
    // Unknown or misspelled keys are only warnings (exit 0): any line about our units fails.
    let ours: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| l.contains("wormfs") || l.contains(dir.path().to_str().unwrap()))
        .collect();
    assert!(out.success() && ours.is_empty(), "systemd-analyze verify complained:\n{out:#?}");
    if !out.stderr.trim().is_empty() {
        eprintln!("systemd-analyze verify, about other units:\n{}", out.stderr);
    }
    check_unit_contents();
}

#[test]
fn example_config_parses_with_and_without_its_commented_examples() {
    let example = repo("systemd/wormfs.toml.example");
    let policy = wormfs::config::retention_policy(Some(&example), None, 1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.default_ns, 90 * 86_400 * 1_000_000_000, "retention = \"90d\"");
    // Uncommenting the commented settings (bounds and rules) gives a valid file too.
    let text = fs::read_to_string(&example).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with("[[") || rest.contains(" = ") => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("wormfs.toml");
    fs::write(&path, &uncommented).unwrap();
    let full = wormfs::config::retention_policy(Some(&path), None, 1).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    assert!(full.min_ns.is_some() && full.max_ns.is_some(), "example bounds: {uncommented}");
    assert!(!full.rules.is_empty(), "example rule: {uncommented}");
}

// ---------------------------------------------------------------------------------------------
// Running the unit's command lines as systemd would
// ---------------------------------------------------------------------------------------------

/// setpriv(1) arguments that give a command what `unit`'s CapabilityBoundingSet= and
/// NoNewPrivileges= give it under systemd (root's capabilities are cut to the bounding set at
/// exec). The seccomp and device-cgroup settings need systemd itself and are not emulated.
fn privileges(unit: &Unit) -> Vec<String> {
    let caps: Vec<String> = unit
        .words("Service", "CapabilityBoundingSet")
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let mut args = vec!["setpriv".to_string()];
    if !caps.is_empty() {
        args.push(format!("--bounding-set=-all,{}", caps.join(",")));
    }
    if unit.all("Service", "NoNewPrivileges") == ["yes"] {
        args.push("--no-new-privs".into());
    }
    args.push("--".into());
    args
}

/// wormfs.service's ExecStartPre= and ExecStart=, run with the unit's environment (test paths in
/// place of /etc/default/wormfs), its UMask= and a $NOTIFY_SOCKET this test owns. Dropping it
/// kills the daemon and lazily unmounts whatever it left (also after a failed assertion).
struct UnitRun {
    child: Option<Child>,
    notify: UnixDatagram,
    /// Every notification received so far, in order.
    messages: Vec<String>,
    unit: Unit,
    env: HashMap<String, String>,
    umask: u32,
    data: PathBuf,
    state: PathBuf,
    mnt: PathBuf,
    log: PathBuf,
    root: PathBuf,
    // Last: removed only after Drop::drop has unmounted.
    _dir: TempDir,
}

impl UnitRun {
    #[track_caller]
    fn new() -> UnitRun {
        assert_root();
        let dir = tempfile::Builder::new().prefix("wormfs-unit.").tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().canonicalize().unwrap();
        // As scripts/install leaves them (/var/lib/wormfs/{data,state}): data and state 0700 in
        // a 0700 parent, a key, the example config.
        let lib = root.join("lib");
        fs::DirBuilder::new().mode(0o700).create(&lib).unwrap();
        let (data, state, mnt) = (lib.join("data"), lib.join("state"), root.join("mnt"));
        fs::DirBuilder::new().mode(0o700).create(&data).unwrap();
        fs::DirBuilder::new().mode(0o700).create(&state).unwrap();
        keygen(&state);
        let config = root.join("wormfs.toml");
        fs::copy(repo("systemd/wormfs.toml.example"), &config).unwrap();

        let unit = Unit::load("systemd/wormfs.service");
        // The unit's Environment= defaults, then what /etc/default/wormfs would set.
        let mut env: HashMap<String, String> = unit.environment().into_iter().collect();
        for (k, v) in
            [("WORMFS_DATA", &data), ("WORMFS_STATE", &state), ("WORMFS_MOUNT", &mnt), ("WORMFS_CONFIG", &config)]
        {
            env.insert(k.to_string(), v.to_str().unwrap().to_string());
        }
        let umask = u32::from_str_radix(unit.one("Service", "UMask"), 8).expect("UMask= is octal");
        let notify_path = root.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
        notify.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        env.insert("NOTIFY_SOCKET".into(), notify_path.to_str().unwrap().into());
        UnitRun {
            child: None,
            notify,
            messages: Vec::new(),
            unit,
            env,
            umask,
            data,
            state,
            mnt,
            log: root.join("wormfs.log"),
            root,
            _dir: dir,
        }
    }

    /// A command of the unit, expanded, as a Command with the unit's environment, umask,
    /// capability bounding set and no_new_privs.
    fn command(&self, argv: &[String]) -> Command {
        self.command_under(&[], argv)
    }

    /// [`command`], run by `wrapper` (e.g. timeout(1)), which then runs with the same settings.
    fn command_under(&self, wrapper: &[&str], argv: &[String]) -> Command {
        let mut full: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
        full.extend(privileges(&self.unit));
        full.extend(argv.iter().cloned());
        let mut cmd = Command::new(&full[0]);
        cmd.args(&full[1..]).env_remove("RUST_LOG").stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let umask = self.umask;
        // SAFETY: umask(2) is async-signal-safe and touches nothing but the child.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(umask as libc::mode_t);
                Ok(())
            });
        }
        cmd
    }

    /// Run every ExecStartPre= of the unit; returns their combined output.
    #[track_caller]
    fn exec_start_pre(&self) -> RunOutput {
        let mut stdout = String::new();
        let mut last = None;
        for pre in self.unit.all("Service", "ExecStartPre") {
            let argv = expand_command(pre, &self.env);
            let out = run_cmd(&mut self.command_under(&["timeout", "-k", "5", "30"], &argv));
            stdout.push_str(&out.stdout);
            if !pre.starts_with('-') {
                out.assert_success(&format!("ExecStartPre={pre}"));
            }
            last = Some(out);
        }
        let mut out = last.expect("wormfs.service has an ExecStartPre= that creates the mountpoint");
        out.stdout = stdout;
        out
    }

    /// Spawn ExecStart= exactly as the unit gives it, but with this checkout's binary.
    #[track_caller]
    fn spawn(&mut self) {
        assert!(self.child.is_none());
        let mut argv = expand_command(self.unit.one("Service", "ExecStart"), &self.env);
        assert_eq!(argv[0], INSTALLED_BIN, "ExecStart runs the installed binary");
        argv[0] = WORMFS.to_string();
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = self.command(&argv);
        cmd.stdout(log.try_clone().unwrap()).stderr(log);
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("spawn {argv:?}: {e}")));
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("daemon running").id() as i32)
    }

    /// The next notification, if one arrives within the socket's read timeout.
    fn recv(&mut self) -> Option<String> {
        let mut buf = [0u8; 4096];
        match self.notify.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.messages.push(msg.clone());
                Some(msg)
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => None,
            Err(e) => panic!("recv on the notify socket: {e}"),
        }
    }

    /// Wait for READY=1. Each poll before it arrives checks that the daemon is still running and
    /// that nothing claimed readiness early; when it arrives the mount must already be live:
    /// mountinfo shows fuse.wormfs at the mountpoint and a file written through it right then
    /// can be stat'ed.
    #[track_caller]
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if let Some(msg) = self.recv() {
                let lines: Vec<&str> = msg.lines().collect();
                assert!(!lines.contains(&"STOPPING=1"), "STOPPING=1 before READY=1: {:?}", self.messages);
                if lines.contains(&"READY=1") {
                    assert!(
                        is_wormfs_mounted(&self.mnt),
                        "READY=1 arrived but {} is not a fuse.wormfs mount (mountinfo types there: {:?})\n{}",
                        self.mnt.display(),
                        mount_types_at(&self.mnt),
                        self.log_text()
                    );
                    let probe = self.mnt.join(format!("ready-{}.log", self.messages.len()));
                    fs::write(&probe, b"written at READY=1\n")
                        .unwrap_or_else(|e| panic!("write {} at READY=1: {e}\n{}", probe.display(), self.log_text()));
                    let meta =
                        fs::metadata(&probe).unwrap_or_else(|e| panic!("stat {} at READY=1: {e}", probe.display()));
                    assert_eq!(meta.len(), 19);
                    return;
                }
            }
            let child = self.child.as_mut().expect("spawned");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                panic!(
                    "wormfs exited ({status}) without READY=1; notifications {:?}\n--- log ---\n{}",
                    self.messages,
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no READY=1 within {MOUNT_TIMEOUT:?}; notifications {:?}; mount types at {}: {:?}\n--- log ---\n{}",
                self.messages,
                self.mnt.display(),
                mount_types_at(&self.mnt),
                self.log_text()
            );
        }
    }

    /// SIGTERM (the unit's KillSignal): STOPPING=1 arrives, the daemon exits 0, the mount is gone.
    #[track_caller]
    fn stop(&mut self) {
        let signal: Signal = self.unit.one("Service", "KillSignal").parse().expect("KillSignal= names a signal");
        kill(self.pid(), signal).unwrap();
        let mut child = self.child.take().unwrap();
        let status = wait_timeout(&mut child, EXIT_TIMEOUT);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let status = status
            .unwrap_or_else(|| panic!("wormfs did not exit within {EXIT_TIMEOUT:?} of {signal}\n{}", self.log_text()));
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.messages.iter().any(|m| m.lines().any(|l| l == "STOPPING=1")) && Instant::now() < deadline {
            self.recv();
        }
        assert!(
            self.messages.iter().any(|m| m.lines().any(|l| l == "STOPPING=1")),
            "no STOPPING=1 after {signal}: {:?}\n{}",
            self.messages,
            self.log_text()
        );
        assert_eq!(status.code(), Some(0), "wormfs exit status after {signal}: {status}\n{}", self.log_text());
        assert!(!is_mount_point(&self.mnt), "{} still mounted after wormfs exited", self.mnt.display());
    }
}

impl Drop for UnitRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        if is_mount_point(&self.mnt) {
            force_unmount(&self.mnt);
        }
        // Sealed files are immutable (chattr +i); the temp dir could not be removed otherwise.
        unprotect_tree(&self.data);
    }
}

#[test]
fn exec_start_notifies_ready_once_mounted_and_stopping_at_sigterm() {
    let mut u = UnitRun::new();
    // ExecStartPre creates the mountpoint.
    assert_absent(&u.mnt);
    u.exec_start_pre();
    assert!(u.mnt.is_dir(), "ExecStartPre= did not create the mountpoint");
    assert!(!is_mount_point(&u.mnt));

    u.spawn();
    u.wait_ready();
    let ready: Vec<&String> = u.messages.iter().filter(|m| m.lines().any(|l| l == "READY=1")).collect();
    assert_eq!(ready.len(), 1, "{:?}", u.messages);
    // Still serving after READY: appends go through.
    run(&format!("echo more >> {}", q(u.mnt.join("ready-1.log")))).assert_success("append after READY");
    assert_eq!(fs::read_to_string(u.data.join("ready-1.log")).unwrap(), "written at READY=1\nmore\n");
    // With only the unit's capabilities, the daemon still serves other users (--allow-other)
    // and gives their files to them (chown needs CAP_CHOWN, the sticky directory CAP_FOWNER).
    // The mount's root has the data directory's mode, 0700: root only, until the admin opens it
    // up through the mount as scripts/install's next steps say.
    let probe = q(u.mnt.join("nobody-early.log"));
    run_as(65534, 65534, &format!("echo x >> {probe}")).assert_failure("another user in a 0700 mount root");
    run(&format!("chmod 755 {}", q(&u.mnt))).assert_success("chmod 755 on the mount's root");
    let public = u.mnt.join("pub");
    fs::create_dir(&public).unwrap();
    fs::set_permissions(&public, fs::Permissions::from_mode(0o1777)).unwrap();
    let theirs = public.join("nobody.log");
    run_as(65534, 65534, &format!("echo from nobody >> {f} && echo again >> {f}", f = q(&theirs)))
        .assert_success("another user appends through the mount");
    let meta = fs::metadata(u.data.join("pub/nobody.log")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "owner of a file another user created");
    assert_eq!(fs::read_to_string(&theirs).unwrap(), "from nobody\nagain\n");
    // The backing file stays out of the user's reach (the 0700 parent), so only wormfs writes it.
    run_as(65534, 65534, &format!("echo tampered >> {}", q(u.data.join("pub/nobody.log"))))
        .assert_failure("another user writing the backing file directly");
    // With the unit's capabilities the daemon sets the kernel's flags: sealed and closed files
    // are immutable in the data directory.
    assert!(
        wait_until(Duration::from_secs(5), || lsattr(u.data.join("pub/nobody.log")).contains('i')),
        "{}",
        lsattr(u.data.join("pub/nobody.log"))
    );

    u.stop();
    assert_eq!(
        u.messages.iter().filter(|m| m.lines().any(|l| l == "READY=1")).count(),
        1,
        "READY=1 sent more than once: {:?}",
        u.messages
    );

    // A clean stop: the chain ends with the Unmount record.
    let log = run_cmd(Command::new(WORMFS).args(["log", "--json", "--state"]).arg(&u.state).env_remove("RUST_LOG"));
    log.assert_success("wormfs log --json");
    let last: serde_json::Value = serde_json::from_str(log.stdout.lines().last().expect("records")).unwrap();
    assert_eq!(last["kind"], "Unmount", "{}", log.stdout);

    // wormfs-verify.service's command, with the same environment file, finds the store intact...
    let verify = |u: &UnitRun| -> RunOutput {
        let vunit = Unit::load("systemd/wormfs-verify.service");
        let env_file = u.root.join("wormfs.env");
        let shipped = fs::read_to_string(repo("systemd/wormfs.default")).unwrap();
        let text: String = shipped
            .lines()
            .map(|l| match l.split_once('=') {
                Some((k, _)) if u.env.contains_key(k) && !k.starts_with('#') => format!("{k}={}\n", u.env[k]),
                _ => format!("{l}\n"),
            })
            .collect();
        fs::write(&env_file, text).unwrap();
        let mut env: HashMap<String, String> = vunit.environment().into_iter().collect();
        env.extend(parse_env_file(&fs::read_to_string(&env_file).unwrap()));
        env.insert("WORMFS_BIN".into(), WORMFS.into());
        env.insert("WORMFS_ENV_FILE".into(), env_file.to_str().unwrap().into());
        let argv = expand_command(vunit.one("Service", "ExecStart"), &env);
        assert_eq!(argv, vec![INSTALLED_VERIFY.to_string()]);
        // With the verify unit's capabilities: root reading files other users own.
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", "60"]).args(privileges(&vunit)).arg(repo("scripts/wormfs-verify")).env_remove("RUST_LOG");
        for k in ["WORMFS_DATA", "WORMFS_STATE", "WORMFS_PUBKEY", "NOTIFY_SOCKET"] {
            cmd.env_remove(k);
        }
        cmd.envs(&env);
        run_cmd(&mut cmd)
    };
    let out = verify(&u);
    out.assert_success("wormfs-verify.service's ExecStart on a clean store");
    assert!(out.stdout.contains("INTACT"), "{out:#?}");
    // ... and exits non-zero (the unit fails) once a sealed byte is changed behind its back (by
    // root with CAP_LINUX_IMMUTABLE, who can clear the flag wormfs set).
    unprotect(u.data.join("ready-1.log"));
    fs::OpenOptions::new()
        .write(true)
        .open(u.data.join("ready-1.log"))
        .and_then(|f| std::os::unix::fs::FileExt::write_at(&f, b"W", 0))
        .unwrap();
    let out = verify(&u);
    assert_eq!(out.status.code(), Some(1), "verify after tampering: {out:#?}");
}

#[test]
fn files_created_through_the_mount_keep_their_mode_under_the_unit_umask() {
    // wormfs.service runs the daemon with UMask=0077 (for its own files). The modes of files and
    // directories that users create through the mount must not be narrowed by it: rsyslog's
    // fileCreateMode 0640 / dirCreateMode 0750 must come out as asked.
    let mut u = UnitRun::new();
    u.exec_start_pre();
    u.spawn();
    u.wait_ready();
    let d = u.mnt.join("host");
    run(&format!("umask 022 && mkdir {d} && : > {d}/a.log && umask 027 && mkdir {d}/sub && : > {d}/b.log", d = q(&d)))
        .assert_success("create through the mount with the caller's umask");
    for (rel, want) in [("host", 0o755), ("host/a.log", 0o644), ("host/sub", 0o750), ("host/b.log", 0o640)] {
        let seen = mode_of(&u.mnt.join(rel));
        let backing = mode_of(&u.data.join(rel));
        assert!(
            seen == want && backing == want,
            "{rel}: created with mode {want:o} (caller's umask applied), but the mount shows {seen:o} and \
             the backing file has {backing:o}: the daemon's own umask ({:o}, wormfs.service UMask=) leaked \
             into files created on behalf of callers",
            u.umask
        );
    }
    u.stop();
}

#[test]
fn exec_start_pre_clears_only_a_dead_mount_and_the_unit_restarts_after_a_crash() {
    let mut u = UnitRun::new();
    u.exec_start_pre();
    u.spawn();
    u.wait_ready();
    // On a live mount ExecStartPre changes nothing.
    let out = u.exec_start_pre();
    assert!(is_wormfs_mounted(&u.mnt), "ExecStartPre= unmounted a live wormfs: {out:#?}");
    assert!(fs::metadata(u.mnt.join("ready-1.log")).is_ok(), "live mount no longer answers");

    // A crash (what Restart=on-failure recovers from) leaves a dead mount behind.
    kill(u.pid(), Signal::SIGKILL).unwrap();
    u.child.take().unwrap().wait().unwrap();
    assert!(is_wormfs_mounted(&u.mnt), "expected the dead mount a SIGKILL leaves");
    assert!(fs::read_dir(&u.mnt).is_err(), "a dead FUSE mount should not answer readdir");

    // Right away, while the kernel may still answer stat from its attribute cache.
    let out = u.exec_start_pre();
    assert!(!is_mount_point(&u.mnt), "ExecStartPre= left the dead mount: {out:#?}");
    assert!(out.stdout.contains("dead"), "ExecStartPre= should say it cleared a dead mount: {out:#?}");

    // And the restarted ExecStart mounts again, recovers, and becomes ready.
    u.spawn();
    u.wait_ready();
    assert_eq!(fs::read_to_string(u.mnt.join("ready-1.log")).unwrap(), "written at READY=1\n");
    u.stop();
}

// ---------------------------------------------------------------------------------------------
// scripts/install
// ---------------------------------------------------------------------------------------------

/// A private copy of what scripts/install reads from the checkout (scripts/, systemd/, the
/// README and the binary), so that other work on the checkout while the test runs (an edited
/// README, a rebuilt binary) cannot make two runs of install see different sources.
struct Checkout {
    dir: PathBuf,
    bin: PathBuf,
}

impl Checkout {
    fn copy_into(parent: &Path) -> Checkout {
        let dir = parent.join("checkout");
        for sub in ["scripts", "systemd"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
            for entry in fs::read_dir(repo(sub)).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_file() {
                    fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).unwrap();
                }
            }
        }
        fs::copy(repo("README.md"), dir.join("README.md")).unwrap();
        let bin = parent.join("wormfs-bin");
        fs::copy(WORMFS, &bin).unwrap();
        Checkout { dir, bin }
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// scripts/install [args] into `root`, with the copied binary (WORMFS_SKIP_BUILD=1).
    fn install(&self, root: &Path, args: &[&str]) -> RunOutput {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", "300"])
            .arg(self.file("scripts/install"))
            .args(args)
            .env("WORMFS_INSTALL_ROOT", root)
            .env("WORMFS_SKIP_BUILD", "1")
            .env("WORMFS_BIN", &self.bin)
            .env_remove("RUST_LOG");
        for k in ["WORMFS_DATA", "WORMFS_STATE", "WORMFS_MOUNT", "WORMFS_CONFIG", "WORMFS_PUBKEY", "WORMFS_ENV_FILE"] {
            cmd.env_remove(k);
        }
        run_cmd(&mut cmd)
    }
}

fn sha256_file(path: &Path) -> String {
    Sha256::digest(fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every entry under `root`: type, mode, owner, size, mtime, ctime and content hash (or link
/// target). Two equal listings mean nothing was written, replaced, chmod'ed or touched.
fn listing(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let m = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let what = if m.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else if m.is_dir() {
                "dir".to_string()
            } else {
                format!("file {} sha256 {}", m.len(), sha256_file(&path))
            };
            out.insert(
                rel,
                format!(
                    "{what} mode {:o} owner {}:{} mtime {}.{:09} ctime {}.{:09} ino {}",
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                    m.ino()
                ),
            );
            if m.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[track_caller]
fn assert_same_listing(before: &BTreeMap<PathBuf, String>, after: &BTreeMap<PathBuf, String>, what: &str) {
    let mut diffs = Vec::new();
    for (p, a) in before {
        match after.get(p) {
            None => diffs.push(format!("removed {}", p.display())),
            Some(b) if a != b => diffs.push(format!("changed {}:\n   {a}\n   {b}", p.display())),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("added {}", p.display()));
    }
    assert!(diffs.is_empty(), "{what} changed the installed tree:\n{}", diffs.join("\n"));
}

/// A path's mtime (s, ns), ctime and size: what any write to it would change.
type Stamp = (i64, i64, i64, u64);

/// What the real system has at the paths install writes to, to prove a rooted install never
/// touches them.
fn real_system_snapshot() -> Vec<(PathBuf, Option<Stamp>)> {
    [
        "/usr/local/bin/wormfs",
        "/etc/systemd/system/wormfs.service",
        "/etc/systemd/system/wormfs-verify.service",
        "/etc/systemd/system/wormfs-verify.timer",
        "/usr/local/share/wormfs",
        "/usr/local/share/doc/wormfs",
        "/etc/wormfs",
        "/etc/default/wormfs",
        "/var/lib/wormfs",
    ]
    .iter()
    .map(|p| {
        let m = fs::symlink_metadata(p).ok().map(|m| (m.mtime(), m.mtime_nsec(), m.ctime(), m.len()));
        (PathBuf::from(p), m)
    })
    .collect()
}

#[test]
fn install_into_a_root_is_idempotent_keeps_edits_and_uninstall_keeps_the_evidence() {
    assert_root();
    let real_before = real_system_snapshot();
    let dir = TempDir::new().unwrap();
    let checkout = Checkout::copy_into(dir.path());
    let root = dir.path().canonicalize().unwrap().join("root");
    fs::create_dir(&root).unwrap();
    let r = |p: &str| root.join(p.trim_start_matches('/'));
    let install = |root: &Path, args: &[&str]| checkout.install(root, args);

    // ---- first install ----
    let out = install(&root, &[]);
    out.assert_success("scripts/install");
    let same_bytes = |installed: &str, shipped: &Path| {
        assert_eq!(
            fs::read(r(installed))
                .unwrap_or_else(|e| panic!("{installed} not installed under the root: {e}\n{out:#?}")),
            fs::read(shipped).unwrap(),
            "{installed} is not a copy of {}",
            shipped.display()
        );
    };
    same_bytes(INSTALLED_BIN, &checkout.bin);
    assert_eq!(mode_of(&r(INSTALLED_BIN)), 0o755);
    for unit in ["wormfs.service", "wormfs-verify.service", "wormfs-verify.timer"] {
        same_bytes(&format!("/etc/systemd/system/{unit}"), &checkout.file(&format!("systemd/{unit}")));
        assert_eq!(mode_of(&r(&format!("/etc/systemd/system/{unit}"))), 0o644);
    }
    same_bytes(INSTALLED_VERIFY, &checkout.file("scripts/wormfs-verify"));
    assert_eq!(mode_of(&r(INSTALLED_VERIFY)), 0o755);
    same_bytes("/usr/local/share/doc/wormfs/README.md", &checkout.file("README.md"));
    for example in ["scripts/rsyslog-wormfs.conf", "scripts/syslog-ng-wormfs.conf", "systemd/wormfs-alerts.rules.yml"] {
        let name = Path::new(example).file_name().unwrap().to_str().unwrap();
        same_bytes(&format!("/usr/local/share/doc/wormfs/{name}"), &checkout.file(example));
    }
    same_bytes("/etc/wormfs/wormfs.toml", &checkout.file("systemd/wormfs.toml.example"));
    same_bytes("/etc/default/wormfs", &checkout.file("systemd/wormfs.default"));
    let (data, state) = (r("/var/lib/wormfs/data"), r("/var/lib/wormfs/state"));
    assert!(data.is_dir() && state.is_dir(), "data and state directories:\n{out:#?}");
    assert_eq!(mode_of(&r("/var/lib/wormfs")), 0o700, "the parent install created keeps the backing files private");
    assert_eq!(mode_of(&data), 0o700, "data directory mode");
    assert_eq!(mode_of(&state), 0o700, "state directory mode");
    assert_eq!(mode_of(&state.join("signing.key")), 0o600, "signing.key mode");
    let public = fs::read_to_string(state.join("signing.pub")).unwrap().trim().to_string();
    assert_eq!(public.len(), 64, "public key hex: {public:?}");
    assert!(out.stdout.contains(&public), "install should print the public key {public}:\n{}", out.stdout);
    let checkpoint_vkey = fs::read_to_string(state.join("checkpoint.vkey")).unwrap().trim().to_string();
    assert!(
        out.stdout.contains(&checkpoint_vkey),
        "install prints the checkpoint key {checkpoint_vkey}:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.to_lowercase().contains("other than this machine")
            || out.stdout.to_lowercase().contains("elsewhere"),
        "install should tell the admin to keep the public key elsewhere:\n{}",
        out.stdout
    );
    assert!(out.stdout.contains("systemctl enable --now wormfs"), "next steps:\n{}", out.stdout);
    for example in ["rsyslog-wormfs.conf", "syslog-ng-wormfs.conf", "wormfs-alerts.rules.yml"] {
        assert!(out.stdout.contains(example), "next steps name {example}:\n{}", out.stdout);
    }
    let key_before = fs::read(state.join("signing.key")).unwrap();

    // ---- second install: nothing changes ----
    let before = listing(&root);
    let out2 = install(&root, &[]);
    out2.assert_success("second scripts/install");
    assert_same_listing(&before, &listing(&root), "a second install");
    assert!(!out2.stdout.contains("created the signing key"), "{out2:#?}");
    assert!(out2.stdout.contains(&public), "second run shows the existing public key:\n{}", out2.stdout);

    // ---- an admin's edits survive ----
    let config = r("/etc/wormfs/wormfs.toml");
    let edited = format!("{}\n[[rule]]\npath = \"/audit\"\nretention = \"7y\"\n", fs::read_to_string(&config).unwrap());
    fs::write(&config, &edited).unwrap();
    let before = listing(&root);
    let out3 = install(&root, &[]);
    out3.assert_success("install over an edited config");
    assert_eq!(fs::read_to_string(&config).unwrap(), edited, "the edited config was overwritten");
    assert_same_listing(&before, &listing(&root), "an install over an edited config");
    assert!(out3.stdout.contains("kept"), "install should say it kept the edited config:\n{}", out3.stdout);

    // ---- uninstall ----
    fs::write(data.join("app.log"), b"evidence\n").unwrap();
    let out4 = install(&root, &["--uninstall"]);
    out4.assert_success("scripts/install --uninstall");
    for gone in [
        INSTALLED_BIN,
        "/etc/systemd/system/wormfs.service",
        "/etc/systemd/system/wormfs-verify.service",
        "/etc/systemd/system/wormfs-verify.timer",
        INSTALLED_VERIFY,
        "/usr/local/share/wormfs",
        "/usr/local/share/doc/wormfs",
        "/etc/default/wormfs",
    ] {
        assert_absent(r(gone));
    }
    assert_eq!(fs::read_to_string(&config).unwrap(), edited, "uninstall removed or changed the edited config");
    assert_eq!(fs::read(state.join("signing.key")).unwrap(), key_before, "uninstall touched the signing key");
    assert_eq!(fs::read_to_string(state.join("signing.pub")).unwrap().trim(), public);
    assert_eq!(fs::read(data.join("app.log")).unwrap(), b"evidence\n");
    assert!(out4.stdout.contains("kept"), "uninstall should say what it kept:\n{}", out4.stdout);
    assert!(
        out4.stdout.contains(data.to_str().unwrap()) && out4.stdout.contains(state.to_str().unwrap()),
        "{}",
        out4.stdout
    );
    // Uninstalling again is harmless.
    install(&root, &["--uninstall"]).assert_success("second --uninstall");
    assert!(state.join("signing.key").exists());

    // The real system was never touched.
    assert_eq!(real_system_snapshot(), real_before, "a rooted install changed the real system");
}

/// The mount an installed machine runs (the unit's command line), unmounted and stopped when
/// the test ends, also on failure.
struct InstalledMount {
    child: Child,
    mnt: PathBuf,
}

impl Drop for InstalledMount {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        if wait_timeout(&mut self.child, EXIT_TIMEOUT).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            force_unmount(&self.mnt);
        }
    }
}

#[test]
fn status_log_and_verify_need_no_flags_on_a_machine_set_up_by_scripts_install() {
    assert_root();
    let dir = TempDir::new().unwrap();
    let checkout = Checkout::copy_into(dir.path());
    let root = dir.path().canonicalize().unwrap().join("root");
    fs::create_dir(&root).unwrap();
    let r = |p: &str| root.join(p.trim_start_matches('/'));
    checkout.install(&root, &[]).assert_success("scripts/install");
    // The admin moved the directories (here: into the test's root) and says so in the file the
    // unit reads, as the file's own comments ask; nothing else changes.
    let env_file = r("/etc/default/wormfs");
    let (data, state, mnt) = (r("/var/lib/wormfs/data"), r("/var/lib/wormfs/state"), r("/var/log/worm"));
    let mut text = fs::read_to_string(&env_file).unwrap();
    text.push_str(&format!("WORMFS_DATA={}\nWORMFS_STATE={}\n", data.display(), state.display()));
    fs::write(&env_file, text).unwrap();
    fs::create_dir_all(&mnt).unwrap();
    let bin = r(INSTALLED_BIN);
    let child = Command::new(&bin)
        .arg("mount")
        .arg("--data")
        .arg(&data)
        .arg("--state")
        .arg(&state)
        .arg(&mnt)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mount = InstalledMount { child, mnt: mnt.clone() };
    assert!(wait_until(MOUNT_TIMEOUT, || is_wormfs_mounted(&mnt)), "the installed binary did not mount");
    fs::write(mnt.join("app.log"), b"started\n").unwrap();

    // Bare, as an admin types them: only WORMFS_ENV_FILE points at the root's /etc/default/wormfs.
    let bare = |script: &str| {
        let mut cmd = Command::new("bash");
        cmd.args(["-c", script])
            .env("PATH", format!("{}:/usr/bin:/bin", bin.parent().unwrap().display()))
            .env("WORMFS_ENV_FILE", &env_file)
            .env_remove("WORMFS_DATA")
            .env_remove("WORMFS_STATE")
            .env_remove("RUST_LOG");
        run_cmd(&mut cmd)
    };
    let out = bare("wormfs status");
    out.assert_success("wormfs status");
    assert!(out.stdout.contains("metrics (live, from the running daemon):"), "{}", out.stdout);
    assert!(out.stdout.lines().any(|l| l.trim() == "wormfs_writes_total 1"), "{}", out.stdout);
    // Done or killed by SIGPIPE once head has its lines; either way quietly.
    let out = bare("wormfs log | head -3; echo status=${PIPESTATUS[0]}");
    let lines: Vec<_> = out.stdout.lines().collect();
    assert!(lines.len() == 4 && ["status=0", "status=141"].contains(&lines[3]) && out.stderr.is_empty(), "{out:#?}");
    assert!(lines[..3].iter().any(|l| l.contains("Mount")), "{out:#?}");
    drop(mount);
    let out = bare("wormfs verify");
    assert_eq!(out.status.code(), Some(0), "wormfs verify: {out:#?}");
    assert!(out.stdout.contains("INTACT"), "{}", out.stdout);
}

#[test]
fn install_never_makes_a_new_key_for_a_state_that_has_lost_its_own() {
    assert_root();
    let dir = TempDir::new().unwrap();
    let checkout = Checkout::copy_into(dir.path());
    let root = dir.path().canonicalize().unwrap().join("root");
    let state = root.join("var/lib/wormfs/state");
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&state).unwrap();
    let old_pub = "ab".repeat(32) + "\n";
    fs::write(state.join("signing.pub"), &old_pub).unwrap();
    let out = checkout.install(&root, &[]);
    out.assert_failure("install over a state with signing.pub but no signing.key");
    assert!(out.stderr.contains("signing.key"), "{out:#?}");
    assert_absent(state.join("signing.key"));
    assert_eq!(fs::read_to_string(state.join("signing.pub")).unwrap(), old_pub);
}

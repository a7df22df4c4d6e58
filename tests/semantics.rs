//! The write-once semantics, one table row at a time, through a real mount with real syscalls.
//!
//! For every refused operation we check three things a user would: the errno, that the backing
//! file in DATA_DIR kept its bytes and size, and that the file (or mount) still takes appends.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;

use common::*;
use nix::fcntl::{self, FallocateFlags, RenameFlags, AT_FDCWD};
use nix::sys::stat::{self, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd;

const EPERM: i32 = libc::EPERM;

// ---------------------------------------------------------------------------------------------
// create / mkdir: allowed, permissions and ownership honoured
// ---------------------------------------------------------------------------------------------

#[test]
fn create_and_mkdir_apply_the_requested_mode_minus_umask() {
    let tm = TestMount::start();
    // umask is per process, so set it in a child shell rather than in this multi-threaded test.
    run(&format!("umask 027 && : > {} && mkdir {}", q(tm.path("masked.log")), q(tm.path("masked-dir"))))
        .assert_success("create under umask 027");
    assert_eq!(mode_of(&tm.backing("masked.log")), 0o640, "0666 & ~027");
    assert_eq!(mode_of(&tm.backing("masked-dir")), 0o750, "0777 & ~027");
    assert!(tm.backing("masked-dir").is_dir());

    // Explicit modes from open(2)/mkdir(2) (this process's umask 022 does not touch them).
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(tm.path("private.log")).unwrap();
    unistd::mkdir(&tm.path("private-dir"), Mode::from_bits_truncate(0o711)).unwrap();
    assert_eq!(mode_of(&tm.backing("private.log")), 0o600);
    assert_eq!(mode_of(&tm.backing("private-dir")), 0o711);
    // The mount shows the same modes as the backing files.
    assert_eq!(mode_of(&tm.path("private.log")), 0o600);
    assert_eq!(mode_of(&tm.path("masked-dir")), 0o750);
}

#[test]
fn files_and_dirs_created_by_another_user_belong_to_that_user() {
    let tm = TestMount::builder().arg("--allow-other").start();
    let shared = tm.mkdir("shared");
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();

    run_as(
        1000,
        1001,
        &format!(
            "umask 022 && printf hi > {} && mkdir {}",
            q(tm.path("shared/user.log")),
            q(tm.path("shared/user-dir"))
        ),
    )
    .assert_success("create as uid 1000");

    let f = fs::metadata(tm.backing("shared/user.log")).unwrap();
    assert_eq!((f.uid(), f.gid()), (1000, 1001), "owner of the backing file");
    assert_eq!(f.mode() & 0o7777, 0o644);
    assert_eq!(fs::read(tm.backing("shared/user.log")).unwrap(), b"hi");
    let d = fs::metadata(tm.backing("shared/user-dir")).unwrap();
    assert_eq!((d.uid(), d.gid()), (1000, 1001), "owner of the backing dir");
    assert_eq!(d.mode() & 0o7777, 0o755);
    // And the mount reports the same owner.
    let seen = fs::metadata(tm.path("shared/user.log")).unwrap();
    assert_eq!((seen.uid(), seen.gid()), (1000, 1001));
}

#[test]
fn permissions_are_enforced_for_other_users() {
    let tm = TestMount::builder().arg("--allow-other").start();
    let secret = tm.path("secret.log");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)
        .unwrap()
        .write_all(b"root only\n")
        .unwrap();
    tm.mkdir("root-dir"); // 0755, owned by root

    let read = tm.assert_tool_refused("secret.log", libc::EACCES, "nobody reading a 0600 root file", || {
        run_as(65534, 65534, &format!("cat {}", q(&secret)))
    });
    assert!(read.stdout.is_empty(), "no bytes leaked: {read:#?}");
    tm.assert_tool_refused("secret.log", libc::EACCES, "nobody appending to a 0600 root file", || {
        run_as(65534, 65534, &format!("printf x >> {}", q(&secret)))
    });

    let create = run_as(65534, 65534, &format!(": > {}", q(tm.path("root-dir/intruder"))));
    create.assert_failure("nobody creating in a 0755 root dir");
    assert!(create.stderr.contains("Permission denied"), "{create:#?}");
    assert_absent(tm.backing("root-dir/intruder"));
}

#[test]
fn other_users_are_locked_out_without_allow_other() {
    // Without --allow-other the kernel only lets the mounting user (root) in.
    let tm = TestMount::start();
    tm.create("visible.log", b"x\n");
    let out = run_as(65534, 65534, &format!("ls {}", q(tm.mnt())));
    out.assert_failure("ls by nobody without --allow-other");

    let open = TestMount::builder().arg("--allow-other").start();
    open.create("visible.log", b"x\n");
    let out = run_as(65534, 65534, &format!("ls {}", q(open.mnt())));
    out.assert_success("ls by nobody with --allow-other");
    assert_eq!(out.stdout, "visible.log\n");
}

// ---------------------------------------------------------------------------------------------
// mknod of anything but a regular file: EPERM
// ---------------------------------------------------------------------------------------------

#[test]
fn mkfifo_is_refused() {
    let tm = TestMount::start();
    tm.assert_not_created("fifo", EPERM, "mkfifo", || {
        unistd::mkfifo(&tm.path("fifo"), Mode::from_bits_truncate(0o644))
    });
}

#[test]
fn character_and_block_device_nodes_are_refused() {
    let tm = TestMount::start();
    let mode = Mode::from_bits_truncate(0o600);
    // /dev/null's and /dev/loop0's numbers.
    tm.assert_not_created("chr", EPERM, "mknod S_IFCHR", || {
        stat::mknod(&tm.path("chr"), SFlag::S_IFCHR, mode, libc::makedev(1, 3))
    });
    tm.assert_not_created("blk", EPERM, "mknod S_IFBLK", || {
        stat::mknod(&tm.path("blk"), SFlag::S_IFBLK, mode, libc::makedev(7, 0))
    });
}

#[test]
fn binding_a_unix_socket_is_refused() {
    let tm = TestMount::start();
    tm.assert_not_created("sock", EPERM, "bind of a unix socket", || UnixListener::bind(tm.path("sock")));
}

// ---------------------------------------------------------------------------------------------
// open modes
// ---------------------------------------------------------------------------------------------

#[test]
fn open_read_only_write_only_and_read_write_with_or_without_append() {
    let tm = TestMount::start();
    let path = tm.create("f.log", b"content\n");
    let snap = Snapshot::of(tm.backing("f.log"));

    let modes: [(&str, bool, bool, bool); 5] = [
        // (name, read, write, append)
        ("O_RDONLY", true, false, false),
        ("O_WRONLY", false, true, false),
        ("O_RDWR", true, true, false),
        ("O_WRONLY|O_APPEND", false, true, true),
        ("O_RDWR|O_APPEND", true, true, true),
    ];
    for (name, read, write, append) in modes {
        let mut f = OpenOptions::new()
            .read(read)
            .write(write && !append)
            .append(append)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {name}: {e}"));
        if read {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).unwrap_or_else(|e| panic!("read via {name}: {e}"));
            assert_eq!(buf, b"content\n", "read via {name}");
        }
    }
    // Merely opening and closing changes nothing.
    snap.assert_unchanged();
    tm.assert_append_works("f.log");
}

// ---------------------------------------------------------------------------------------------
// O_TRUNC: allowed on an empty file only
// ---------------------------------------------------------------------------------------------

#[test]
fn o_trunc_on_an_empty_file_is_allowed() {
    let tm = TestMount::start();
    // O_CREAT|O_TRUNC on a brand new file, like `> newfile`.
    File::create(tm.path("new.log")).unwrap().write_all(b"first\n").unwrap();
    assert_eq!(fs::read(tm.backing("new.log")).unwrap(), b"first\n");

    // O_TRUNC on an existing, empty file.
    tm.create("empty.log", b"");
    let mut f = OpenOptions::new().write(true).truncate(true).open(tm.path("empty.log")).unwrap();
    f.write_all(b"data\n").unwrap();
    drop(f);
    assert_eq!(fs::read(tm.backing("empty.log")).unwrap(), b"data\n");
}

#[test]
fn o_trunc_on_a_non_empty_file_is_refused() {
    let tm = TestMount::start();
    let path = tm.create("f.log", b"precious\n");

    tm.assert_refused("f.log", EPERM, "O_WRONLY|O_TRUNC", || OpenOptions::new().write(true).truncate(true).open(&path));
    tm.assert_refused("f.log", EPERM, "O_RDWR|O_TRUNC", || {
        OpenOptions::new().read(true).write(true).truncate(true).open(&path)
    });
    tm.assert_refused("f.log", EPERM, "O_WRONLY|O_CREAT|O_TRUNC", || File::create(&path));
}

// ---------------------------------------------------------------------------------------------
// writes: only at the current size (or anywhere through O_APPEND, which lands at the end)
// ---------------------------------------------------------------------------------------------

#[test]
fn writes_at_the_current_size_are_allowed() {
    let tm = TestMount::start();
    let path = tm.create("f.log", b"abc");
    let mut f = OpenOptions::new().write(true).open(&path).unwrap();

    assert_eq!(f.write_at(b"def", 3).unwrap(), 3, "pwrite at size");
    assert_eq!(f.seek(SeekFrom::End(0)).unwrap(), 6);
    f.write_all(b"ghi").unwrap(); // lseek(SEEK_END) + write
    f.write_all(b"jkl").unwrap(); // the file position is at the end again
    drop(f);
    assert_eq!(fs::read(tm.backing("f.log")).unwrap(), b"abcdefghijkl");
    assert_eq!(fs::read(&path).unwrap(), b"abcdefghijkl");

    // A read-write handle too.
    let mut f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let mut buf = String::new();
    f.read_to_string(&mut buf).unwrap(); // leaves the position at the end
    f.write_all(b"mno").unwrap();
    drop(f);
    assert_eq!(fs::read(tm.backing("f.log")).unwrap(), b"abcdefghijklmno");
}

#[test]
fn o_append_writes_land_at_the_end_whatever_the_offset() {
    let tm = TestMount::start();
    let path = tm.create("f.log", b"start\n");
    let mut app = OpenOptions::new().append(true).open(&path).unwrap();

    app.seek(SeekFrom::Start(0)).unwrap();
    app.write_all(b"one\n").unwrap();
    // Linux pwrite() on an O_APPEND fd appends too, whatever the offset.
    assert_eq!(app.write_at(b"two\n", 0).unwrap(), 4);
    assert_eq!(app.write_at(b"three\n", 1_000_000).unwrap(), 6);

    // The file grows through another handle; the O_APPEND handle follows the new end.
    let other = OpenOptions::new().write(true).open(&path).unwrap();
    let size = fs::metadata(&path).unwrap().len();
    other.write_at(b"four\n", size).unwrap();
    app.write_all(b"five\n").unwrap();
    drop((app, other));

    let want = b"start\none\ntwo\nthree\nfour\nfive\n";
    assert_eq!(fs::read(tm.backing("f.log")).unwrap(), want);
    assert_eq!(fs::read(&path).unwrap(), want);
}

#[test]
fn o_append_set_later_with_fcntl_is_honoured() {
    let tm = TestMount::start();
    let path = tm.create("f.log", b"start\n");
    let mut f = OpenOptions::new().write(true).open(&path).unwrap();
    let fd = f.as_raw_fd();

    // Turned on after open: the write at offset 0 lands at the end.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_APPEND) }, 0);
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"appended\n").unwrap();
    assert_eq!(fs::read(tm.backing("f.log")).unwrap(), b"start\nappended\n");

    // Turned off again: the same handle may no longer write below the end. (`move` closes it
    // before the bytes are checked.)
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFL, 0) }, 0);
    f.seek(SeekFrom::Start(0)).unwrap();
    tm.assert_refused("f.log", EPERM, "write at 0 once O_APPEND is off", move || f.write(b"X"));
}

#[test]
fn overwriting_existing_bytes_is_refused() {
    let tm = TestMount::start();
    let path = tm.create("f.log", b"0123456789\n");

    // The last refusal on each handle takes it along (`move`), so the bytes are also checked
    // after it is closed.
    let wo = OpenOptions::new().write(true).open(&path).unwrap();
    tm.assert_refused("f.log", EPERM, "pwrite at 0", || wo.write_at(b"X", 0));
    tm.assert_refused("f.log", EPERM, "pwrite at 5", || wo.write_at(b"X", 5));
    // Straddling the end still rewrites the last byte.
    let last = tm.backing_len("f.log") - 1;
    tm.assert_refused("f.log", EPERM, "pwrite straddling the end", move || wo.write_at(b"XYZ", last));
    let rw = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    tm.assert_refused("f.log", EPERM, "pwrite at 0 through O_RDWR", move || rw.write_at(b"X", 0));
}

#[test]
fn lseek_then_write_below_the_size_is_refused() {
    let tm = TestMount::start();
    let path = tm.create("f.log", b"0123456789\n");

    // A non-append handle starts at offset 0: the first write would overwrite.
    let mut f = OpenOptions::new().write(true).open(&path).unwrap();
    tm.assert_refused("f.log", EPERM, "write at offset 0", || f.write(b"X"));
    f.seek(SeekFrom::Start(4)).unwrap();
    // `move` closes the handle before the bytes are checked.
    tm.assert_refused("f.log", EPERM, "write after lseek to 4", move || f.write(b"X"));
}

#[test]
fn writing_beyond_the_end_leaving_a_hole_is_refused() {
    let tm = TestMount::start();
    let path = tm.create("f.log", b"0123456789\n");

    // Each refusal must leave the size alone: in particular, no zero-filled gap.
    let mut f = OpenOptions::new().write(true).open(&path).unwrap();
    let past_end = tm.backing_len("f.log") + 1;
    tm.assert_refused("f.log", EPERM, "pwrite 1 byte past the end", || f.write_at(b"X", past_end));
    let far_past_end = tm.backing_len("f.log") + 4096;
    tm.assert_refused("f.log", EPERM, "pwrite 4096 bytes past the end", || f.write_at(b"X", far_past_end));
    f.seek(SeekFrom::End(10)).unwrap();
    // `move` closes the handle before the bytes are checked.
    tm.assert_refused("f.log", EPERM, "write after lseek 10 past the end", move || f.write(b"X"));
}

// ---------------------------------------------------------------------------------------------
// truncate / ftruncate: only to the current size
// ---------------------------------------------------------------------------------------------

#[test]
fn truncate_to_the_current_size_is_a_no_op() {
    let tm = TestMount::start();
    let path = tm.create("f.log", b"0123456789\n");
    let snap = Snapshot::of(tm.backing("f.log"));
    let size = snap.len() as i64;

    unistd::truncate(&path, size).expect("truncate(path, size)");
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(size as u64).expect("ftruncate(fd, size)");
    drop(f);
    snap.assert_unchanged();
    tm.assert_append_works("f.log");
}

/// Sizes (or write offsets) other than a file's size: to nothing, below it, one off either way,
/// and beyond it. Functions of the size, because every refusal is followed by an append.
const NOT_THE_SIZE: [fn(i64) -> i64; 6] =
    [|_| 0, |_| 1, |size| size - 1, |size| size + 1, |size| size + 4096, |size| size + 1_000_000];

#[test]
fn truncate_by_path_to_another_size_is_refused() {
    let tm = TestMount::start();
    let path = tm.create("f.log", b"0123456789\n");

    for other in NOT_THE_SIZE {
        let len = other(tm.backing_len("f.log") as i64);
        tm.assert_refused("f.log", EPERM, &format!("truncate to {len}"), || unistd::truncate(&path, len));
    }
}

#[test]
fn ftruncate_to_another_size_is_refused() {
    let tm = TestMount::start();
    let path = tm.create("f.log", b"0123456789\n");

    let f = OpenOptions::new().write(true).open(&path).unwrap();
    for other in NOT_THE_SIZE {
        let len = other(tm.backing_len("f.log") as i64) as u64;
        tm.assert_refused("f.log", EPERM, &format!("ftruncate to {len}"), || f.set_len(len));
    }
    // The same handle still appends at the size.
    let before = fs::read(tm.backing("f.log")).unwrap();
    f.write_at(b"tail\n", before.len() as u64).unwrap();
    drop(f);
    assert_eq!(fs::read(tm.backing("f.log")).unwrap(), [&before[..], b"tail\n"].concat());
}

// ---------------------------------------------------------------------------------------------
// fallocate: refused in any mode
// ---------------------------------------------------------------------------------------------

#[test]
fn fallocate_is_refused_in_every_mode_the_kernel_forwards() {
    let tm = TestMount::start();
    let path = tm.create("f.log", b"0123456789\n");
    let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();

    let keep = FallocateFlags::FALLOC_FL_KEEP_SIZE;
    let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | keep;
    let zero = FallocateFlags::FALLOC_FL_ZERO_RANGE;
    // (offset, len) as a function of the size, which grows with every append after a refusal.
    type RangeOfSize = fn(i64) -> (i64, i64);
    let cases: [(&str, FallocateFlags, RangeOfSize); 7] = [
        ("mode 0 inside the file", FallocateFlags::empty(), |size| (0, size)),
        ("mode 0 growing the file", FallocateFlags::empty(), |size| (size, 4096)),
        ("KEEP_SIZE past the end", keep, |size| (size, 1 << 20)),
        ("KEEP_SIZE inside the file", keep, |size| (0, size)),
        ("PUNCH_HOLE|KEEP_SIZE", punch, |_| (0, 4)),
        ("ZERO_RANGE", zero, |_| (0, 4)),
        ("ZERO_RANGE|KEEP_SIZE", zero | keep, |size| (0, size + 100)),
    ];
    for (what, mode, range) in cases {
        let (offset, len) = range(tm.backing_len("f.log") as i64);
        tm.assert_refused("f.log", EPERM, what, || fcntl::fallocate(&f, mode, offset, len));
    }
    drop(f);
    tm.assert_append_works("f.log");
}

#[test]
fn fallocate_modes_the_kernel_rejects_itself_change_nothing() {
    // FUSE's kernel side answers EOPNOTSUPP for COLLAPSE/INSERT/UNSHARE_RANGE without asking
    // the file system, so the errno is not wormfs's to choose; the bytes still must not change.
    let tm = TestMount::start();
    let path = tm.create("f.log", &[b'x'; 8192]);
    let snap = Snapshot::of(tm.backing("f.log"));
    let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    for (what, mode) in [
        ("COLLAPSE_RANGE", FallocateFlags::FALLOC_FL_COLLAPSE_RANGE),
        ("INSERT_RANGE", FallocateFlags::FALLOC_FL_INSERT_RANGE),
        ("UNSHARE_RANGE", FallocateFlags::FALLOC_FL_UNSHARE_RANGE),
    ] {
        let r = fcntl::fallocate(&f, mode, 0, 4096);
        assert!(
            matches!(r, Err(nix::errno::Errno::EPERM | nix::errno::Errno::EOPNOTSUPP)),
            "fallocate {what}: expected EPERM or EOPNOTSUPP, got {r:?}"
        );
        snap.assert_unchanged();
    }
    drop(f);
    tm.assert_append_works("f.log");
}

#[test]
fn posix_fallocate_is_refused() {
    // glibc only emulates posix_fallocate (by writing zeros) on EOPNOTSUPP, so EPERM must reach
    // the caller untouched.
    let tm = TestMount::start();
    let path = tm.create("f.log", b"0123456789\n");
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    let len = tm.backing_len("f.log") as i64 + 65536;
    // `move` closes the handle before the bytes are checked.
    tm.assert_refused("f.log", EPERM, "posix_fallocate past the end", move || fcntl::posix_fallocate(&f, 0, len));
}

// ---------------------------------------------------------------------------------------------
// rename: refused, for files and directories, with any flags
// ---------------------------------------------------------------------------------------------

#[test]
fn renaming_a_file_is_refused() {
    let tm = TestMount::start();
    let a = tm.create("a.log", b"aaa\n");
    let b = tm.create("b.log", b"bbb\n");
    tm.mkdir("sub");
    let snap_b = Snapshot::of(tm.backing("b.log"));

    tm.assert_refused("a.log", EPERM, "rename", || fs::rename(&a, tm.path("a-renamed.log")));
    tm.assert_refused("a.log", EPERM, "rename over an existing file", || fs::rename(&a, &b));
    tm.assert_refused("a.log", EPERM, "rename into another directory", || fs::rename(&a, tm.path("sub/a.log")));

    snap_b.assert_unchanged();
    assert_absent(tm.backing("a-renamed.log"));
    assert_absent(tm.backing("sub/a.log"));
}

#[test]
fn renaming_a_directory_with_files_is_refused_and_an_empty_one_moves() {
    let tm = TestMount::start();
    let dir = tm.mkdir("dir");
    tm.create("dir/f.log", b"inside\n");
    tm.mkdir("other");

    tm.assert_refused("dir/f.log", EPERM, "rename of a directory with a file", || fs::rename(&dir, tm.path("dir2")));
    tm.assert_refused("dir/f.log", EPERM, "rename of a directory with a file into another", || {
        fs::rename(&dir, tm.path("other/dir"))
    });
    assert_absent(tm.backing("dir2"));
    assert_absent(tm.backing("other/dir"));

    // No file's identity depends on an empty directory's name.
    let empty = tm.mkdir("empty");
    fs::rename(&empty, tm.path("empty2")).unwrap();
    assert!(tm.backing("empty2").is_dir());
    assert_absent(tm.backing("empty"));
    tm.assert_refused("dir/f.log", EPERM, "rename of an empty directory over an existing name", || {
        fs::rename(tm.path("empty2"), tm.path("other"))
    });
}

#[test]
fn renameat2_noreplace_and_exchange_are_refused() {
    let tm = TestMount::start();
    let a = tm.create("a.log", b"aaa\n");
    let b = tm.create("b.log", b"bbb\n");
    let snap_b = Snapshot::of(tm.backing("b.log"));

    tm.assert_refused("a.log", EPERM, "RENAME_NOREPLACE", || {
        fcntl::renameat2(AT_FDCWD, &a, AT_FDCWD, &tm.path("c.log"), RenameFlags::RENAME_NOREPLACE)
    });
    tm.assert_refused("a.log", EPERM, "RENAME_EXCHANGE of two files", || {
        fcntl::renameat2(AT_FDCWD, &a, AT_FDCWD, &b, RenameFlags::RENAME_EXCHANGE)
    });
    let d1 = tm.mkdir("d1");
    let d2 = tm.mkdir("d2");
    tm.assert_refused("a.log", EPERM, "RENAME_EXCHANGE of two directories", || {
        fcntl::renameat2(AT_FDCWD, &d1, AT_FDCWD, &d2, RenameFlags::RENAME_EXCHANGE)
    });

    snap_b.assert_unchanged();
    assert_absent(tm.backing("c.log"));
    tm.assert_append_works("b.log");
}

// ---------------------------------------------------------------------------------------------
// unlink / rmdir
// ---------------------------------------------------------------------------------------------

#[test]
fn unlink_is_refused() {
    let tm = TestMount::start();
    let full = tm.create("full.log", b"keep me\n");
    let empty = tm.create("empty.log", b"");

    tm.assert_refused("full.log", EPERM, "unlink", || fs::remove_file(&full));
    // Even an empty file stays.
    tm.assert_refused("empty.log", EPERM, "unlink of an empty file", || fs::remove_file(&empty));

    assert!(full.is_file() && empty.is_file(), "still visible through the mount");
}

#[test]
fn rmdir_of_an_empty_directory_is_allowed() {
    let tm = TestMount::start();
    let dir = tm.mkdir("empty-dir");
    fs::remove_dir(&dir).expect("rmdir of an empty directory");
    assert_absent(tm.backing("empty-dir"));
    assert_absent(&dir);
    tm.assert_still_works();
}

#[test]
fn rmdir_of_a_non_empty_directory_is_refused() {
    let tm = TestMount::start();
    let with_file = tm.mkdir("with-file");
    tm.create("with-file/f.log", b"x\n");
    let with_dir = tm.mkdir("with-dir");
    tm.mkdir("with-dir/inner");

    tm.assert_refused("with-file/f.log", libc::ENOTEMPTY, "rmdir of a directory with a file", || {
        fs::remove_dir(&with_file)
    });
    tm.assert_refused("with-file/f.log", libc::ENOTEMPTY, "rmdir of a directory with a directory", || {
        fs::remove_dir(&with_dir)
    });

    assert!(tm.backing("with-dir/inner").is_dir());
}

// ---------------------------------------------------------------------------------------------
// link / symlink
// ---------------------------------------------------------------------------------------------

#[test]
fn hard_links_are_refused() {
    let tm = TestMount::start();
    let f = tm.create("f.log", b"x\n");

    tm.assert_refused("f.log", EPERM, "link", || fs::hard_link(&f, tm.path("link.log")));
    assert_absent(tm.backing("link.log"));
    assert_absent(tm.path("link.log"));
    assert_eq!(fs::metadata(tm.backing("f.log")).unwrap().nlink(), 1);
}

#[test]
fn symlinks_are_refused() {
    let tm = TestMount::start();
    tm.create("f.log", b"x\n");
    tm.assert_refused("f.log", EPERM, "symlink to a file in the mount", || {
        std::os::unix::fs::symlink("f.log", tm.path("sym"))
    });
    tm.assert_refused("f.log", EPERM, "symlink out of the mount", || {
        std::os::unix::fs::symlink("/etc/passwd", tm.path("sym2"))
    });
    assert_absent(tm.backing("sym"));
    assert_absent(tm.backing("sym2"));
}

// ---------------------------------------------------------------------------------------------
// chmod / chown / utimens: allowed and reflected in DATA_DIR
// ---------------------------------------------------------------------------------------------

#[test]
fn chmod_is_reflected_in_the_backing_file() {
    let tm = TestMount::start();
    let f = tm.create("f.log", b"x\n");
    let snap = Snapshot::of(tm.backing("f.log"));
    let dir = tm.mkdir("dir");

    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(mode_of(&tm.backing("f.log")), 0o600);
    assert_eq!(mode_of(&f), 0o600);
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(mode_of(&tm.backing("f.log")), 0o640);
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(mode_of(&tm.backing("dir")), 0o700);

    snap.assert_unchanged();
    tm.assert_append_works("f.log");
}

#[test]
fn chown_is_reflected_in_the_backing_file() {
    let tm = TestMount::start();
    let f = tm.create("f.log", b"x\n");
    let snap = Snapshot::of(tm.backing("f.log"));
    let dir = tm.mkdir("dir");

    std::os::unix::fs::chown(&f, Some(1234), Some(5678)).unwrap();
    let m = fs::metadata(tm.backing("f.log")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    let m = fs::metadata(&f).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 5678), "mount view");
    std::os::unix::fs::chown(&f, None, Some(42)).unwrap(); // group only
    let m = fs::metadata(tm.backing("f.log")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 42));
    std::os::unix::fs::chown(&dir, Some(7), Some(8)).unwrap();
    let m = fs::metadata(tm.backing("dir")).unwrap();
    assert_eq!((m.uid(), m.gid()), (7, 8));

    snap.assert_unchanged();
    tm.assert_append_works("f.log");
}

#[test]
fn utimens_is_reflected_in_the_backing_file() {
    let tm = TestMount::start();
    let f = tm.create("f.log", b"x\n");
    let snap = Snapshot::of(tm.backing("f.log"));

    let atime = TimeSpec::new(1_000_000_000, 123_456_789);
    let mtime = TimeSpec::new(1_234_567_890, 987_654_321);
    stat::utimensat(AT_FDCWD, &f, &atime, &mtime, UtimensatFlags::FollowSymlink).unwrap();

    let m = fs::metadata(tm.backing("f.log")).unwrap();
    assert_eq!((m.atime(), m.atime_nsec()), (1_000_000_000, 123_456_789), "backing atime");
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_234_567_890, 987_654_321), "backing mtime");
    let m = fs::metadata(&f).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_234_567_890, 987_654_321), "mount mtime");

    // futimens on an open handle works too.
    let times =
        fs::FileTimes::new().set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000));
    File::open(&f).unwrap().set_times(times).unwrap();
    assert_eq!(fs::metadata(tm.backing("f.log")).unwrap().mtime(), 1_500_000_000);

    snap.assert_unchanged();
    tm.assert_append_works("f.log");
}

// ---------------------------------------------------------------------------------------------
// xattrs: read through, never written
// ---------------------------------------------------------------------------------------------

#[test]
fn xattrs_on_the_backing_file_are_readable_through_the_mount() {
    let tm = TestMount::start();
    let f = tm.create("f.log", b"x\n");
    // The sealed backing file is immutable: root clears that before setting an attribute there.
    unprotect(tm.backing("f.log"));
    setxattr(&tm.backing("f.log"), "user.origin", b"backing store").unwrap();

    assert_eq!(getxattr(&f, "user.origin").unwrap(), b"backing store");
    assert!(listxattr(&f).unwrap().contains(&"user.origin".to_string()), "listxattr via mount");
    assert_errno(getxattr(&f, "user.missing"), libc::ENODATA);
}

#[test]
fn setxattr_and_removexattr_are_refused() {
    let tm = TestMount::start();
    let f = tm.create("f.log", b"x\n");
    unprotect(tm.backing("f.log"));
    setxattr(&tm.backing("f.log"), "user.origin", b"original").unwrap();

    tm.assert_refused("f.log", EPERM, "setxattr of a new name", || setxattr(&f, "user.new", b"v"));
    tm.assert_refused("f.log", EPERM, "setxattr over an existing name", || setxattr(&f, "user.origin", b"changed"));
    tm.assert_refused("f.log", EPERM, "removexattr", || removexattr(&f, "user.origin"));
    let dir = tm.mkdir("dir");
    tm.assert_refused("f.log", EPERM, "setxattr on a directory", || setxattr(&dir, "user.new", b"v"));

    assert_errno(getxattr(&tm.backing("f.log"), "user.new"), libc::ENODATA);
    assert_eq!(getxattr(&tm.backing("f.log"), "user.origin").unwrap(), b"original");
    assert_errno(getxattr(&tm.backing("dir"), "user.new"), libc::ENODATA);
}

// ---------------------------------------------------------------------------------------------
// mmap
// ---------------------------------------------------------------------------------------------

/// mmap `len` bytes of `fd`; Err carries the errno.
fn mmap(fd: &File, len: usize, prot: i32, flags: i32) -> std::io::Result<*mut libc::c_void> {
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd.as_raw_fd(), 0) };
    if p == libc::MAP_FAILED {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(p)
    }
}

#[test]
fn shared_writable_mmap_is_refused_with_enodev() {
    let tm = TestMount::start();
    let path = tm.create("f.log", b"0123456789\n");

    let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    // `move` closes the handle before the bytes are checked.
    tm.assert_refused("f.log", libc::ENODEV, "mmap(PROT_WRITE, MAP_SHARED)", move || {
        let r = mmap(&f, 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED);
        if let Ok(p) = r {
            unsafe { libc::munmap(p, 4096) };
        }
        r
    });
}

#[test]
fn read_only_shared_mmap_shows_the_bytes() {
    let tm = TestMount::start();
    let content = b"mapped bytes\n";
    let path = tm.create("f.log", content);

    let f = File::open(&path).unwrap();
    let p = mmap(&f, content.len(), libc::PROT_READ, libc::MAP_SHARED).expect("read-only mmap");
    let seen = unsafe { std::slice::from_raw_parts(p as *const u8, content.len()) }.to_vec();
    unsafe { libc::munmap(p, content.len()) };
    assert_eq!(seen, content);
}

#[test]
fn private_writable_mmap_is_allowed_and_never_reaches_the_file() {
    let tm = TestMount::start();
    let content = b"0123456789\n";
    let path = tm.create("f.log", content);
    let snap = Snapshot::of(tm.backing("f.log"));

    let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let p = mmap(&f, content.len(), prot, libc::MAP_PRIVATE).expect("MAP_PRIVATE mapping");
    let map = unsafe { std::slice::from_raw_parts_mut(p as *mut u8, content.len()) };
    assert_eq!(map, content);
    map[0] = b'X'; // copy-on-write: private to this process
    unsafe {
        libc::msync(p, content.len(), libc::MS_SYNC);
        libc::munmap(p, content.len());
    }
    drop(f);
    snap.assert_unchanged();
    tm.assert_append_works("f.log");
}

// ---------------------------------------------------------------------------------------------
// ioctl: file attribute flags (chattr) are not passed through
// ---------------------------------------------------------------------------------------------

#[test]
fn file_flag_ioctls_are_refused_with_enotty() {
    let tm = TestMount::start();
    let path = tm.create("f.log", b"x\n");
    let f = File::open(&path).unwrap();

    tm.assert_refused("f.log", libc::ENOTTY, "FS_IOC_GETFLAGS", || {
        let mut flags: libc::c_long = 0;
        let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
        if r == 0 {
            Ok(flags)
        } else {
            Err(std::io::Error::last_os_error())
        }
    });
    // The caller's FS_IMMUTABLE_FL / FS_APPEND_FL must not reach the backing file, whose flags
    // are wormfs' own. (`move` closes the handle before the bytes are checked.)
    tm.assert_refused("f.log", libc::ENOTTY, "FS_IOC_SETFLAGS", move || {
        let mut set: libc::c_long = 0x10 | 0x20;
        let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &mut set) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    });

    let backing = File::open(tm.backing("f.log")).unwrap();
    let flags = || {
        let mut flags: libc::c_long = 0;
        let r = unsafe { libc::ioctl(backing.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
        assert_eq!(r, 0, "FS_IOC_GETFLAGS on the backing file");
        flags & (0x10 | 0x20)
    };
    // wormfs sets its own flag when the kernel releases the last handle, just after close(2).
    wait_until(std::time::Duration::from_secs(5), || flags() == 0x10);
    assert_eq!(flags(), 0x10, "wormfs' immutable flag alone (sealed and closed), not the caller's");
}

// ---------------------------------------------------------------------------------------------
// copy_file_range
// ---------------------------------------------------------------------------------------------

/// copy_file_range(2) with explicit offsets (nix gates its wrapper behind a feature we lack).
fn copy_file_range(src: &File, off_in: &mut i64, dst: &File, off_out: &mut i64, len: usize) -> std::io::Result<usize> {
    let n = unsafe { libc::copy_file_range(src.as_raw_fd(), off_in, dst.as_raw_fd(), off_out, len, 0) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[test]
fn copy_file_range_at_the_current_size_appends() {
    let tm = TestMount::start();
    let src = tm.create("src.log", b"copied bytes\n");
    let dst = tm.create("dst.log", b"existing\n");

    let src_f = File::open(&src).unwrap();
    let dst_f = OpenOptions::new().write(true).open(&dst).unwrap();
    let (mut off_in, mut off_out) = (0i64, 9i64);
    let mut left = 13usize;
    while left > 0 {
        let n = copy_file_range(&src_f, &mut off_in, &dst_f, &mut off_out, left).expect("copy_file_range at the size");
        assert!(n > 0, "copy_file_range made no progress");
        left -= n;
    }
    drop((src_f, dst_f));
    assert_eq!(fs::read(tm.backing("dst.log")).unwrap(), b"existing\ncopied bytes\n");
    assert_eq!(fs::read(&dst).unwrap(), b"existing\ncopied bytes\n");
}

#[test]
fn copy_file_range_below_or_beyond_the_size_is_refused() {
    let tm = TestMount::start();
    let src = tm.create("src.log", b"XXXX");
    let dst = tm.create("dst.log", b"0123456789\n");

    let src_f = File::open(&src).unwrap();
    let dst_f = OpenOptions::new().write(true).open(&dst).unwrap();
    for other in NOT_THE_SIZE {
        let out = other(tm.backing_len("dst.log") as i64);
        tm.assert_refused("dst.log", EPERM, &format!("copy_file_range to offset {out}"), || {
            let (mut off_in, mut off_out) = (0i64, out);
            copy_file_range(&src_f, &mut off_in, &dst_f, &mut off_out, 4)
        });
    }
    drop((src_f, dst_f));
    tm.assert_append_works("dst.log");
}

// ---------------------------------------------------------------------------------------------
// stat and plain access to DATA_DIR
// ---------------------------------------------------------------------------------------------

#[test]
fn stat_reports_a_block_size_of_at_least_128_kib() {
    let tm = TestMount::start();
    let empty = tm.create("empty.log", b"");
    let full = tm.create("full.log", &[b'x'; 10_000]);
    for p in [&empty, &full] {
        let blksize = fs::metadata(p).unwrap().blksize();
        assert!(blksize >= 131_072, "st_blksize of {} is {blksize}", p.display());
    }
    // Also through an open handle (fstat), which is what stdio uses to size its buffer.
    let blksize = File::open(&full).unwrap().metadata().unwrap().blksize();
    assert!(blksize >= 131_072, "fstat st_blksize is {blksize}");
}

#[test]
fn files_stay_readable_as_plain_files_in_the_data_dir() {
    let tm = TestMount::start();
    tm.mkdir("app");
    tm.mkdir("app/2024");
    for i in 0..3 {
        tm.append("app/2024/events.log", format!("event {i}\n").as_bytes());
    }
    let want = "event 0\nevent 1\nevent 2\n";
    let out = run(&format!("cat {}", q(tm.backing("app/2024/events.log"))));
    out.assert_success("cat in DATA_DIR");
    assert_eq!(out.stdout, want);
    assert_eq!(fs::read_to_string(tm.path("app/2024/events.log")).unwrap(), want);
    let meta = fs::symlink_metadata(tm.backing("app/2024/events.log")).unwrap();
    assert!(meta.file_type().is_file(), "a plain file, not a link or special file");
}

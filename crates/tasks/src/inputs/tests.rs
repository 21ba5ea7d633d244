//! The input-root drills: outside paths, symlinks out, `/dev/zero`, FIFOs, a symlink swapped
//! after the open, and no roots at all.

use std::io::Read;

use super::*;

fn root_with(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().expect("tmp");
    let p = root.path().join(name);
    std::fs::write(&p, bytes).expect("write");
    (root, p)
}

#[test]
fn symlinks_out_of_a_root_are_refused() {
    let (root, inside) = root_with("a.pdf", b"%PDF-1.4");
    let link = root.path().join("passwd");
    std::os::unix::fs::symlink("/etc/passwd", &link).expect("symlink");
    let rel = root.path().join("rel");
    std::os::unix::fs::symlink("../../../../../../etc/passwd", &rel).expect("symlink");
    let roots = InputRoots::new([root.path().to_path_buf()]);
    assert_eq!(roots.open(&inside).expect("inside").len, 8);
    for p in [&link, &rel] {
        let e = roots.open(p).expect_err("must refuse");
        assert!(matches!(e, Error::NotAllowed { .. }), "{e}");
        assert!(e.to_string().contains("not allowed"), "{e}");
    }
    let dotdot = root.path().join("..").join("..").join("etc").join("passwd");
    assert!(matches!(roots.open(&dotdot), Err(Error::NotAllowed { .. })));
    assert!(matches!(
        roots.open(&root.path().join("nope")),
        Err(Error::InputMissing { .. })
    ));
}

#[test]
fn a_symlink_inside_the_root_to_the_root_is_fine() {
    let (root, inside) = root_with("a.txt", b"hello");
    std::os::unix::fs::symlink(&inside, root.path().join("b.txt")).ok();
    std::os::unix::fs::symlink("a.txt", root.path().join("c.txt")).expect("symlink");
    let roots = InputRoots::new([root.path().to_path_buf()]);
    assert_eq!(
        roots
            .open(&root.path().join("c.txt"))
            .expect("rel link")
            .len,
        5
    );
}

#[test]
fn outside_the_roots_reads_the_same_whether_or_not_it_exists() {
    let (root, _) = root_with("a.txt", b"x");
    let roots = InputRoots::new([root.path().to_path_buf()]);
    let a = roots.open(Path::new("/etc/passwd")).expect_err("refused");
    let b = roots
        .open(Path::new("/etc/no-such-file-here"))
        .expect_err("refused");
    let strip = |e: &Error, p: &str| e.to_string().replace(p, "P");
    assert_eq!(
        strip(&a, "/etc/passwd"),
        strip(&b, "/etc/no-such-file-here")
    );
    assert!(
        !a.to_string().contains(&root.path().display().to_string()),
        "{a}"
    );
}

#[test]
fn dev_zero_is_refused() {
    let roots = InputRoots::new([PathBuf::from("/dev")]);
    let e = roots
        .open(Path::new("/dev/zero"))
        .expect_err("not a regular file");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let e = InputRoots::new([std::env::temp_dir()])
        .open(Path::new("/dev/zero"))
        .expect_err("outside");
    assert!(matches!(e, Error::NotAllowed { .. }), "{e}");
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let root = tempfile::tempdir().expect("tmp");
    let fifo = root.path().join("pipe.png");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(ok.success());
    let roots = InputRoots::new([root.path().to_path_buf()]);
    let e = roots.open(&fifo).expect_err("a FIFO is not a regular file");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let e = roots
        .open(root.path())
        .expect_err("a directory is not a file");
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

#[test]
fn a_symlink_swapped_after_the_open_changes_nothing() {
    let (root, good) = root_with("chart.png", b"GOOD");
    let link = root.path().join("in.png");
    std::os::unix::fs::symlink("chart.png", &link).expect("symlink");
    let roots = InputRoots::new([root.path().to_path_buf()]);
    let mut f = roots.open(&link).expect("opens");
    // The attacker swaps the link (and the target) after the check.
    std::fs::remove_file(&link).expect("rm");
    std::os::unix::fs::symlink("/etc/passwd", &link).expect("swap");
    std::fs::rename(&good, root.path().join("moved.png")).expect("mv");
    let mut s = String::new();
    f.file.read_to_string(&mut s).expect("read");
    assert_eq!(s, "GOOD");
    // A new open of the swapped name is refused.
    assert!(matches!(roots.open(&link), Err(Error::NotAllowed { .. })));
}

#[test]
fn no_roots_configured_fails_closed_naming_the_setting() {
    let cache = tempfile::tempdir().expect("tmp");
    let (_other, file) = root_with("a.pdf", b"%PDF-1.4");
    let roots = InputRoots::default().with_internal(cache.path());
    let e = roots.open(&file).expect_err("no roots");
    assert!(matches!(e, Error::NoInputRoots { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("input_roots") && msg.contains("HLBOT_INPUT_ROOTS"),
        "{msg}"
    );
    // hlbot's own cache stays readable.
    std::fs::write(cache.path().join("frame.jpg"), b"x").expect("write");
    assert!(roots.open(&cache.path().join("frame.jpg")).is_ok());
}

#[test]
fn the_fallback_walk_refuses_every_symlink() {
    let (root, _) = root_with("a.txt", b"x");
    std::os::unix::fs::symlink("a.txt", root.path().join("b.txt")).expect("symlink");
    let dir = rustix::fs::open(root.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        .expect("dir");
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    assert!(walk_nofollow(dir, Path::new("a.txt"), flags).is_ok());
    let dir = rustix::fs::open(root.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        .expect("dir");
    assert_eq!(
        walk_nofollow(dir, Path::new("b.txt"), flags).err(),
        Some(Errno::XDEV)
    );
    let dir = rustix::fs::open(root.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        .expect("dir");
    assert_eq!(
        walk_nofollow(dir, Path::new("../x"), flags).err(),
        Some(Errno::XDEV)
    );
}

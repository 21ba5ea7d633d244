//! The deployment files under `deploy/` as operators use them: the compose file validated by
//! Debian's `docker-compose`, the systemd units by `systemd-analyze verify` (and their worker
//! command started for real), the container image built with podman from `deploy/Dockerfile` and
//! run: a health check, `hlbot doctor` (every shipped tool found and working), a task through
//! Redis, a PDF ingested with its pdfium and tesseract.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hlbot_testkit::env::{corpus, missing, tool, workspace};
use hlbot_testkit::{Proc, TestRedis, worker::wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");

fn deploy() -> PathBuf {
    workspace().join("deploy")
}

fn run(c: &mut Command) -> Output {
    c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn compose_file_is_valid_and_has_the_whole_system() {
    if !tool("docker-compose", "--version") {
        return missing("docker-compose (Debian package docker-compose)").unwrap_or(());
    }
    let dir = tempfile::tempdir().unwrap();
    // Compose reads `.env` next to the file: use a copy of the example, as the README says.
    for f in ["docker-compose.yml", ".env.example", "Dockerfile"] {
        std::fs::copy(deploy().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(deploy().join(".env.example"), dir.path().join(".env")).unwrap();
    let out = run(Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config"])
        .current_dir(dir.path()));
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        text(&out)
    );
    let cfg = String::from_utf8_lossy(&out.stdout);
    let services = run(Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config", "--services"])
        .current_dir(dir.path()));
    let services = String::from_utf8_lossy(&services.stdout);
    for s in [
        "redis",
        "postgres",
        "worker-youtube",
        "worker-pdf",
        "worker-llm",
        "beat-a",
        "beat-b",
        "dashboard",
    ] {
        assert!(
            services.lines().any(|l| l == s),
            "service {s} missing: {services}"
        );
    }
    assert!(cfg.contains("--appendonly"), "Redis without AOF");
    assert!(cfg.contains("llm,default"), "no llm+default worker");
    assert!(cfg.contains("mem_limit"), "no resource limits");
    assert!(cfg.contains("ANTHROPIC_API_KEY"), ".env not applied");
    assert!(
        cfg.contains("HLBOT_DASHBOARD_TOKEN") && cfg.contains("5555"),
        "dashboard without its token or port"
    );
    // A broken file is refused (the check can fail).
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  w:\n    image: x\n    restart: sometimes-maybe\n    bogus_key: 1\n",
    )
    .unwrap();
    let bad = run(Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .current_dir(dir.path()));
    assert!(!bad.status.success(), "invalid compose file accepted");
}

/// The units, renamed to instances and pointed at the binary under test.
fn units(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (file, as_name) in [
        ("hlbot-worker@.service", "hlbot-worker@pdf.service"),
        ("hlbot-beat.service", "hlbot-beat.service"),
        ("hlbot-dashboard.service", "hlbot-dashboard.service"),
    ] {
        let unit = std::fs::read_to_string(deploy().join("systemd").join(file)).unwrap();
        let p = dir.join(as_name);
        std::fs::write(&p, unit.replace("/usr/local/bin/hlbot", BIN)).unwrap();
        out.push(p);
    }
    out
}

#[test]
fn systemd_units_verify_clean() {
    if !tool("systemd-analyze", "--version") {
        return missing("systemd-analyze (Debian package systemd)").unwrap_or(());
    }
    let dir = tempfile::tempdir().unwrap();
    let files = units(dir.path());
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&files));
    assert!(
        out.status.success() && text(&out).trim().is_empty(),
        "systemd-analyze verify: {}",
        text(&out)
    );
    // A misspelt key is reported (the check can fail).
    let worker = &files[0];
    let unit = std::fs::read_to_string(worker).unwrap();
    std::fs::write(worker, unit.replace("TasksMax=", "TaskMax=")).unwrap();
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(worker));
    assert!(text(&out).contains("Unknown key"), "{}", text(&out));
}

#[test]
fn the_worker_unit_command_line_starts_a_notifying_worker() {
    // ExecStart of hlbot-worker@.service with the unit's defaults, run as systemd would: it must
    // parse and reach READY over NOTIFY_SOCKET.
    let unit = std::fs::read_to_string(deploy().join("systemd/hlbot-worker@.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/local/bin/hlbot "))
        .expect("ExecStart");
    let args: Vec<String> = exec
        .replace("${QUEUES}", "pdf")
        .replace("${CONCURRENCY}", "2")
        .replace("%i", "pdf")
        .replace("%H", "test")
        .replace("$EXTRA_ARGS", "")
        .split_whitespace()
        .map(String::from)
        .collect();
    let r = TestRedis::new();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("notify");
    let rx = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = Proc(
        hlbot_testkit::worker::hlbot(BIN, &r)
            .args(&args)
            .env("NOTIFY_SOCKET", &sock)
            .env("HLBOT_CACHE_DIR", dir.path().join("cache"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("READY within 30 s");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("READY=1"));
    w.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(w.wait_exit(Duration::from_secs(30)).unwrap().success());
}

fn podman() -> Command {
    let mut c = Command::new("podman");
    c.env_remove("CONTAINER_HOST");
    c
}

/// `--ulimit`s the sandbox allows (runc cannot raise limits above the caller's hard limit).
const LIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
];

/// `localhost/debian:bookworm-slim`, made with debootstrap when missing (no Docker Hub here).
fn base_image() -> Option<String> {
    let name = "localhost/debian:bookworm-slim";
    if run(podman().args(["image", "exists", name]))
        .status
        .success()
    {
        return Some(name.into());
    }
    if !tool("debootstrap", "--version") && !Path::new("/usr/sbin/debootstrap").exists() {
        return missing("debootstrap (to make the Debian base image)");
    }
    let root = tempfile::tempdir().unwrap();
    let out = run(Command::new("debootstrap").args([
        "--variant=minbase",
        "bookworm",
        root.path().to_str().unwrap(),
        "http://deb.debian.org/debian",
    ]));
    assert!(out.status.success(), "debootstrap: {}", text(&out));
    let mut tar = Command::new("tar")
        .args(["-C", root.path().to_str().unwrap(), "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = run(podman()
        .args(["import", "-", name])
        .stdin(tar.stdout.take().unwrap()));
    let _ = tar.wait();
    assert!(out.status.success(), "podman import: {}", text(&out));
    Some(name.into())
}

#[test]
fn container_image_builds_and_runs_tasks() {
    if !tool("podman", "--version") {
        return missing("podman (Debian package podman)").unwrap_or(());
    }
    let Some(base) = base_image() else { return };
    // One tag, kept: its layers are the build cache of the next run (only the binary layer changes).
    let tag = "localhost/hlbot:test".to_string();
    // The binary under test as the image's binary stage (CI does not compile a second time).
    let bin = tempfile::tempdir().unwrap();
    std::fs::copy(BIN, bin.path().join("hlbot")).unwrap();
    let _ = run(Command::new("strip").arg(bin.path().join("hlbot")));
    let mut tar = Command::new("tar")
        .args(["-C", bin.path().to_str().unwrap(), "-c", "hlbot"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let binary = format!("localhost/hlbot-binary:{}", std::process::id());
    let out = run(podman()
        .args(["import", "-", &binary])
        .stdin(tar.stdout.take().unwrap()));
    let _ = tar.wait();
    assert!(out.status.success(), "import binary: {}", text(&out));

    let mut build = podman();
    build.args(["build", "--format", "docker", "--network", "host"]);
    build.args(LIMITS);
    let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if ca.exists() {
        build.args(["-v", &format!("{}:/run/host-ca.crt:ro", ca.display())]);
        build.args(["--build-arg", "PIP_CERT=/run/host-ca.crt"]);
    }
    let out = run(build
        .args(["-f", "deploy/Dockerfile", "-t", &tag])
        .args(["--build-arg", &format!("BASE_IMAGE={base}")])
        .args(["--build-arg", &format!("BINARY_FROM={binary}")])
        .arg(".")
        .current_dir(workspace()));
    let _ = run(podman().args(["rmi", &binary]));
    assert!(out.status.success(), "podman build: {}", text(&out));

    // Non-root user, a health check, the binary on PATH.
    let info = run(podman().args(["image", "inspect", &tag]));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("image inspect");
    let info = &info[0];
    assert_eq!(info["User"], "hlbot", "non-root user");
    assert_eq!(
        info["Healthcheck"]["Test"][1], "hlbot",
        "HEALTHCHECK: {info}"
    );
    let size_mb = info["Size"].as_f64().unwrap_or(0.0) / 1e6;
    eprintln!("image {tag}: {size_mb:.0} MB");

    // A worker in the container, on the test's Redis: healthy, runs a task sent from outside.
    let r = TestRedis::new();
    let health = format!("127.0.0.1:{}", free_port());
    let name = format!("hlbot-test-{}", std::process::id());
    let pdfs = corpus("pdf");
    let mut worker = podman();
    worker.args(["run", "--rm", "--name", &name, "--network", "host"]);
    worker.args(LIMITS);
    if let Some(p) = &pdfs {
        worker.args(["-v", &format!("{}:/srv/hlbot/inbox:ro", p.display())]);
        worker.args(["-e", "HLBOT_INPUT_ROOTS=/srv/hlbot/inbox"]);
    }
    let mut w = Proc(
        worker
            .args([
                &tag,
                "-l",
                "debug",
                "--broker",
                &r.url,
                "--key-prefix",
                &r.prefix,
            ])
            .args(["worker", "-Q", "default,pdf", "--health-address", &health])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    wait_until(Duration::from_secs(60), "container worker healthy", || {
        let o = run(podman().args(["exec", &name, "hlbot", "health", "--address", &health]));
        o.status.success().then_some(())
    });
    // `hlbot doctor` inside the image: every tool the image ships is found and works; Redis
    // is reachable. The test's Redis keeps nothing on disk (a warning), so only FAILs fail.
    let out = run(podman().args(["exec", &name, "hlbot", "--broker", &r.url, "doctor"]));
    let report = text(&out);
    assert!(out.status.success(), "doctor in the image:\n{report}");
    for check in [
        "redis",
        "pdfium",
        "tesseract",
        "yt-dlp",
        "ffmpeg",
        "ffprobe",
        "cache dir",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("ok    {check}: "))),
            "doctor in the image, {check}:\n{report}"
        );
    }
    let send = |task: &str, kwargs: &str| {
        run(hlbot_testkit::worker::hlbot(BIN, &r)
            .args(["send", task, "--kwargs", kwargs, "--wait"]))
    };
    let out = send("hlbot.debug.echo", r#"{"x": "from the host"}"#);
    assert!(
        out.status.success() && text(&out).contains("from the host"),
        "{}",
        text(&out)
    );
    if pdfs.is_some() {
        // pdfium and tesseract inside the image: a scanned PDF needs both.
        let out = send(
            "process_pdf_document",
            r#"{"pdf_path": "/srv/hlbot/inbox/gen_scanned_trading_notes.pdf"}"#,
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("EUR/USD"), "{}", text(&out));
    }
    let out = run(podman().args(["stop", "-t", "30", &name]));
    assert!(out.status.success(), "{}", text(&out));
    let status = w
        .wait_exit(Duration::from_secs(40))
        .expect("container exits");
    assert!(status.success(), "worker exit in the container: {status:?}");
}

//! Start-up tool checks: a worker refusing or warning without PDFium or a language pack, and an
//! installed binary finding PDFium on its own.

use super::*;

#[test]
fn strict_worker_refuses_without_pdfium_and_says_how_to_fix() {
    let r = TestRedis::new();
    let out = hlbot(&r)
        .env("HLBOT_PDFIUM_LIB", "/nonexistent/libpdfium.so")
        .args(["worker", "-Q", "pdf", "--strict"])
        .output()
        .expect("worker");
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("pdfium is missing: no library at /nonexistent/libpdfium.so"),
        "{err}"
    );
    for want in [
        "HLBOT_PDFIUM_LIB",
        "pdf.pdfium_lib",
        "scripts/install.sh",
        "--strict",
    ] {
        assert!(err.contains(want), "{want} not in: {err}");
    }
    assert!(!err.contains("DlOpen"), "{err}");
}

/// A PDF task run without pdfium fails with a sentence, not the loader's debug dump.
#[test]
fn pdf_task_without_pdfium_fails_with_a_sentence() {
    let r = TestRedis::new();
    let dir = tempfile::tempdir().expect("tmp");
    let pdf = dir.path().join("x.pdf");
    std::fs::write(&pdf, b"%PDF-1.4\n%%EOF\n").expect("pdf");
    let kwargs = json!({"pdf_path": pdf}).to_string();
    let out = hlbot(&r)
        .env("HLBOT_PDFIUM_LIB", "/nonexistent/libpdfium.so")
        .args(["call", "process_pdf_document", "--kwargs", &kwargs])
        .output()
        .expect("call");
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("libpdfium could not be loaded from /nonexistent/libpdfium.so"),
        "{err}"
    );
    assert!(
        err.contains("HLBOT_PDFIUM_LIB") && err.contains("scripts/install.sh"),
        "{err}"
    );
    assert!(
        !err.contains("DlOpen") && !err.contains("LoadLibraryError"),
        "{err}"
    );
}

#[test]
fn missing_tesseract_language_pack_is_named() {
    if !hlbot_testkit::tool("tesseract", "--version") {
        return;
    }
    let r = TestRedis::new();
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("hlbot.toml");
    std::fs::write(&cfg, "[pdf]\nlanguages = \"eng+zzz\"\n").expect("cfg");
    let out = hlbot(&r)
        .args(["--config", cfg.to_str().unwrap_or_default()])
        .args(["worker", "-Q", "pdf", "--strict"])
        .output()
        .expect("worker");
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("tesseract-ocr-zzz"), "{err}");
    assert!(err.contains("languages = \"eng+zzz\""), "{err}");
}

/// `scripts/install.sh` with a built binary: the installed `hlbot`, run outside the checkout
/// without `scripts/env.sh`, finds libpdfium.so in the data folder; completions and the man page
/// are in place.
#[test]
fn installed_binary_finds_pdfium_without_env_sh() {
    if hlbot_testkit::env::pdfium_lib().is_none() {
        return;
    }
    let r = TestRedis::new();
    let home = tempfile::tempdir().expect("tmp");
    let h = home.path();
    let script = hlbot_testkit::workspace().join("scripts/install.sh");
    let bin_dir = h.join("bin");
    let out = Command::new(script)
        .args([
            "--bin",
            BIN,
            "--prefix",
            bin_dir.to_str().unwrap_or_default(),
            "--no-ytdlp",
        ])
        .env("HOME", h)
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("install.sh");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let data = h.join(".local/share/hlbot");
    assert!(data.join("libpdfium.so").is_file());
    assert!(h.join(".local/share/man/man1/hlbot.1").is_file());
    assert!(
        h.join(".local/share/bash-completion/completions/hlbot")
            .is_file()
    );

    let mut w = Proc(
        Command::new(bin_dir.join("hlbot"))
            .args(["--broker", &r.url, "--key-prefix", &r.prefix])
            .args(["worker", "-Q", "pdf", "-c", "1"])
            .current_dir(h)
            .env("HOME", h)
            .env_remove("HLBOT_PDFIUM_LIB")
            .env_remove("HLBOT_CONFIG")
            .env_remove("XDG_DATA_HOME")
            .env_remove("REDIS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("installed worker"),
    );
    let tools = BufReader::new(w.stderr.take().expect("stderr"))
        .lines()
        .map_while(Result::ok)
        .take(40)
        .find(|l| l.trim_start().starts_with("tools:"))
        .expect("banner tools line");
    let want = format!("pdfium {}", data.join("libpdfium.so").display());
    assert!(tools.contains(&want), "{tools}");
}

//! docs/reference.md is complete: every configuration key the code deserializes (the `Raw*`
//! sections and beat's `EntryConfig`), every `HLBOT_*` variable any crate reads, every variable
//! a flag takes (`env = "…"`) and every task `hlbot tasks` lists appear in it.

use std::path::Path;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Public field names of `pub struct NAME { … }` in `src`.
fn fields(src: &str, name: &str) -> Vec<String> {
    let start = src
        .find(&format!("pub struct {name} {{"))
        .unwrap_or_else(|| panic!("struct {name} not found"));
    let body = &src[start..];
    let body = &body[..body.find("\n}").expect("struct end")];
    body.lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .filter(|n| !n.contains(' '))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_config_key_is_documented() {
    let ws = hlbot_testkit::workspace();
    let doc = read(&ws.join("docs/reference.md"));
    let settings = read(&ws.join("crates/cli/src/settings.rs"));
    let domain = read(&ws.join("crates/cli/src/domain.rs"));
    let beat = read(&ws.join("crates/engine/src/beat/schedule.rs"));
    let sections = [
        (&settings, "RawConfig", ""),
        (&settings, "RawBeat", "beat."),
        (&settings, "RawDashboard", "dashboard."),
        (&domain, "RawPdf", "pdf."),
        (&domain, "RawYoutube", "youtube."),
        (&domain, "RawLlm", "llm."),
        (&beat, "EntryConfig", "beat.entries[]."),
    ];
    let mut missing = Vec::new();
    let mut n = 0;
    for (src, name, prefix) in sections {
        for f in fields(src, name) {
            n += 1;
            let key = format!("`{prefix}{f}`");
            let table = format!("`[{f}]`");
            if !doc.contains(&key) && !doc.contains(&table) {
                missing.push(key);
            }
        }
    }
    assert!(n > 50, "only {n} keys found: the parser broke");
    assert!(missing.is_empty(), "undocumented config keys: {missing:?}");
}

#[test]
fn every_environment_variable_is_documented() {
    let ws = hlbot_testkit::workspace();
    let doc = read(&ws.join("docs/reference.md"));
    let mut files = Vec::new();
    rust_files(&ws.join("crates"), &mut files);
    let mut vars = std::collections::BTreeSet::new();
    for f in &files {
        let src = read(f);
        for part in src.split('"').skip(1).step_by(2) {
            let is_var = part.len() > 6
                && part.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                && (part.starts_with("HLBOT_")
                    || part.ends_with("_API_KEY")
                    || part.ends_with("_BASE_URL"));
            if is_var {
                vars.insert(part.to_string());
            }
        }
        // Variables a flag takes.
        for part in src.split(", env = \"").skip(1) {
            if let Some(v) = part.split('"').next() {
                vars.insert(v.to_string());
            }
        }
    }
    assert!(
        vars.contains("HLBOT_LOGLEVEL") && vars.contains("REDIS_URL"),
        "{vars:?}"
    );
    let missing: Vec<_> = vars
        .iter()
        .filter(|v| !doc.contains(&format!("`{v}`")))
        .collect();
    assert!(missing.is_empty(), "undocumented variables: {missing:?}");
}

#[test]
fn every_task_and_its_arguments_are_documented() {
    let ws = hlbot_testkit::workspace();
    let doc = read(&ws.join("docs/reference.md"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hlbot"))
        .args(["tasks", "-j"])
        .env_remove("HLBOT_CONFIG")
        .output()
        .expect("hlbot tasks");
    let mut n = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let name = v["name"].as_str().unwrap_or_default();
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("task {name} not in docs/reference.md"));
        if let Some(args) = v["arguments"].as_array() {
            let list: Vec<&str> = args.iter().filter_map(|a| a.as_str()).collect();
            assert!(row.contains(&list.join(", ")), "{name}: {row}");
        }
        assert!(
            row.contains(&format!("`{}`", v["queue"].as_str().unwrap_or_default())),
            "{name}: {row}"
        );
        n += 1;
    }
    assert!(n >= 12, "{n} tasks");
}

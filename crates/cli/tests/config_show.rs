//! `hlbot config show`: every key of docs/reference.md's configuration tables is listed with its
//! value and the right source (default, file, environment, flag), and no secret is printed —
//! Redis and database passwords show as `****`, an API key as `****` and its last 4 characters.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hlbot");

/// `hlbot config show --json` with nothing from the user's environment: `key → (value, source)`.
fn show(dir: &Path, f: impl FnOnce(&mut Command)) -> (BTreeMap<String, (Value, String)>, String) {
    let mut c = hlbot_testkit::worker::command(BIN);
    c.current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env_remove("HLBOT_CONFIG")
        .env_remove("REDIS_URL")
        .env_remove("HLBOT_MODEL")
        .env_remove("HLBOT_KEY_PREFIX")
        .env_remove("HLBOT_LOG_FORMAT")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("HLBOT_ASR_API_KEY")
        .env_remove("HLBOT_RESULT_BACKEND")
        .env_remove("HLBOT_SENTINEL_MASTER")
        .env_remove("HLBOT_INPUT_ROOTS")
        .env_remove("HLBOT_CACHE_DIR");
    f(&mut c);
    let out = c.output().expect("hlbot config show");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let key = v["key"].as_str().unwrap().to_string();
            let source = v["source"].as_str().unwrap().to_string();
            (key, (v["value"].clone(), source))
        })
        .collect();
    (rows, text)
}

/// The keys of the tables under "## Configuration keys" in docs/reference.md (section rows like
/// `[pdf]` stand for their own table below; `beat.entries[].x` are fields of one entry).
fn documented_keys() -> Vec<String> {
    let doc = std::fs::read_to_string(hlbot_testkit::workspace().join("docs/reference.md"))
        .expect("docs/reference.md");
    let start = doc.find("## Configuration keys").expect("section");
    let section = &doc[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut keys = Vec::new();
    for l in section.lines().filter(|l| l.starts_with("| `")) {
        let key = l[3..].split('`').next().unwrap_or_default();
        match key {
            "[routes]" => keys.push("routes".to_string()),
            k if k.starts_with('[') || k.contains("[]") => {}
            k => keys.push(k.to_string()),
        }
    }
    keys
}

#[test]
fn every_documented_key_is_shown_with_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hlbot.toml");
    std::fs::write(
        &cfg,
        "result_expires = 60\nkey_prefix = \"from-file\"\n[pdf]\nlanguages = \"eng+deu\"\n\
         [llm]\nmodel = \"rules\"\n",
    )
    .unwrap();
    let (rows, text) = show(dir.path(), |c| {
        c.env("HLBOT_CONFIG", &cfg)
            .env("HLBOT_MODEL", "ollama:llama3")
            .env("REDIS_URL", "redis://127.0.0.1:6379/3")
            .args(["config", "show", "--json", "--key-prefix", "from-flag"]);
    });
    let keys = documented_keys();
    assert!(keys.len() > 50, "only {} keys parsed: {keys:?}", keys.len());
    let missing: Vec<_> = keys.iter().filter(|k| !rows.contains_key(*k)).collect();
    assert!(missing.is_empty(), "not shown: {missing:?}\n{text}");

    let file = format!("file:{}", cfg.display());
    let at = |k: &str| rows.get(k).cloned().unwrap_or_else(|| panic!("{k}"));
    assert_eq!(at("result_expires"), (60.into(), file.clone()));
    assert_eq!(at("pdf.languages"), ("eng+deu".into(), file.clone()));
    // A flag beats the file; a variable beats the file where docs/reference.md says so.
    assert_eq!(
        at("key_prefix"),
        ("from-flag".into(), "flag:--key-prefix".into())
    );
    assert_eq!(
        at("llm.model"),
        ("ollama:llama3".into(), "env:HLBOT_MODEL".into())
    );
    assert_eq!(
        at("broker_url"),
        ("redis://127.0.0.1:6379/3".into(), "env:REDIS_URL".into())
    );
    assert_eq!(at("max_message_bytes").1, "default");
    assert_eq!(at("youtube.max_frames"), (60.into(), "default".into()));
}

#[test]
fn secrets_are_masked() {
    let dir = tempfile::tempdir().unwrap();
    let key = "sk-ant-api03-config-show-secret-9XyZ";
    let (rows, text) = show(dir.path(), |c| {
        c.env("REDIS_URL", "redis://default:redis-pw-789@127.0.0.1:6379/0")
            .env("ANTHROPIC_API_KEY", key)
            .env("OPENAI_API_KEY", "short")
            .args([
                "--database-url",
                "postgres://hlbot:db-pw-789@127.0.0.1:5432/hlbot",
                "config",
                "show",
                "-j",
            ]);
    });
    for secret in [key, "redis-pw-789", "db-pw-789", "short"] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
    assert_eq!(
        rows["broker_url"].0,
        "redis://default:****@127.0.0.1:6379/0"
    );
    assert_eq!(
        rows["database_url"],
        (
            "postgres://hlbot:****@127.0.0.1:5432/hlbot".into(),
            "flag:--database-url".into()
        )
    );
    assert_eq!(
        rows["env.ANTHROPIC_API_KEY"],
        ("****9XyZ".into(), "env:ANTHROPIC_API_KEY".into())
    );
    assert_eq!(rows["env.OPENAI_API_KEY"].0, "****");
    assert_eq!(rows["env.HLBOT_ASR_API_KEY"], (Value::Null, "unset".into()));
}

#[test]
fn human_output_is_one_line_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = hlbot_testkit::worker::command(BIN);
    let out = c
        .current_dir(dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env_remove("HLBOT_CONFIG")
        .env_remove("REDIS_URL")
        .args(["config", "show"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("broker_url = "))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(line, "broker_url = \"redis://127.0.0.1:6379/0\"  (default)");
}

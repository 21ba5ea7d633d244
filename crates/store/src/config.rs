//! Where the store lives: a PostgreSQL URL (`DATABASE_URL`, `--database-url`, config
//! `database_url`) or else an SQLite file `library.sqlite3` in the data directory. Also owns
//! URL redaction: no password ever reaches a log line or an error.

use std::path::{Path, PathBuf};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// How to open the store, built by the caller (the cli) from flags, env and config.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `postgres://…`, `postgresql://…` or `sqlite://…`; None: SQLite in `data_dir`.
    pub url: Option<String>,
    /// Where the default SQLite file goes.
    pub data_dir: PathBuf,
    /// Connection pool size.
    pub max_connections: u32,
    /// Task-run rows kept this many days (0: forever).
    pub task_history_days: u32,
}

impl StoreConfig {
    /// SQLite in `data_dir`, pool of 4, 30 days of history.
    pub fn sqlite_in(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            url: None,
            data_dir: data_dir.into(),
            max_connections: 4,
            task_history_days: 30,
        }
    }

    /// The URL to connect to (the default SQLite file when none is set).
    pub fn effective_url(&self) -> String {
        match &self.url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.sqlite_path().display()),
        }
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("library.sqlite3")
    }

    pub fn backend(&self) -> Backend {
        backend_of(&self.effective_url())
    }
}

/// The backend a URL names (anything not PostgreSQL is SQLite).
pub fn backend_of(url: &str) -> Backend {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

/// The default data directory: `$XDG_DATA_HOME/hlbot`, else `~/.local/share/hlbot` (the caller
/// passes the environment values in; library crates read no environment).
pub fn default_data_dir(xdg_data_home: Option<&str>, home: Option<&str>) -> PathBuf {
    match (xdg_data_home.filter(|s| !s.is_empty()), home) {
        (Some(x), _) => Path::new(x).join("hlbot"),
        (None, Some(h)) => Path::new(h).join(".local/share/hlbot"),
        (None, None) => PathBuf::from(".hlbot-data"),
    }
}

/// `url` with any password replaced by `***` (and query parameters named like a secret).
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let secret = ["password", "pass", "sslpassword", "secret", "token"]
                        .contains(&k.to_ascii_lowercase().as_str());
                    (
                        k.into_owned(),
                        if secret { "***".into() } else { v.into_owned() },
                    )
                })
                .collect();
            if !pairs.is_empty() {
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) => redact_text(url),
    }
}

/// Free text with the password of every `scheme://user:password@` in it replaced by `***`.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.find('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_survive_redaction() {
        let r = redact("postgresql://bob:s3cr3t@db:5432/hlbot?sslmode=require&password=p2");
        assert!(!r.contains("s3cr3t") && !r.contains("p2"), "{r}");
        assert!(r.contains("bob") && r.contains("sslmode=require"), "{r}");
        let t = redact_text("error connecting to postgres://u:hunter2@h/db: refused");
        assert_eq!(t, "error connecting to postgres://u:***@h/db: refused");
        assert_eq!(redact_text("no url here"), "no url here");
    }

    #[test]
    fn backends_and_data_dir() {
        assert_eq!(backend_of("postgres://x/y"), Backend::Postgres);
        assert_eq!(backend_of("sqlite:///tmp/a.db"), Backend::Sqlite);
        assert_eq!(
            default_data_dir(Some("/x"), Some("/h")),
            PathBuf::from("/x/hlbot")
        );
        assert_eq!(
            default_data_dir(None, Some("/h")),
            PathBuf::from("/h/.local/share/hlbot")
        );
    }
}

//! `hlbot doctor`: checks a deployment before a task finds the problem — Redis (`redis`), the
//! database and the folders (`places`), the external tools (`tools`, reusing the worker's
//! start-up probes in `checks.rs`), the LLM keys (`llm`). One line per check,
//! `ok|warn|FAIL  <check>: <finding> — <fix>`; exit 1 when any check FAILs (warnings pass).
//! Secrets are never printed: URLs show `****` for a password, keys only whether they are set.

mod llm;
mod places;
mod redis;
mod tools;

use std::process::ExitCode;

use hlbot_tasks::needs::Tool;

use crate::args::DoctorArgs;
use crate::settings::Settings;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One checked thing: what was found and, unless all is well, how to fix it.
#[derive(Debug, serde::Serialize)]
pub struct Finding {
    pub level: Level,
    pub check: String,
    pub finding: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

impl Finding {
    pub fn ok(check: &str, finding: impl Into<String>) -> Self {
        Self::new(Level::Ok, check, finding, "")
    }
    pub fn warn(check: &str, finding: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(Level::Warn, check, finding, fix)
    }
    pub fn fail(check: &str, finding: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(Level::Fail, check, finding, fix)
    }
    fn new(level: Level, check: &str, finding: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            level,
            check: check.into(),
            finding: finding.into(),
            fix: fix.into(),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.level {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        write!(f, "{level:<4}  {}: {}", self.check, self.finding)?;
        if !self.fix.is_empty() {
            write!(f, " — {}", self.fix)?;
        }
        Ok(())
    }
}

pub async fn run(s: &Settings, a: DoctorArgs) -> anyhow::Result<ExitCode> {
    let ts = crate::domain::task_settings(&s.domain, &[]);
    let mut out = Vec::new();
    redis::check(s, &mut out).await;
    places::database(s, &mut out).await;
    let wanted = if a.queues.is_empty() {
        [Tool::Pdfium, Tool::Tesseract, Tool::YtDlp, Tool::Ffmpeg].into()
    } else {
        let reg = crate::cmd::worker::registry(s, None);
        crate::checks::tools_for(&reg, &s.router, &a.queues)
    };
    tools::check(&ts, &wanted, &mut out).await;
    places::folders(s, &ts, &mut out);
    llm::check(&ts, a.online, &mut out).await;
    for f in &out {
        if a.json {
            println!("{}", serde_json::to_string(f)?);
        } else {
            println!("{f}");
        }
    }
    let failed = out.iter().filter(|f| f.level == Level::Fail).count();
    let warned = out.iter().filter(|f| f.level == Level::Warn).count();
    if !a.json {
        println!(
            "{} check(s): {failed} failed, {warned} warning(s)",
            out.len()
        );
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

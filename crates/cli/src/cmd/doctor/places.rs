//! Where hlbot reads and writes: the database (reachable, migrations applied), the input roots
//! (exist, readable), the cache and data folders (writable, free space). Creates nothing but the
//! folders a worker would create anyway and one probe file it removes at once.

use std::path::Path;
use std::time::Duration;

use hlbot_store::Store;
use hlbot_tasks::TaskSettings;

use super::Finding;
use crate::cmd::config::mask_url;
use crate::settings::Settings;

/// Below this, a folder gets a warning (videos and PDF renders are large).
const LOW_SPACE: u64 = 1 << 30;

pub async fn database(s: &Settings, out: &mut Vec<Finding>) {
    let cfg = &s.store;
    if cfg.url.is_none() {
        let file = cfg.sqlite_path();
        if !file.exists() {
            out.push(Finding::ok(
                "database",
                format!(
                    "SQLite library {} not created yet (the first worker or ingest creates and \
                     migrates it)",
                    file.display()
                ),
            ));
            return;
        }
    }
    let shown = mask_url(&cfg.effective_url());
    let status = async {
        let store = Store::connect(cfg).await?;
        let st = hlbot_store::migrate::status(&store).await;
        store.close().await;
        st
    };
    match tokio::time::timeout(Duration::from_secs(15), status).await {
        Err(_) => out.push(Finding::fail(
            "database",
            format!("{shown}: no answer within 15 s"),
            "start the database, or fix --database-url / DATABASE_URL / database_url",
        )),
        Ok(Err(e)) => out.push(Finding::fail(
            "database",
            format!(
                "cannot use {shown}: {}",
                hlbot_store::redact_text(&e.to_string())
            ),
            "start the database, or fix --database-url / DATABASE_URL / database_url (and its \
             password)",
        )),
        Ok(Ok(st)) if st.pending.is_empty() => out.push(Finding::ok(
            "database",
            format!(
                "{} ({}) reachable, migrated to {}",
                mask_url(&st.url),
                st.backend,
                st.latest_known
            ),
        )),
        Ok(Ok(st)) => out.push(Finding::warn(
            "database",
            format!(
                "{} ({}) reachable, {} migration(s) pending: {:?}",
                mask_url(&st.url),
                st.backend,
                st.pending.len(),
                st.pending
            ),
            "run `hlbot db migrate` (a worker also applies them at start)",
        )),
    }
}

pub fn folders(s: &Settings, ts: &TaskSettings, out: &mut Vec<Finding>) {
    input_roots(s, out);
    writable("cache dir", &ts.cache_dir, out);
    if s.store.url.is_none() {
        writable("data dir", &s.store.data_dir, out);
    }
}

fn input_roots(s: &Settings, out: &mut Vec<Finding>) {
    let roots = crate::domain::input_roots(&s.domain);
    if roots.is_empty() {
        out.push(Finding::ok(
            "input roots",
            "none configured: queued tasks accept no file paths (`hlbot ingest FILE` still works)",
        ));
        return;
    }
    for r in roots {
        match std::fs::read_dir(&r) {
            Ok(_) => out.push(Finding::ok(
                "input root",
                format!("{} exists and is readable", r.display()),
            )),
            Err(e) => out.push(Finding::fail(
                "input root",
                format!("{}: {e}", r.display()),
                "create it, fix its permissions for the worker's user, or remove it from \
                 input_roots / HLBOT_INPUT_ROOTS",
            )),
        }
    }
}

/// Can we create the folder and a file in it, and how much room is left?
fn writable(check: &str, dir: &Path, out: &mut Vec<Finding>) {
    let probe = dir.join(format!(".hlbot-doctor-{}", std::process::id()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&probe, b"probe"))
        .and_then(|_| std::fs::remove_file(&probe));
    if let Err(e) = written {
        out.push(Finding::fail(
            check,
            format!("{} is not writable: {e}", dir.display()),
            "give the worker's user write access (systemd: ReadWritePaths=), or point the \
             setting elsewhere",
        ));
        return;
    }
    match rustix::fs::statvfs(dir) {
        Ok(v) => {
            let free = v.f_bavail.saturating_mul(v.f_frsize);
            let gib = free as f64 / (1u64 << 30) as f64;
            if free < LOW_SPACE {
                out.push(Finding::warn(
                    check,
                    format!("{} is writable, {gib:.2} GiB free", dir.display()),
                    "free space or move it: downloads and renders need more than 1 GiB",
                ));
            } else {
                out.push(Finding::ok(
                    check,
                    format!("{} is writable, {gib:.1} GiB free", dir.display()),
                ));
            }
        }
        Err(_) => out.push(Finding::ok(
            check,
            format!("{} is writable (free space unknown)", dir.display()),
        )),
    }
}

//! The first hour of an operator, through the real `hlbot` binary on real Redis: waits that stop
//! (a failed chain step ends `ingest --queue` at once; Ctrl-C ends `send --wait` with 130), the
//! worker's task log and banner, start-up tool checks, `queues` numbers, `tasks`, `dead delete`,
//! send warnings, `result` on an unknown id, `control` with nobody listening, `peek`'s default,
//! beat's compact schedule and send lines, completions and the man page, and a tmux recording of
//! the live status line.


mod commands;
mod logs;
mod tools;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hlbot_engine::SendOptions;
use hlbot_testkit::{Proc, TestRedis, wait_until};
use nix::sys::signal::Signal;
use redis::AsyncCommands;
use serde_json::{Map, Value, json};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_hlbot");

/// `hlbot` on the test's prefix, with no level, colour or config from the environment.
pub(crate) fn hlbot(r: &TestRedis) -> Command {
    let mut c = hlbot_testkit::hlbot(BIN, r);
    c.env_remove("HLBOT_LOGLEVEL")
        .env_remove("NO_COLOR")
        .env_remove("HLBOT_INPUT_ROOTS");
    c
}

pub(crate) fn run(r: &TestRedis, args: &[&str]) -> Output {
    hlbot(r).args(args).output().expect("run hlbot")
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A worker whose log (stderr) goes to `log`.
pub(crate) fn worker_logging_to(r: &TestRedis, log: &std::path::Path, args: &[&str]) -> Proc {
    let f = std::fs::File::create(log).expect("log file");
    Proc(
        hlbot(r)
            .arg("worker")
            .args(args)
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("spawn worker"),
    )
}

//! What the end-to-end tests share: the repository root, scratch folders, the `webq` binary, and
//! whether the browsers are here.
#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

/// One `webq` run at a time within a test binary: every run removes the profiles of dead runs, so a
/// run beside the kill test would remove the very profile that test checks is left for the next run.
pub fn serial() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("webq-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Whether the browser tests can run here; without browsers they fail unless WEBQ_ALLOW_NO_BROWSERS=1.
pub fn browsers_ready(what: &str) -> bool {
    let page = root().join("target/webq-page/webq_engine_bg.wasm");
    let firefox = Path::new("/usr/bin/firefox-esr").exists();
    if page.exists() && firefox {
        return true;
    }
    let why = format!("{what} needs Firefox and the page bundle (scripts/setup, scripts/build-page)");
    assert!(std::env::var("WEBQ_ALLOW_NO_BROWSERS").as_deref() == Ok("1"), "{why}; WEBQ_ALLOW_NO_BROWSERS=1 skips");
    eprintln!("SKIPPED: {why}");
    false
}

pub fn webq(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_webq"));
    c.args(args).current_dir(root()).stdin(Stdio::null());
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    c
}

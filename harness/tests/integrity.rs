//! End to end through the `webq` binary: verdicts that cannot be lost. A planted NaN, a planted
//! infinity and a truncated answer, natively and through a real browser page, become `fail` and
//! `error` cells that the summary counts and that make `--check` exit non-zero; an unreadable
//! record fails `--check` with its file and line; a vanished browser feature fails `--check`;
//! killing `webq` itself leaves no driver or browser behind, and the next run removes its profile.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{browsers_ready, scratch, serial, webq};

fn run_matrix(dir: &Path, matrix: &str, extra: &[&str]) -> Output {
    let file = dir.join("m.toml");
    std::fs::write(&file, matrix).unwrap();
    let out = dir.join("out");
    let mut args = vec!["run", "--matrix", file.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(extra);
    webq(&args).output().unwrap()
}

fn records(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("out/results.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn find<'a>(records: &'a [serde_json::Value], id_part: &str) -> &'a serde_json::Value {
    records.iter().find(|r| r["id"].as_str().unwrap().contains(id_part)).unwrap_or_else(|| panic!("no {id_part}"))
}

fn planted_matrix(runtimes: &str) -> String {
    let shape = |name: &str, plant: &str| {
        let plant = if plant.is_empty() { String::new() } else { format!("plant = \"{plant}\"\n") };
        format!("[[shapes]]\nname = \"{name}\"\nm = 1\nn = 8\nk = 256\n{plant}\n")
    };
    format!(
        "schema = 1\nname = \"planted\"\nruntimes = [{runtimes}]\nbackends = [\"webgpu\"]\n\
         precisions = [\"int4-g128-sym\"]\nreps = 1\n\n{}{}{}{}",
        shape("clean", ""),
        shape("nan", "nan-output"),
        shape("inf", "inf-output"),
        shape("short", "truncate")
    )
}

fn check_planted(runtime: &str, recs: &[serde_json::Value]) {
    let clean = find(recs, &format!("{runtime}/webgpu/int4-g128-sym/gemv-f32-tuned/clean"));
    assert_eq!(clean["status"], "pass", "{clean}");
    for (shape, bad) in [("nan", "NaN"), ("inf", "inf")] {
        let r = find(recs, &format!("{runtime}/webgpu/int4-g128-sym/gemv-f32-tuned/{shape}/planted"));
        assert_eq!(r["status"], "fail", "{r}");
        assert_eq!(r["kernel"]["verdict"]["non_finite"], 1, "{r}");
        assert_eq!(r["kernel"]["verdict"]["worst_ratio"], "inf", "written as a string, read back: {r}");
        assert_eq!(r["accuracy"]["metrics"]["rel_l2"], bad, "{r}");
        assert!(r["reason"].as_str().unwrap().contains("NaN or infinite"), "{r}");
    }
    let short = find(recs, &format!("{runtime}/webgpu/int4-g128-sym/gemv-f32-tuned/short/planted"));
    assert_eq!(short["status"], "error", "{short}");
    assert!(short["reason"].as_str().unwrap().contains("7 outputs"), "{short}");
}

#[test]
fn planted_non_finite_and_truncated_outputs_fail_check_natively() {
    let _one_at_a_time = serial();
    let dir = scratch("planted-native");
    let out = run_matrix(&dir, &planted_matrix("\"native\""), &["--check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "--check passed: {stderr}");
    assert!(stderr.contains("4 cells in") && stderr.contains("1 pass, 2 fail, 0 unsupported, 1 error"), "{stderr}");
    check_planted("native", &records(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn planted_non_finite_and_truncated_outputs_fail_check_in_a_browser() {
    let _one_at_a_time = serial();
    if !browsers_ready("the planted-output test") {
        return;
    }
    let dir = scratch("planted-firefox");
    let out = run_matrix(&dir, &planted_matrix("\"firefox\""), &["--check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "--check passed: {stderr}");
    assert!(stderr.contains("1 pass, 2 fail, 0 unsupported, 1 error"), "{stderr}");
    check_planted("firefox", &records(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unreadable_record_fails_check_and_is_named() {
    let _one_at_a_time = serial();
    let dir = scratch("torn");
    let matrix = "schema = 1\nname = \"torn\"\nruntimes = [\"native\"]\nprecisions = [\"int8\"]\nreps = 1\n\n\
                  [[shapes]]\nname = \"s\"\nm = 1\nn = 8\nk = 256\n";
    let first = run_matrix(&dir, matrix, &["--check"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let results = dir.join("out/results.jsonl");
    let mut text = std::fs::read_to_string(&results).unwrap();
    let line = text.lines().next().unwrap().replace("\"status\":\"pass\"", "\"status\":\"passed-ish\"");
    text.push_str(&line);
    text.push('\n');
    text.push_str("{\"schema\":2,\"torn");
    std::fs::write(&results, text).unwrap();
    let again = run_matrix(&dir, matrix, &["--check", "--resume"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "--check passed: {stderr}");
    assert!(stderr.contains("results.jsonl:2: field error") && stderr.contains("passed-ish"), "{stderr}");
    assert!(stderr.contains("results.jsonl:3: not JSON"), "{stderr}");
    assert!(stderr.contains("2 unreadable"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_vanished_webgpu_fails_check() {
    let _one_at_a_time = serial();
    if !browsers_ready("the vanished-feature test") {
        return;
    }
    // WebKitGTK has no WebGPU here: exactly what Chromium or Firefox would look like if it vanished.
    let dir = scratch("vanished");
    let base = "schema = 1\nname = \"vanished\"\nruntimes = [\"webkitgtk\"]\nbackends = [\"webgpu\"]\n\
                precisions = [\"int8\"]\nreps = 1\n\n[[shapes]]\nname = \"s\"\nm = 1\nn = 8\nk = 256\n";
    let pinned = format!("{base}\n[[expect]]\ncells = \"webkitgtk/webgpu/*\"\nstatus = \"pass\"\n");
    let out = run_matrix(&dir, &pinned, &["--check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("is unsupported (navigator.gpu is undefined)"), "{stderr}");
    // Unpinned, an unsupported cell still needs an expectation that says it may be.
    let out = run_matrix(&dir, base, &["--check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no expectation says it may be"), "{stderr}");
    // Named with its reason, it is an answer.
    let named = format!(
        "{base}\n[[expect]]\ncells = \"webkitgtk/webgpu/*\"\nstatus = \"unsupported\"\nreason = \"navigator.gpu is undefined\"\n"
    );
    let out = run_matrix(&dir, &named, &["--check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn processes_matching(pattern: &str) -> String {
    let out = Command::new("pgrep").args(["-a", "-f", pattern]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn killing_webq_leaves_no_driver_or_browser_and_the_next_run_cleans_up() {
    let _one_at_a_time = serial();
    if !browsers_ready("the kill test") {
        return;
    }
    let dir = scratch("kill");
    let matrix = "schema = 1\nname = \"kill\"\nruntimes = [\"firefox\"]\nbackends = [\"webgpu\", \"wasm\"]\n\
                  precisions = [\"catalogue\"]\nreps = 1\n\n[[shapes]]\nname = \"s\"\nm = 1\nn = 8\nk = 256\n";
    let file = dir.join("m.toml");
    std::fs::write(&file, matrix).unwrap();
    let out = dir.join("out");
    let args = ["run", "--matrix", file.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let mut child = webq(&args).stderr(Stdio::null()).spawn().unwrap();
    let pattern = format!("webq-firefox-{}-", child.id());
    // Wait until Firefox is running cells.
    let start = Instant::now();
    let results = out.join("results.jsonl");
    while std::fs::read_to_string(&results).map_or(0, |t| t.lines().count()) < 2 {
        assert!(start.elapsed() < Duration::from_secs(120), "no cell finished within 120 s");
        assert!(child.try_wait().unwrap().is_none(), "webq ended early");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!processes_matching(&pattern).is_empty(), "Firefox should be running with its profile");
    child.kill().unwrap(); // SIGKILL: no destructor, no signal handler runs
    child.wait().unwrap();
    let start = Instant::now();
    while !processes_matching(&pattern).is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(processes_matching(&pattern), "", "left running after webq was killed");
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&pattern))
        .collect();
    assert!(!left.is_empty(), "the killed run's profile should still be there for the next run to remove");
    let resumed = webq(&[&args[..], &["--resume", "--check"]].concat()).output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let still: Vec<_> = left.iter().filter(|e| e.path().exists()).map(|e| e.path()).collect();
    assert!(still.is_empty(), "profiles of the dead run were not removed: {still:?}");
    let ids: Vec<String> = records(&dir).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "a cell was recorded twice");
    std::fs::remove_dir_all(&dir).unwrap();
}

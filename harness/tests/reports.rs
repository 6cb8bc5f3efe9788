//! The pages and files a run leaves, end to end: a small native run writes them; a later run with
//! a planted regression, a planted fix and a browser's words carrying `<script>` and `onerror=`
//! is reported against it (`--baseline`) and checked in real headless Chromium (`--verify`:
//! matrix, legend, filters, charts, no page error, the planted markup shown as text); the JUnit
//! XML and the wptreport JSON are checked against their formats; two runs are published as a site
//! with trends. The screenshots are kept in `target/report-screenshots/`.

mod common;

use std::path::Path;

use common::{browsers_ready, root, scratch, serial, webq};
use serde_json::Value;

const MATRIX: &str = r#"
schema = 1
name = "reports-test"
description = "a few native cells for the report test"
runtimes = ["native"]
backends = ["webgpu", "wasm"]
precisions = ["int4-g128-sym", "int8-pc-sym", "fp16"]
arith = ["f32"]
workgroups = ["tuned"]
quantizer = "search"
reps = 2
seed = 1

[[shapes]]
name = "decode"
m = 1
n = 72
k = 256
"#;

const PLANTED: &str = "driver said <script>window.__planted = 1</script><img src=x onerror=\"window.__planted = 2\">";

fn records(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn write_records(dir: &Path, records: &[Value]) {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(dir.join("results.jsonl"), text).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The rules wpt.fyi's results processor applies (results-processor/wptreport.py): `results`
/// present, each test a unique path from `/` with a status and subtests of known statuses, and
/// `run_info` with product, browser_version, os and revision.
fn check_wptreport(text: &str) {
    let v: Value = serde_json::from_str(text).unwrap();
    for key in ["product", "browser_version", "os", "revision"] {
        assert!(v["run_info"][key].as_str().is_some_and(|s| !s.is_empty()), "run_info.{key}: {}", v["run_info"]);
    }
    assert!(v["time_start"].as_u64().unwrap() <= v["time_end"].as_u64().unwrap());
    let results = v["results"].as_array().expect("results");
    assert!(!results.is_empty());
    let mut seen = std::collections::HashSet::new();
    let tests = ["OK", "PASS", "FAIL", "ERROR", "TIMEOUT", "CRASH", "PRECONDITION_FAILED", "SKIP"];
    let subs = ["PASS", "FAIL", "TIMEOUT", "NOTRUN", "PRECONDITION_FAILED", "ERROR"];
    for r in results {
        let test = r["test"].as_str().unwrap();
        assert!(test.starts_with('/') && seen.insert(test.to_string()), "{test}: a unique path from /");
        assert!(tests.contains(&r["status"].as_str().unwrap()), "{r}");
        for s in r["subtests"].as_array().expect("subtests") {
            assert!(s["name"].as_str().is_some() && subs.contains(&s["status"].as_str().unwrap()), "{s}");
        }
    }
}

/// The common JUnit schema's shape: `testsuites` of `testsuite`s of `testcase`s (name, classname,
/// time), each with at most one of failure, error or skipped; the counts agree with the children.
fn check_junit(text: &str) {
    let doc = roxmltree::Document::parse(text).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let mut total = 0;
    for suite in root.children().filter(|n| n.is_element()) {
        assert_eq!(suite.tag_name().name(), "testsuite");
        let cases: Vec<_> = suite.children().filter(|n| n.is_element()).collect();
        let attr = |n: &str| suite.attribute(n).unwrap().parse::<usize>().unwrap();
        assert_eq!(attr("tests"), cases.len());
        let count = |tag: &str| cases.iter().filter(|c| c.children().any(|x| x.tag_name().name() == tag)).count();
        assert_eq!(
            (attr("failures"), attr("errors"), attr("skipped")),
            (count("failure"), count("error"), count("skipped"))
        );
        for c in &cases {
            assert_eq!(c.tag_name().name(), "testcase");
            assert!(c.attribute("name").is_some() && c.attribute("classname").is_some());
            c.attribute("time").unwrap().parse::<f64>().unwrap();
            assert!(c.children().filter(|n| n.is_element()).count() <= 1);
        }
        total += cases.len();
    }
    assert_eq!(root.attribute("tests").unwrap().parse::<usize>().unwrap(), total);
}

#[test]
fn a_run_leaves_pages_people_can_read_and_files_dashboards_can() {
    if !browsers_ready("the report pages test (checks them in Chromium)") {
        return;
    }
    let _one = serial();
    let dir = scratch("reports");
    let matrix = dir.join("reports.toml");
    std::fs::write(&matrix, MATRIX).unwrap();
    let before = dir.join("before");
    let out = webq(&["run", "--matrix"]).arg(&matrix).arg("--out").arg(&before).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for f in ["index.html", "cells.html", "perf.html", "browsers.html", "junit.xml", "wptreport-native.json"] {
        assert!(before.join(f).is_file(), "{f} written by the run\n{stderr}");
    }
    assert!(stderr.contains("runtime/backend"), "a summary table at the end\n{stderr}");
    check_junit(&std::fs::read_to_string(before.join("junit.xml")).unwrap());
    check_wptreport(&std::fs::read_to_string(before.join("wptreport-native.json")).unwrap());

    // The later run: one pass turned into a failure whose reason carries markup (a regression),
    // and a failure in the baseline that now passes (a fix).
    let after = dir.join("after");
    copy_dir(&before, &after);
    let mut later = records(&after);
    assert!(later.len() >= 4 && later.iter().all(|r| r["status"] == "pass"), "the seed cells pass");
    let regressed = later[0]["id"].as_str().unwrap().to_string();
    let fixed = later[1]["id"].as_str().unwrap().to_string();
    for r in &mut later {
        r["run_id"] = Value::String(format!("{}-later", r["run_id"].as_str().unwrap()));
        r["finished_at"] = (r["finished_at"].as_u64().unwrap() + 86400).into();
    }
    later[0]["status"] = "fail".into();
    later[0]["reason"] = PLANTED.into();
    write_records(&after, &later);
    let mut base = records(&before);
    base[1]["status"] = "error".into();
    base[1]["reason"] = "the device was lost".into();
    write_records(&before, &base);

    let shots = root().join("target/report-screenshots");
    let out = webq(&["report", "--results"])
        .arg(&after)
        .arg("--baseline")
        .arg(&before)
        .arg("--verify")
        .arg("--screenshots")
        .arg(&shots)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "every page passes its checks in Chromium\n{stderr}");
    assert!(stderr.contains(&format!("regression {regressed}")), "{stderr}");
    assert!(stderr.contains(&format!("fix        {fixed}")), "{stderr}");
    let index = std::fs::read_to_string(after.join("index.html")).unwrap();
    assert!(index.contains("id=\"regressions\"") && index.contains("id=\"fixes\""));
    let cells = std::fs::read_to_string(after.join("cells.html")).unwrap();
    assert!(cells.contains("&lt;script&gt;window.__planted") && !cells.contains("<img src=x"), "escaped");
    for png in ["index.png", "perf.png", "browsers.png", "cells.png"] {
        let bytes = std::fs::read(shots.join(png)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "{png}: a real screenshot");
    }
    let junit = std::fs::read_to_string(after.join("junit.xml")).unwrap();
    check_junit(&junit);
    assert!(junit.contains("failures=\"1\""), "the planted failure is a JUnit failure");

    let site = dir.join("site");
    for run in [&before, &after] {
        let out = webq(&["publish", "--results"]).arg(run).arg("--site").arg(&site).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let history = std::fs::read_to_string(site.join("history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 2, "{history}");
    let front = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert_eq!(front.matches("<tr><td><a href=").count(), 2, "a row per run");
    assert!(front.matches("<svg").count() >= 2 && front.contains("<polyline"), "trends drawn across the runs");
    for run in [&before, &after] {
        let id = records(run)[0]["run_id"].as_str().unwrap().to_string();
        assert!(site.join("runs").join(&id).join("index.html").is_file(), "{id}'s pages on the site");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

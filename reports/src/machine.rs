//! The machine-readable results other tools read without knowing webq: JUnit XML for CI systems
//! and wpt.fyi's `wptreport.json`, one per browser.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::svg::escape;

/// A cell's outcome, in the words both formats need.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// `runtime/backend`: a JUnit testsuite.
    pub suite: String,
    /// The cell id without its runtime: a JUnit testcase and, under `/webq/`, a wpt test path.
    pub name: String,
    pub runtime: String,
    pub status: OutcomeStatus,
    pub message: String,
    pub seconds: f64,
    /// The two verdicts (name, passed, message) where the cell reached them.
    pub verdicts: Vec<(String, bool, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum OutcomeStatus {
    Pass,
    Fail,
    /// A failure the matrix pins with its reason.
    ExpectedFail,
    /// A pass where the matrix pins a failure or `unsupported`.
    UnexpectedPass,
    Unsupported,
    Error,
    Timeout,
    Crash,
}

/// JUnit XML (the common schema: `testsuites` > `testsuite` > `testcase` with `failure`, `error`
/// or `skipped`): a testsuite per runtime and backend. An expected failure is `skipped` with its
/// reason (the matrix accepts it); an unexpected pass is a `failure` (the matrix is out of date).
pub fn junit(name: &str, outcomes: &[Outcome]) -> String {
    let mut suites: BTreeMap<&str, Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes {
        suites.entry(&o.suite).or_default().push(o);
    }
    let count = |os: &[&Outcome], f: fn(OutcomeStatus) -> bool| os.iter().filter(|o| f(o.status)).count();
    let failed = |s| matches!(s, OutcomeStatus::Fail | OutcomeStatus::UnexpectedPass);
    let errored = |s| matches!(s, OutcomeStatus::Error | OutcomeStatus::Timeout | OutcomeStatus::Crash);
    let skipped = |s| matches!(s, OutcomeStatus::Unsupported | OutcomeStatus::ExpectedFail);
    let all: Vec<&Outcome> = outcomes.iter().collect();
    let total_s: f64 = outcomes.iter().map(|o| o.seconds).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{total_s:.3}\">\n",
        escape(name),
        all.len(),
        count(&all, failed),
        count(&all, errored),
        count(&all, skipped)
    ));
    for (suite, os) in &suites {
        let time: f64 = os.iter().map(|o| o.seconds).sum();
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{time:.3}\">\n",
            escape(suite),
            os.len(),
            count(os, failed),
            count(os, errored),
            count(os, skipped)
        ));
        for o in os {
            let head = format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
                escape(&o.name),
                escape(&suite.replace('/', ".")),
                o.seconds
            );
            let msg = escape(&o.message);
            let body = match o.status {
                OutcomeStatus::Pass => None,
                OutcomeStatus::Fail => Some(format!("<failure message=\"{msg}\" type=\"verdict\">{msg}</failure>")),
                OutcomeStatus::UnexpectedPass => Some(format!(
                    "<failure message=\"unexpected pass: {msg}\" type=\"unexpected-pass\">the matrix expects otherwise</failure>"
                )),
                OutcomeStatus::ExpectedFail => Some(format!("<skipped message=\"expected failure: {msg}\"/>")),
                OutcomeStatus::Unsupported => Some(format!("<skipped message=\"unsupported: {msg}\"/>")),
                OutcomeStatus::Error => Some(format!("<error message=\"{msg}\" type=\"error\">{msg}</error>")),
                OutcomeStatus::Timeout => Some(format!("<error message=\"{msg}\" type=\"timeout\">{msg}</error>")),
                OutcomeStatus::Crash => Some(format!("<error message=\"{msg}\" type=\"crash\">{msg}</error>")),
            };
            match body {
                None => x.push_str(&format!("{head}/>\n")),
                Some(b) => x.push_str(&format!("{head}>{b}</testcase>\n")),
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// What `run_info` of a wptreport says about the product.
#[derive(Clone, Debug, Serialize)]
pub struct WptRunInfo {
    pub product: String,
    pub browser_version: String,
    pub os: String,
    pub revision: String,
    /// webq's additions (wpt.fyi keeps unknown keys): the adapter, the matrix.
    #[serde(flatten)]
    pub extra: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
struct WptResult<'a> {
    test: String,
    status: &'static str,
    message: Option<&'a str>,
    subtests: Vec<WptSubtest<'a>>,
}

#[derive(Clone, Debug, Serialize)]
struct WptSubtest<'a> {
    name: &'a str,
    status: &'static str,
    message: Option<&'a str>,
}

/// One browser's results in wpt.fyi's format: a test per cell (`/webq/<cell id without runtime>`),
/// `OK` when it ran to its verdicts, with a subtest per verdict (`PASS`/`FAIL`); `unsupported` is
/// `PRECONDITION_FAILED` (wpt's status for an optional feature that is absent); errors, timeouts
/// and crashes are the test's own `ERROR`, `TIMEOUT`, `CRASH`. Times are in milliseconds.
pub fn wptreport(info: &WptRunInfo, outcomes: &[&Outcome], time_start_ms: u64, time_end_ms: u64) -> String {
    let results: Vec<WptResult> = outcomes
        .iter()
        .map(|o| {
            let status = match o.status {
                OutcomeStatus::Pass
                | OutcomeStatus::Fail
                | OutcomeStatus::ExpectedFail
                | OutcomeStatus::UnexpectedPass => "OK",
                OutcomeStatus::Unsupported => "PRECONDITION_FAILED",
                OutcomeStatus::Error => "ERROR",
                OutcomeStatus::Timeout => "TIMEOUT",
                OutcomeStatus::Crash => "CRASH",
            };
            let subtests = o
                .verdicts
                .iter()
                .map(|(name, pass, message)| WptSubtest {
                    name,
                    status: if *pass { "PASS" } else { "FAIL" },
                    message: (!message.is_empty()).then_some(message.as_str()),
                })
                .collect();
            WptResult {
                test: format!("/webq/{}", o.name),
                status,
                message: (status != "OK" && !o.message.is_empty()).then_some(o.message.as_str()),
                subtests,
            }
        })
        .collect();
    let doc = serde_json::json!({
        "run_info": info,
        "time_start": time_start_ms,
        "time_end": time_end_ms,
        "results": results,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, status: OutcomeStatus, message: &str) -> Outcome {
        Outcome {
            suite: "firefox/webgpu".into(),
            name: name.into(),
            runtime: "firefox".into(),
            status,
            message: message.into(),
            seconds: 0.5,
            verdicts: vec![("kernel conformance".into(), status != OutcomeStatus::Fail, String::new())],
        }
    }

    #[test]
    fn junit_counts_and_escapes() {
        let os = [
            outcome("a", OutcomeStatus::Pass, ""),
            outcome("b", OutcomeStatus::Fail, "worst <x> & \"y\""),
            outcome("c", OutcomeStatus::Unsupported, "navigator.gpu is undefined"),
            outcome("d", OutcomeStatus::Crash, "browser gone"),
        ];
        let x = junit("webq ci", &os);
        assert!(x.contains("tests=\"4\" failures=\"1\" errors=\"1\" skipped=\"1\""), "{x}");
        assert!(x.contains("worst &lt;x&gt; &amp; &quot;y&quot;") && !x.contains("<x>"));
        assert!(x.contains("classname=\"firefox.webgpu\""));
    }

    #[test]
    fn wptreport_maps_statuses() {
        let os = [outcome("a", OutcomeStatus::Fail, "kernel: 3x"), outcome("c", OutcomeStatus::Unsupported, "no")];
        let info = WptRunInfo {
            product: "firefox".into(),
            browser_version: "153.0".into(),
            os: "linux".into(),
            revision: "abc".into(),
            extra: BTreeMap::new(),
        };
        let v: serde_json::Value =
            serde_json::from_str(&wptreport(&info, &os.iter().collect::<Vec<_>>(), 1, 2)).unwrap();
        assert_eq!(v["results"][0]["status"], "OK");
        assert_eq!(v["results"][0]["subtests"][0]["status"], "FAIL");
        assert_eq!(v["results"][1]["status"], "PRECONDITION_FAILED");
        assert_eq!(v["run_info"]["product"], "firefox");
    }
}

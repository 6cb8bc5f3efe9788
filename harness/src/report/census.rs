//! `browsers.html`: what each runtime offered in this run (the census `webq doctor` prints, saved
//! by the run as `census.json`), and the browser name and version read from a user agent.

use serde_json::Value;
use webq_reports::{BrowsersPage, Census};

use super::RunFacts;
use crate::results::CellRecord;

/// `Chrome 156.0.0.0`, `Firefox 153.0`, `WebKit 605.1.15 (Version 60.5)` from a user agent.
pub fn browser_label(ua: &str) -> String {
    let after = |key: &str| {
        ua.split_whitespace().find_map(|w| w.strip_prefix(key)).map(|v| v.trim_end_matches(';').to_string())
    };
    if let Some(v) = after("Firefox/") {
        return format!("Firefox {v}");
    }
    if let Some(v) = after("HeadlessChrome/").or_else(|| after("Chrome/")) {
        return format!("Chrome {v}");
    }
    if let Some(v) = after("AppleWebKit/") {
        return match after("Version/") {
            Some(ver) => format!("WebKit {v} (Version {ver})"),
            None => format!("WebKit {v}"),
        };
    }
    String::new()
}

/// The browser of a runtime: from its records' user agent, or `wgpu` natively.
pub fn browser_of(runtime: &str, records: &[&CellRecord]) -> String {
    if runtime == "native" {
        return "wgpu (native)".into();
    }
    records.iter().find_map(|r| r.environment.user_agent.as_deref()).map(browser_label).unwrap_or_default()
}

pub fn page(records: &[CellRecord], facts: &RunFacts) -> BrowsersPage {
    let mut browsers = Vec::new();
    if let Some(a) = facts.run["native_adapter"].as_object() {
        let facts = a.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)));
        browsers.push(Census { runtime: "native".into(), browser: "wgpu on Vulkan".into(), facts: facts.collect() });
    }
    let mut runtimes: Vec<&str> = Vec::new();
    for r in records.iter().filter(|r| r.cell.runtime.name() != "native") {
        super::index_of(&mut runtimes, &r.cell.runtime.name());
    }
    for rt in runtimes {
        let mine: Vec<&CellRecord> = records.iter().filter(|r| r.cell.runtime.name() == rt).collect();
        let env: &Value = &facts.census[rt];
        let facts = if env.is_object() {
            crate::doctor::facts(env)
        } else {
            // A run from before census.json: what the records themselves say.
            let e = mine.iter().map(|r| &r.environment).find(|e| e.user_agent.is_some());
            vec![
                ("user agent".into(), e.and_then(|e| e.user_agent.clone()).unwrap_or_default()),
                ("adapter".into(), e.and_then(|e| e.adapter.clone()).unwrap_or_default()),
                ("shader-f16".into(), e.and_then(|e| e.shader_f16).map_or("?".into(), |f| f.to_string())),
                ("census".into(), "not saved by the run that wrote these records".into()),
            ]
        };
        browsers.push(Census { runtime: rt.into(), browser: browser_of(rt, &mine), facts });
    }
    BrowsersPage { title: "webq: browsers in this run".into(), browsers }
}

#[cfg(test)]
mod tests {
    use super::browser_label;

    #[test]
    fn names_and_versions_from_user_agents() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36";
        assert_eq!(browser_label(chrome), "Chrome 156.0.0.0");
        assert_eq!(
            browser_label("Mozilla/5.0 (X11; Linux x86_64; rv:153.0) Gecko/20100101 Firefox/153.0"),
            "Firefox 153.0"
        );
        let webkit =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/60.5 Safari/605.1.15";
        assert_eq!(browser_label(webkit), "WebKit 605.1.15 (Version 60.5)");
        assert_eq!(browser_label(""), "");
    }
}

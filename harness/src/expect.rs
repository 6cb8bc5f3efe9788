//! Checking a run against its matrix's `[[expect]]` entries.

use crate::matrix::Expect;
use crate::results::{CellRecord, Status};

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Every way the records fall short of the expectations, one line each:
/// - a cell matched by an expectation whose status differs (a pass where a failure was expected is
///   reported as an *unexpected pass*, as wgpu's harness and the WebGPU CTS do);
/// - with `reason`, an expected status reached for another reason than the one named (a browser
///   that stops offering WebGPU says different words than one that never did);
/// - with `ran`, another precision ran;
/// - with `kernel`, another kernel ran, or none is recorded;
/// - with `dot_path`, the CPU path summed otherwise, or recorded no dot path;
/// - with `backend`, another backend ran, or none is recorded;
/// - an expectation that matches no cell;
/// - an `unsupported` cell that no `unsupported` expectation names: "unsupported" is an answer only
///   where the matrix says it is, so a vanished browser feature turns `--check` red.
pub fn violations(expects: &[Expect], records: &[CellRecord]) -> Vec<String> {
    let mut out = Vec::new();
    for e in expects {
        let matched: Vec<&CellRecord> = records.iter().filter(|r| glob(&e.cells, &r.id)).collect();
        if matched.is_empty() {
            out.push(format!("expect `{}`: matches no cell", e.cells));
        }
        for r in matched {
            out.extend(check_one(e, r));
        }
    }
    for r in records.iter().filter(|r| r.status == Status::Unsupported) {
        let named = expects.iter().any(|e| e.status == Status::Unsupported && glob(&e.cells, &r.id));
        if !named {
            out.push(format!(
                "{} is unsupported, and no expectation says it may be: {}",
                r.id,
                r.reason.as_deref().unwrap_or("(no reason)")
            ));
        }
    }
    out
}

/// Whether `r` is a failure an expectation pins, status and reason: a known shortfall the matrix
/// documents (a precision over its accuracy budget), which `--check` holds to exactly that.
pub fn pinned_failure(expects: &[Expect], r: &CellRecord) -> bool {
    r.status == Status::Fail
        && expects.iter().any(|e| {
            e.status == Status::Fail
                && glob(&e.cells, &r.id)
                && e.reason.as_deref().is_some_and(|want| glob(want, r.reason.as_deref().unwrap_or("")))
        })
}

fn check_one(e: &Expect, r: &CellRecord) -> Vec<String> {
    let mut out = Vec::new();
    let reason = r.reason.as_deref().unwrap_or("");
    if r.status != e.status {
        let what = if r.status == Status::Pass { "unexpected pass".to_string() } else { r.status.name().to_string() };
        out.push(format!("expect `{}` {}: {} is {what} ({reason})", e.cells, e.status.name(), r.id));
    } else if let Some(want) = &e.reason {
        if !glob(want, reason) {
            out.push(format!(
                "expect `{}` {} for `{want}`: {} is {} for `{reason}`",
                e.cells,
                e.status.name(),
                r.id,
                r.status.name()
            ));
        }
    }
    if let Some(ran) = &e.ran {
        let actual =
            r.detail.as_ref().and_then(|d| d.precision.clone()).unwrap_or_else(|| r.cell.precision.to_string());
        if !glob(ran, &actual) {
            out.push(format!("expect `{}` ran {ran}: {} ran {actual}", e.cells, r.id));
        }
    }
    let detail = r.detail.as_ref();
    let recorded = [
        (&e.kernel, "kernel", "ran", r.workgroup.as_deref()),
        (&e.backend, "backend", "ran on", detail.and_then(|d| d.backend.as_deref())),
        (&e.dot_path, "dot path", "summed", detail.and_then(|d| d.dot_path.as_deref())),
    ];
    for (want, what, verb, actual) in recorded {
        let Some(want) = want else { continue };
        if !actual.is_some_and(|a| glob(want, a)) {
            let actual = actual.map_or_else(|| format!("no recorded {what}"), str::to_string);
            out.push(format!("expect `{}` {what} {want}: {} {verb} {actual}", e.cells, r.id));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::Expect;
    use webq_engine::protocol::{CellBackend, Runtime};

    fn record(runtime: Runtime, backend: CellBackend, status: Status, reason: &str) -> CellRecord {
        let cell = crate::cell::test_cell(runtime, backend, "int4", 8, 128);
        let mut r = crate::verdict::blank_record(&cell, "r", "m", Default::default());
        r.status = status;
        r.reason = Some(reason.into());
        r
    }

    fn expect(cells: &str, status: Status, reason: Option<&str>) -> Expect {
        Expect {
            cells: cells.into(),
            status,
            reason: reason.map(str::to_string),
            ran: None,
            kernel: None,
            dot_path: None,
            backend: None,
        }
    }

    #[test]
    fn a_vanished_feature_an_unexpected_pass_and_a_new_reason_are_all_violations() {
        let gone = record(Runtime::Chromium, CellBackend::Webgpu, Status::Unsupported, "navigator.gpu is undefined");
        let pins = [expect("chromium/webgpu/*", Status::Pass, None)];
        let v = violations(&pins, std::slice::from_ref(&gone));
        assert!(v.iter().any(|l| l.contains("is unsupported (navigator.gpu")), "{v:?}");
        assert!(v.iter().any(|l| l.contains("no expectation says it may be")), "{v:?}");

        let fixed = record(Runtime::Firefox, CellBackend::Webnn, Status::Pass, "");
        let v = violations(&[expect("firefox/webnn*", Status::Unsupported, None)], &[fixed]);
        assert!(v.len() == 1 && v[0].contains("unexpected pass"), "{v:?}");

        let other = record(Runtime::Firefox, CellBackend::Webnn, Status::Unsupported, "createContext failed");
        let named = [expect("firefox/webnn*", Status::Unsupported, Some("navigator.ml is undefined"))];
        let v = violations(&named, std::slice::from_ref(&other));
        assert!(v.len() == 1 && v[0].contains("for `createContext failed`"), "{v:?}");
        let right = record(Runtime::Firefox, CellBackend::Webnn, Status::Unsupported, "navigator.ml is undefined");
        assert!(violations(&named, &[right]).is_empty());
    }

    #[test]
    fn a_kernel_expectation_holds_the_tuned_pick() {
        let mut r = record(Runtime::Native, CellBackend::Webgpu, Status::Pass, "");
        let pin = [Expect { kernel: Some("vec-sg-16x8".into()), ..expect("native/webgpu/*", Status::Pass, None) }];
        r.workgroup = Some("vec-sg-16x8".into());
        assert!(violations(&pin, std::slice::from_ref(&r)).is_empty());
        // A driver without subgroups: the pick steps back to the tree reduction, and --check says so.
        r.workgroup = Some("vec-16x8".into());
        let v = violations(&pin, std::slice::from_ref(&r));
        assert!(v.len() == 1 && v[0].contains("kernel vec-sg-16x8") && v[0].ends_with("ran vec-16x8"), "{v:?}");
        r.workgroup = None;
        let v = violations(&pin, &[r]);
        assert!(v.len() == 1 && v[0].ends_with("ran no recorded kernel"), "{v:?}");
    }

    /// `pin` holds for `r` with the detail `set` gives `good`, and is one violation, ending
    /// `bad_end`, for `bad` and one, ending `none_end`, for nothing recorded.
    fn detail_pin_holds(
        mut r: CellRecord,
        pin: &[Expect],
        set: impl Fn(&mut crate::results::RunDetail, Option<String>),
        [good, bad]: [&str; 2],
        [bad_end, none_end]: [&str; 2],
    ) {
        let with = |r: &mut CellRecord, value: Option<&str>| {
            let mut detail = crate::results::RunDetail::default();
            set(&mut detail, value.map(str::to_string));
            r.detail = Some(detail);
        };
        with(&mut r, Some(good));
        assert!(violations(pin, std::slice::from_ref(&r)).is_empty());
        with(&mut r, Some(bad));
        let v = violations(pin, std::slice::from_ref(&r));
        assert!(v.len() == 1 && v[0].ends_with(bad_end), "{v:?}");
        with(&mut r, None);
        let v = violations(pin, &[r]);
        assert!(v.len() == 1 && v[0].ends_with(none_end), "{v:?}");
    }

    /// A browser whose engine stops fusing (or validating) relaxed-simd sums otherwise; its cells
    /// still pass and still match native's other twin, so only the pin sees it.
    #[test]
    fn a_dot_path_expectation_holds_the_fused_bundle() {
        let r = record(Runtime::Chromium, CellBackend::Wasm, Status::Pass, "");
        let pin = [Expect { dot_path: Some("simd128-fma".into()), ..expect("chromium/wasm/*", Status::Pass, None) }];
        let set = |d: &mut crate::results::RunDetail, v| d.dot_path = v;
        detail_pin_holds(r, &pin, set, ["simd128-fma", "simd128"], ["summed simd128", "no recorded dot path"]);
    }

    /// A browser that stops saying its WebGPU adapter is a fallback one gets WebGPU from `auto`
    /// again, and its cells pass there too (slowly); only the pin sees it.
    #[test]
    fn a_backend_expectation_holds_autos_choice() {
        let r = record(Runtime::Firefox, CellBackend::Auto, Status::Pass, "");
        let pin = [Expect { backend: Some("wasm".into()), ..expect("firefox/auto/*", Status::Pass, None) }];
        let set = |d: &mut crate::results::RunDetail, v| d.backend = v;
        detail_pin_holds(r, &pin, set, ["wasm", "webgpu"], ["ran on webgpu", "no recorded backend"]);
    }

    #[test]
    fn globs() {
        assert!(glob("chrome-shell/webnn@cpu/*", "chrome-shell/webnn@cpu/int8-pc-sym/gemv-f32-tuned/decode"));
        assert!(!glob("chrome-shell/webnn@cpu/*", "chromium/webnn@cpu/int8"));
        assert!(glob("*/wasm/*-f32-*", "firefox/wasm/int4-g128-sym/gemv-f32-tuned/decode"));
        assert!(!glob("*/wasm/*-f32-*", "firefox/wasm/int4-g128-sym/gemv-f16-tuned/decode"));
        assert!(glob("int8-*", "int8-pc-sym"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
        assert!(glob("*", ""));
    }

    #[test]
    fn only_a_failure_pinned_with_its_reason_is_excused() {
        let fail = record(Runtime::Firefox, CellBackend::Wasm, Status::Fail, "budget: cosine min 0.92 < 0.95");
        let pinned = |reason: &str| vec![expect("firefox/*", Status::Fail, Some(reason))];
        assert!(pinned_failure(&pinned("budget: cosine*"), &fail));
        assert!(!pinned_failure(&pinned("kernel: *"), &fail), "another reason is not excused");
        assert!(!pinned_failure(&[expect("firefox/*", Status::Pass, None)], &fail));
        let error = record(Runtime::Firefox, CellBackend::Wasm, Status::Error, "budget: cosine min");
        assert!(!pinned_failure(&pinned("budget: cosine*"), &error), "only `fail` cells can be pinned");
    }
}

//! Checking a run against its matrix's `[[expect]]` entries.

use crate::matrix::Expect;
use crate::results::CellRecord;

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

/// Every way the records fall short of the expectations, one line each.
pub fn violations(expects: &[Expect], records: &[CellRecord]) -> Vec<String> {
    let mut out = Vec::new();
    for e in expects {
        let matched: Vec<&CellRecord> = records.iter().filter(|r| glob(&e.cells, &r.id)).collect();
        if matched.is_empty() {
            out.push(format!("expect `{}`: matches no cell", e.cells));
        }
        for r in matched {
            if r.status != e.status {
                out.push(format!(
                    "expect `{}` {}: {} is {} ({})",
                    e.cells,
                    e.status.name(),
                    r.id,
                    r.status.name(),
                    r.reason.as_deref().unwrap_or("")
                ));
            }
            if let Some(ran) = &e.ran {
                let actual =
                    r.detail.as_ref().and_then(|d| d.precision.clone()).unwrap_or_else(|| r.cell.precision.clone());
                if !glob(ran, &actual) {
                    out.push(format!("expect `{}` ran {ran}: {} ran {actual}", e.cells, r.id));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::glob;

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
}

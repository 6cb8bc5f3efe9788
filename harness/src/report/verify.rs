//! `webq report --verify`: opens each page in headless Chromium and checks what a reader relies on:
//! the matrix and its legend, the filters (choosing a family hides the other rows), the charts,
//! the census, the details; that nothing a browser said ran as markup (no planted element, no
//! script run); that the page recorded no script or resource error; and keeps a screenshot of
//! each page.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::browsers::{BrowserKind, Session};

/// What one page must show: a script returning `{ok, why}` after any interaction it needs.
const CHECKS: &[(&str, &str)] = &[
    (
        "index.html",
        r#"
        const rows = () => [...document.querySelectorAll('#matrix tbody tr')];
        const visible = () => rows().filter(r => !r.classList.contains('hidden'));
        const legend = document.querySelectorAll('#legend span').length;
        if (rows().length === 0) return {ok: false, why: 'the matrix has no rows'};
        if (legend !== 8) return {ok: false, why: `the legend has ${legend} entries, not 8`};
        if (document.querySelectorAll('#matrix td.cell').length === 0) return {ok: false, why: 'no cells'};
        const families = [...new Set(rows().map(r => r.dataset.family))];
        const sel = document.getElementById('f-family');
        sel.value = families[families.length - 1];
        sel.dispatchEvent(new Event('change'));
        const shown = visible();
        const wrong = shown.filter(r => r.dataset.family !== sel.value).length;
        const hid = rows().length - shown.length;
        sel.value = ''; sel.dispatchEvent(new Event('change'));
        if (families.length > 1 && hid === 0) return {ok: false, why: 'the family filter hid no row'};
        if (wrong > 0) return {ok: false, why: `the family filter left ${wrong} rows of other families`};
        if (visible().length !== rows().length) return {ok: false, why: 'clearing the filter did not show every row'};
        return {ok: true, why: `${rows().length} rows, ${families.length} families, the filter hid ${hid}`};
        "#,
    ),
    (
        "perf.html",
        r#"
        const charts = document.querySelectorAll('svg.chart');
        const marks = document.querySelectorAll('svg.chart rect, svg.chart circle').length;
        if (charts.length === 0) return {ok: false, why: 'no charts'};
        if (marks === 0) return {ok: false, why: 'the charts draw nothing'};
        return {ok: true, why: `${charts.length} charts, ${marks} marks`};
        "#,
    ),
    (
        "browsers.html",
        r#"
        const n = document.querySelectorAll('table.census').length;
        return n > 0 ? {ok: true, why: `${n} runtimes`} : {ok: false, why: 'no census tables'};
        "#,
    ),
    (
        "cells.html",
        r#"
        const n = document.querySelectorAll('section.cell').length;
        return {ok: true, why: `${n} cells in detail`};
        "#,
    ),
];

/// Run on every page after its own check: nothing planted ran or became an element.
const SAFETY: &str = r#"
    if (window.__planted !== undefined) return {ok: false, why: 'a planted script ran'};
    const imgs = document.querySelectorAll('img').length;
    if (imgs > 0) return {ok: false, why: `${imgs} img elements: markup from a browser's words became HTML`};
    const errors = window.__webqErrors || ['the error recorder is missing'];
    if (errors.length > 0) return {ok: false, why: 'page errors: ' + errors.join('; ')};
    return {ok: true, why: ''};
"#;

/// Each page's verdict: (page, passed, what was found), and the screenshots written.
pub async fn verify(dir: &Path, shots: &Path) -> Result<(Vec<(String, bool, String)>, Vec<PathBuf>), String> {
    let located = BrowserKind::Chromium.locate()?;
    let session = Session::start(BrowserKind::Chromium, &located).await?;
    std::fs::create_dir_all(shots).map_err(|e| format!("{}: {e}", shots.display()))?;
    let result = check_all(&session.client, dir, shots).await;
    session.close().await;
    result
}

async fn check_all(
    c: &fantoccini::Client,
    dir: &Path,
    shots: &Path,
) -> Result<(Vec<(String, bool, String)>, Vec<PathBuf>), String> {
    let dir = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
    let _ = c.set_window_size(1600, 1100).await;
    let mut verdicts = Vec::new();
    let mut written = Vec::new();
    for (page, check) in CHECKS {
        let url = format!("file://{}", dir.join(page).display());
        c.goto(&url).await.map_err(|e| format!("{url}: {e}"))?;
        let run = |script: &str| {
            let body = format!("return (function () {{ {script} }})();");
            async move { c.execute(&body, vec![]).await.map_err(|e| format!("{page}: {e}")) }
        };
        let own: Value = run(check).await?;
        let safe: Value = run(SAFETY).await?;
        let ok = own["ok"] == Value::Bool(true) && safe["ok"] == Value::Bool(true);
        let why = [own["why"].as_str().unwrap_or(""), safe["why"].as_str().unwrap_or("")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        verdicts.push((page.to_string(), ok, why));
        let png = c.screenshot().await.map_err(|e| format!("{page}: screenshot: {e}"))?;
        let path = shots.join(page.replace(".html", ".png"));
        std::fs::write(&path, png).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok((verdicts, written))
}

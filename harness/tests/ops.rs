//! `webq ops` end to end: every per-op cell as WebNN graphs in chrome-shell on each device type,
//! and in WGSL on Firefox's WebGPU; the page returns outputs, the harness judges them.

mod common;

use common::{browsers_ready, scratch, webq};

#[test]
fn every_op_passes_as_webnn_graphs_in_chrome_shell_and_in_wgsl_in_firefox() {
    if !browsers_ready("the per-op cells test") {
        return;
    }
    let dir = scratch("ops");
    let jsonl = dir.join("ops.jsonl");
    let out = webq(&["ops", "--browsers", "chrome-shell,firefox", "--backends", "webnn,webgpu", "--out"])
        .arg(&jsonl)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let cases = webq_engine::models::op_cases::op_cases().len();
    let cells = ["chrome-shell/webnn@cpu", "chrome-shell/webnn@gpu", "chrome-shell/webnn@npu", "firefox/webgpu"];
    // Firefox's WebGPU on lavapipe has shader-f16: the WGSL ops in f16 arithmetic too.
    for cell in cells.into_iter().chain(["firefox/webgpu-f16"]) {
        let mine: Vec<_> = records.iter().filter(|r| r["cell"] == cell).collect();
        assert_eq!(mine.len(), cases, "{cell}: every case judged\n{stdout}");
        assert!(mine.iter().all(|r| r["pass"] == true), "{cell}\n{stdout}");
    }
    // chrome-shell has no shader-f16 but does have WebGPU (SwiftShader): its WGSL ops ran in f32,
    // and f16 is said to be missing; Firefox has no WebNN, said so rather than counted.
    assert!(stdout.contains("chrome-shell/webgpu-f16") && stdout.contains("needs shader-f16"), "{stdout}");
    assert!(
        stdout.contains("firefox/webnn@cpu") && stdout.contains("unsupported: navigator.ml is undefined"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

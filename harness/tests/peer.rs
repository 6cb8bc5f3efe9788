//! `webq peer` end to end in Firefox: onnxruntime-web loads from the page server, runs MatMulNBits on
//! webq's packed weights, and its output and webq's own go through the same kernel verdict.

mod common;

use common::{browsers_ready, root, scratch, webq};

#[test]
fn the_peer_runs_beside_webq_in_firefox_and_both_are_judged() {
    if !browsers_ready("the onnxruntime-web peer test") {
        return;
    }
    let dir = scratch("peer");
    let out = webq(&["peer", "--browsers", "firefox", "--n", "40", "--k", "256", "--reps", "2"])
        .args(["--formats", "int4-g32-sym,int4-g32-asym", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(dir.join("peer.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Two formats x (webq webgpu, ORT C++ WebGPU EP, ORT JSEP, webq wasm, ORT wasm).
    assert_eq!(records.len(), 10, "{text}");
    for r in &records {
        let runner = r["runner"].as_str().unwrap();
        // Every runner ran and was judged here (block 32: ORT's JSEP build is right at this size too).
        assert_eq!(r["verdict_pass"], true, "{runner}: {r}");
        assert!(r["ms_per_run"].as_f64().is_some_and(|v| v > 0.0), "{runner}: {r}");
    }
    assert!(records.iter().any(|r| r["note"].as_str().unwrap().contains("WebGpuExecutionProvider")), "{text}");
    assert!(stdout.contains("webq / ort webgpu (C++ EP build)"), "{stdout}");
    assert!(root().join("target/webq-page/peer.js").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

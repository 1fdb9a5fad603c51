//! One browser page, in Chromium (chromedriver) or Firefox ESR
//! (geckodriver), with a fresh profile, fake media and loopback ICE allowed,
//! and the helpers scenarios use to read and wait on `window.signalDemo`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use super::{Env, WAIT, free_port, wait_for_port};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const FIREFOX: &str = "/usr/bin/firefox-esr";

/// The browser engines the page is proven in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Chromium,
    Firefox,
}

/// geckodriver, built by `cargo install` into a cache the test runs share
/// (no prebuilt download is reachable from here); `GECKODRIVER` overrides.
pub fn geckodriver() -> PathBuf {
    if let Some(path) = std::env::var_os("GECKODRIVER") {
        return PathBuf::from(path);
    }
    geckodriver_root().join("bin/geckodriver")
}

fn geckodriver_root() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("signal-relay/geckodriver")
}

/// Builds geckodriver into the cache when it is not there (a few minutes,
/// once per machine). Runs before the tests enter their network namespace,
/// since it needs crates.io.
pub fn build_geckodriver_if_missing() -> Result<(), String> {
    if geckodriver().exists() {
        return Ok(());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "building geckodriver: cargo install geckodriver --locked --root {}",
        geckodriver_root().display()
    );
    let status = Command::new(cargo)
        .args(["install", "geckodriver", "--locked", "--root"])
        .arg(geckodriver_root())
        // This package's build settings are not geckodriver's.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .status()
        .map_err(|e| format!("cannot run cargo install geckodriver: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo install geckodriver failed ({status})"))
    }
}

/// One page in its own browser with a fresh profile.
pub struct Page {
    pub client: Client,
    pub name: String,
    pub engine: Engine,
}

impl Page {
    /// A page in Chromium.
    pub async fn open(env: &Env, name: &str, url: &str) -> Result<Page, String> {
        Page::open_with(env, name, url, &[]).await
    }

    pub async fn open_in(env: &Env, engine: Engine, name: &str, url: &str) -> Result<Page, String> {
        match engine {
            Engine::Chromium => Page::open(env, name, url).await,
            Engine::Firefox => Page::open_firefox(env, name, url).await,
        }
    }

    /// A page in Chromium with `extra` command-line flags.
    pub async fn open_with(
        env: &Env,
        name: &str,
        url: &str,
        extra: &[&str],
    ) -> Result<Page, String> {
        let profile = env.scratch.join(format!("profile-{name}-{}", free_port()));
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--allow-loopback-in-peer-connection",
            "--window-size=1100,900",
        ];
        let profile_arg = format!("--user-data-dir={}", profile.display());
        args.push(&profile_arg);
        args.extend_from_slice(extra);
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            // So the console (errors, failed loads) can be read back.
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        Page::start(env, Engine::Chromium, name, url, &env.driver, capabilities).await
    }

    /// A page in Firefox ESR, through a geckodriver of its own (one
    /// geckodriver serves one session at a time).
    async fn open_firefox(env: &Env, name: &str, url: &str) -> Result<Page, String> {
        let port = free_port();
        // Firefox's profile under the scratch folder, so a Firefox that
        // outlives its driver is still found (and only it) by that path.
        let profiles = env.scratch.join(format!("firefox-{name}-{port}"));
        std::fs::create_dir_all(&profiles).map_err(|e| e.to_string())?;
        let driver = Command::new(geckodriver())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--profile-root")
            .arg(&profiles)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{name}: cannot start geckodriver: {e}"))?;
        env.drivers.lock().expect("not poisoned").push(driver);
        wait_for_port(port).await;
        let capabilities = json!({
            "browserName": "firefox",
            "moz:firefoxOptions": {
                "binary": FIREFOX,
                "args": ["-headless", "-width", "1100", "-height", "900"],
                "prefs": {
                    // A fake camera and microphone, and no permission prompt.
                    "media.navigator.streams.fake": true,
                    "media.navigator.permission.disabled": true,
                    // With a fake camera alone Firefox does not count the
                    // page as capturing, and then offers only the default
                    // route's address, which a loopback-only namespace
                    // lacks: it would gather no candidate at all.
                    "media.navigator.permission.fake": true,
                    // Gather on lo, and show the address instead of an
                    // mDNS name that nothing here can resolve.
                    "media.peerconnection.ice.loopback": true,
                    "media.peerconnection.ice.obfuscate_host_addresses": false,
                    // Autoplay of the remote video without a click.
                    "media.autoplay.default": 0,
                    // The network is closed: no update, telemetry or portal checks.
                    "app.update.disabledForTesting": true,
                    "network.captive-portal-service.enabled": false,
                    "datareporting.policy.dataSubmissionEnabled": false,
                    "toolkit.telemetry.enabled": false,
                    "browser.safebrowsing.malware.enabled": false,
                    "browser.safebrowsing.phishing.enabled": false,
                },
            },
        });
        let driver_url = format!("http://127.0.0.1:{port}");
        Page::start(env, Engine::Firefox, name, url, &driver_url, capabilities).await
    }

    async fn start(
        env: &Env,
        engine: Engine,
        name: &str,
        url: &str,
        driver: &str,
        capabilities: Value,
    ) -> Result<Page, String> {
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(driver)
            .await
            .map_err(|e| format!("{name}: cannot start {engine:?}: {e}"))?;
        env.sessions
            .lock()
            .expect("not poisoned")
            .push(client.clone());
        client
            .goto(url)
            .await
            .map_err(|e| format!("{name}: cannot open {url}: {e}"))?;
        Ok(Page {
            client,
            name: name.to_owned(),
            engine,
        })
    }

    pub async fn click(&self, id: &str) -> Result<(), String> {
        let button = self
            .client
            .find(Locator::Id(id))
            .await
            .map_err(|e| format!("{}: no #{id}: {e}", self.name))?;
        button
            .click()
            .await
            .map_err(|e| format!("{}: cannot click #{id}: {e}", self.name))
    }

    pub async fn eval(&self, script: &str) -> Result<Value, String> {
        self.client
            .execute(script, vec![])
            .await
            .map_err(|e| format!("{}: {e}", self.name))
    }

    /// Runs `script` as an async script: it calls `done(value)` to finish.
    pub async fn eval_async(&self, script: &str) -> Result<Value, String> {
        let wrapped = format!("const done = arguments[arguments.length - 1]; {script};");
        self.client
            .execute_async(&wrapped, vec![])
            .await
            .map_err(|e| format!("{}: {e}", self.name))
    }

    /// Fails if the page's console holds an error, a failed request among
    /// them (Chromium logs each as "Failed to load resource").
    pub async fn no_console_errors(&self) -> Result<(), String> {
        if self.engine == Engine::Firefox {
            // geckodriver has no console endpoint (WebDriver BiDi's log
            // events would be the way); the console is proven in Chromium.
            return Ok(());
        }
        let log = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .map_err(|e| format!("{}: cannot read the console: {e}", self.name))?;
        let errors: Vec<&Value> = log
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: console errors: {errors:?}", self.name))
        }
    }

    pub async fn summary(&self) -> Result<Value, String> {
        self.eval("return window.signalDemo.summary()").await
    }

    /// Evaluates `script` every 100 ms until `done` says yes (or fails),
    /// for at most [`WAIT`]; returns the last value.
    pub async fn wait_until(
        &self,
        script: &str,
        what: &str,
        done: impl Fn(&Value) -> Result<bool, String>,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.eval(script).await?;
            if done(&value).map_err(|error| format!("{}: {error}", self.name))? {
                return Ok(value);
            }
            if Instant::now() > deadline {
                return Err(format!("{}: {what} did not happen: {value}", self.name));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's summary satisfies `done`; an error the page
    /// reports ends the wait at once.
    pub async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        // `null` until the page's module has run: in 1 of 70 runs a
        // Chromium page answered its first script before app.js had.
        self.wait_until(
            "return window.signalDemo ? window.signalDemo.summary() : null",
            what,
            |summary| match summary["error"].as_str() {
                _ if summary.is_null() => Ok(false),
                Some(error) => Err(format!("the page reports: {error}")),
                None => Ok(done(summary)),
            },
        )
        .await
    }

    /// Waits until the entries in `window.signalLog` satisfy `done`.
    pub async fn wait_for_log(
        &self,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Result<(), String> {
        self.wait_until("return window.signalLog", what, |log| {
            Ok(done(log.as_array().map_or(&[][..], Vec::as_slice)))
        })
        .await
        .map(drop)
    }

    /// Waits until every remote tile plays video: frames have a size and
    /// `currentTime` moves (after a path came back, the first frames wait
    /// for a keyframe, so movement is waited for, not sampled once).
    pub async fn wait_for_frames(&self, remotes: usize) -> Result<(), String> {
        let playing = |s: &Value| {
            let tiles = s["remotes"].as_array().cloned().unwrap_or_default();
            tiles.len() == remotes
                && tiles
                    .iter()
                    .all(|r| r["videoWidth"].as_u64().unwrap_or(0) > 0)
        };
        let before = self.wait_for("remote video frames", playing).await?;
        let times = |s: &Value| -> Vec<f64> {
            s["remotes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r["currentTime"].as_f64().unwrap_or(0.0))
                .collect()
        };
        let start = times(&before);
        let deadline = Instant::now() + WAIT;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.summary().await?;
            let moved = times(&now);
            if moved.len() == start.len() && moved.iter().zip(&start).all(|(t1, t0)| t1 > t0) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: remote video is frozen: {before} then {now}",
                    self.name
                ));
            }
        }
    }

    pub async fn screenshot(&self, path: &Path) -> Result<(), String> {
        let png = self.client.screenshot().await.map_err(|e| e.to_string())?;
        std::fs::create_dir_all(path.parent().expect("a folder")).map_err(|e| e.to_string())?;
        std::fs::write(path, png).map_err(|e| e.to_string())
    }

    /// Closes the page's tab the way a user does, with the browser left
    /// running in another tab.
    pub async fn close_tab(&self) -> Result<(), String> {
        let page = self.client.window().await.map_err(|e| e.to_string())?;
        let other = self
            .client
            .new_window(true)
            .await
            .map_err(|e| e.to_string())?;
        self.client
            .switch_to_window(page)
            .await
            .map_err(|e| e.to_string())?;
        self.client
            .close_window()
            .await
            .map_err(|e| e.to_string())?;
        self.client
            .switch_to_window(other.handle)
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// chromedriver's log endpoint (not in W3C WebDriver, so not in fantoccini):
/// the browser console entries since the last read.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (hyper::Method, Option<String>) {
        (hyper::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

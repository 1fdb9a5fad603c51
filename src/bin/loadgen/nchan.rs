//! nginx with the nchan module, started by the load generator so the same
//! workloads meet both servers in one run (`--target nchan`). Its
//! configuration is `benches/nchan.conf`; Debian's `nginx-light` and
//! `libnginx-mod-nchan` provide the binary and the module.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};

use crate::spawned;

pub const NGINX: &str = "/usr/sbin/nginx";
pub const MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";
const CONFIG: &str = include_str!("../../../benches/nchan.conf");

/// A running nginx+nchan of this load generator's own, stopped when dropped.
pub struct Nchan {
    child: Child,
    dir: PathBuf,
    pub base: String,
}

impl Nchan {
    pub fn start() -> Result<Nchan, String> {
        for (path, package) in [(NGINX, "nginx-light"), (MODULE, "libnginx-mod-nchan")] {
            if !std::path::Path::new(path).exists() {
                return Err(format!(
                    "{path} is missing: apt-get install nginx-light libnginx-mod-nchan ({package})"
                ));
            }
        }
        spawned::on_a_free_port(Nchan::start_on)
    }

    fn start_on(port: u16) -> Result<Nchan, String> {
        let dir = std::env::temp_dir().join(format!(
            "loadgen-nchan-{}-{}",
            std::process::id(),
            super::unique_room("n")
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = CONFIG
            .replace("{module}", MODULE)
            .replace("{dir}", &dir.display().to_string())
            .replace("{port}", &port.to_string());
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).map_err(|e| e.to_string())?;
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{NGINX}: {e}"))?;
        let mut nchan = Nchan {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
        };
        let log = nchan.dir.join("error.log");
        spawned::wait_listening(&mut nchan.child, port, "nginx", |status| {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            format!("nginx exited ({status}): {log}")
        })?;
        Ok(nchan)
    }

    /// The process that does the work (there is no master).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nchan {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The publishing end of one channel.
#[derive(Clone)]
pub struct Publisher {
    http: reqwest::Client,
    url: String,
}

impl Publisher {
    pub async fn send(&self, body: Bytes) -> Result<(), String> {
        let reply = self
            .http
            .post(&self.url)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match reply.status() {
            StatusCode::CREATED | StatusCode::ACCEPTED => Ok(()),
            status => Err(format!("nchan publish: {status}")),
        }
    }
}

/// The long-polling end of one channel, with nchan's message-id cursor.
pub struct Subscriber {
    http: reqwest::Client,
    url: String,
    /// The channel's publisher location, where a DELETE ends it.
    publisher_url: String,
    last_modified: Option<String>,
    etag: Option<String>,
}

impl Subscriber {
    /// The next message, or none after `wait` (the request is dropped: nchan
    /// has no per-request timeout, only its configured one).
    pub async fn poll(&mut self, wait: Duration) -> Result<Option<String>, String> {
        let mut request = self.http.get(&self.url).timeout(wait);
        if let Some(since) = &self.last_modified {
            request = request.header(IF_MODIFIED_SINCE, since);
        }
        if let Some(tag) = &self.etag {
            request = request.header(IF_NONE_MATCH, tag);
        }
        let reply = match request.send().await {
            Ok(reply) => reply,
            Err(error) if error.is_timeout() => return Ok(None),
            Err(error) => return Err(error.to_string()),
        };
        match reply.status() {
            StatusCode::OK => {
                let header = |name| {
                    reply
                        .headers()
                        .get(name)
                        .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                        .map(str::to_owned)
                };
                self.last_modified = header(LAST_MODIFIED);
                self.etag = header(ETAG);
                let body = reply.text().await.map_err(|e| e.to_string())?;
                Ok(Some(body))
            }
            StatusCode::REQUEST_TIMEOUT | StatusCode::NOT_MODIFIED => Ok(None),
            status => Err(format!("nchan subscribe: {status}")),
        }
    }
}

impl Subscriber {
    /// Deletes the channel (and its messages), as a leave ends a mailbox.
    pub async fn delete(&self) -> Result<(), String> {
        let reply = self
            .http
            .delete(&self.publisher_url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match reply.status() {
            StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
            status => Err(format!("nchan delete: {status}")),
        }
    }
}

/// Both ends of the channel `id`, on the nchan at `base`: publishing
/// through the pool `publishing`, subscribing through `subscribing`.
pub fn channel(
    publishing: &reqwest::Client,
    subscribing: &reqwest::Client,
    base: &str,
    id: &str,
) -> (Publisher, Subscriber) {
    (
        Publisher {
            http: publishing.clone(),
            url: format!("{base}/pub?id={id}"),
        },
        Subscriber {
            http: subscribing.clone(),
            url: format!("{base}/sub?id={id}"),
            publisher_url: format!("{base}/pub?id={id}"),
            last_modified: None,
            etag: None,
        },
    )
}

/// The HTTP client for nchan, built as the crate's client builds its own
/// (`signal_relay::client::Client::new`), so both servers see the same
/// connections.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())
}

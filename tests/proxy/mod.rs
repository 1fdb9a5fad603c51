//! Debian's nginx between the pages and the server, as a corporate proxy
//! is: it blocks WebSocket, buffers responses and cuts long requests. A
//! WebSocket probe behind it shows the blocking is real.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::common;
use super::{Env, free_port, wait_for_port};

pub const NGINX: &str = "/usr/sbin/nginx";

/// Debian's nginx as a plain reverse proxy, configured the way many
/// corporate proxies behave: no `Upgrade`/`Connection` forwarding (so no
/// WebSocket), response buffering on, a 30 s read timeout.
pub struct Proxy {
    pub port: u16,
    probe: SocketAddr,
    child: std::process::Child,
}

impl Proxy {
    /// Proxies to `upstreams`, round-robin (nginx's default) when several.
    pub async fn start(env: &Env, upstreams: &[SocketAddr]) -> Result<Proxy, String> {
        let port = free_port();
        let probe = websocket_probe().await;
        let prefix = env.scratch.join(format!("nginx-{port}"));
        std::fs::create_dir_all(prefix.join("logs")).map_err(|e| e.to_string())?;
        let user = if common::is_root() { "user root;" } else { "" };
        let config = format!(
            r#"{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream signal_instances {{ {servers} }}
    server {{
        listen 127.0.0.1:{port};
        proxy_buffering on;
        proxy_read_timeout 30s;
        location / {{ proxy_pass http://signal_instances; }}
        location /ws-probe {{ proxy_pass http://{probe}; }}
    }}
}}
"#,
            prefix = prefix.display(),
            servers = upstreams
                .iter()
                .map(|a| format!("server {a};"))
                .collect::<String>(),
        );
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config).map_err(|e| e.to_string())?;
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start nginx: {e}"))?;
        wait_for_port(port).await;
        Ok(Proxy { port, probe, child })
    }

    /// A WebSocket handshake succeeds straight to the probe and fails
    /// through the proxy: the proxy really does block WebSocket.
    pub async fn websocket_blocked(&self) -> Result<String, String> {
        let direct = websocket_handshake(self.probe).await?;
        if !direct.starts_with("HTTP/1.1 101") {
            return Err(format!("the probe itself refused the upgrade: {direct}"));
        }
        let via_proxy = websocket_handshake(([127, 0, 0, 1], self.port).into()).await?;
        if via_proxy.starts_with("HTTP/1.1 101") {
            return Err("the proxy let a WebSocket upgrade through".into());
        }
        let status = via_proxy.lines().next().unwrap_or("").to_owned();
        Ok(format!("WebSocket through the proxy: {status}"))
    }

    /// SIGTERM, so the master stops its workers too (SIGKILL would orphan them).
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
    }
}

/// Answers `101 Switching Protocols` to a request that carries
/// `Upgrade: websocket`, and `426 Upgrade Required` to one that does not,
/// which is what a request looks like after a proxy stripped the header.
async fn websocket_probe() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("probe binds");
    let addr = listener.local_addr().expect("probe address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let head = read_head(&mut stream).await.to_ascii_lowercase();
                let reply = if head.contains("\r\nupgrade: websocket") {
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                } else {
                    "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                };
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

async fn websocket_handshake(to: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect(to).await.map_err(|e| e.to_string())?;
    let request = "GET /ws-probe HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    Ok(
        tokio::time::timeout(Duration::from_secs(10), read_head(&mut stream))
            .await
            .unwrap_or_default(),
    )
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

//! The listening socket, connections, and their orderly end.
//!
//! Each accepted connection gets one task on one of the
//! [`EventLoops`], its room's home when its first request line names one,
//! served by hyper-util's `server::conn::auto` (HTTP/1.1 and HTTP/2; over
//! TLS, the protocol ALPN chose).
//!
//! Shutdown is a first-class path: stop accepting, refuse new sends, end
//! parked polls with an empty batch, let clients collect what was accepted
//! before the close for [`SHUTDOWN_DRAIN`], let in-flight requests finish,
//! and return within [`SHUTDOWN_GRACE`] after that, then stop the loops.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::admission::Admission;
use crate::api::request_line::room_named_by;
use crate::api::{Api, ApiSettings};
use crate::event_loops::EventLoops;
use crate::metrics::Metrics;
use crate::settings::{Settings, StoreChoice};
use crate::store::{MemoryStore, RedisStore, RedisStoreError, Store, sweep_interval};
use crate::tls::{self, TlsError};
use crate::web::WebRoot;

/// How long shutdown waits for in-flight requests before returning anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1200);
/// After the store closes, how long clients on open connections may still
/// collect messages accepted before the close, so none is stranded.
const SHUTDOWN_DRAIN: Duration = Duration::from_millis(300);
/// hyper's per-connection read buffer cap, and so the largest request head
/// (as nginx's default header buffer). It is hyper's minimum: above it an
/// idle keep-alive connection keeps a second read buffer, measured at
/// 21.7 KB per connection with a 12 KiB cap and 25 KB with 16 KiB, against
/// 14.5 KB with this one.
const MAX_HTTP1_BUFFER: usize = 8 * 1024;
/// HTTP/2 streams one connection may run at once (a page needs two or three).
const MAX_H2_STREAMS: u32 = 64;
/// HTTP/2 flow-control windows: a body (64 KiB by default) per stream, a
/// few per connection. hyper's defaults (1 MiB) would let 18 000
/// connections buffer 18 GiB of request bodies.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 256 * 1024;
/// Ping an idle HTTP/2 connection this often; close it if a ping goes unanswered as long.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);
/// Pending connections the kernel may queue (it caps this at somaxconn).
const LISTEN_BACKLOG: u32 = 4096;
/// Pause after an accept error (e.g. out of file descriptors) before trying
/// again, so the loop waits for capacity instead of spinning on the error.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Bytes of a new connection read (without taking them) to find the room
/// its first request names: a request line of signaling fits well within.
const PLACEMENT_PEEK: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Store(#[from] RedisStoreError),
    #[error("cannot start the event loops: {0}")]
    EventLoops(io::Error),
}

/// A bound, ready server. [`Server::run`] serves until its shutdown future
/// completes.
pub struct Server {
    local_addr: SocketAddr,
    accepting: Box<dyn Serve>,
}

/// A future the server can hold across its whole run.
type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The accept loop of a bound server, behind one interface whatever its
/// store: the store is chosen once, in [`Server::bind`], and each store
/// gets its own compiled request path (the in-memory default pays nothing
/// for Redis).
trait Serve: Send {
    fn run(self: Box<Self>, shutdown: Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// A listening socket and everything its connections are served with.
struct AcceptLoop<S: Store> {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    store: Arc<S>,
    api: Arc<Api<S>>,
    admission: Arc<Admission>,
    /// One permit per open connection: at the cap, accepting pauses.
    connections: Arc<Semaphore>,
    /// Where connections are served; this task only accepts and places.
    loops: Arc<EventLoops>,
    header_timeout: Duration,
    handshake_timeout: Duration,
    sweep_every: Duration,
}

impl Server {
    /// Checks the settings, prepares TLS, binds the listener and opens the
    /// store. Requests are served once this returns.
    pub async fn bind(settings: Settings) -> Result<Server, StartError> {
        settings.validate().map_err(StartError::Config)?;
        let tls = match &settings.tls {
            Some(tls) => {
                let loaded = tls::load_or_generate(&tls.cert, &tls.key, &tls.extra_sans)?;
                if loaded.generated {
                    info!(
                        cert = %tls.cert.display(),
                        key = %tls.key.display(),
                        "generated a self-signed certificate; trust it with `curl --cacert {}` (or use -k), and accept it once in a browser",
                        tls.cert.display(),
                    );
                }
                Some(loaded.acceptor)
            }
            None => None,
        };
        let bind_error = |source| StartError::Bind {
            addr: settings.listen,
            source,
        };
        let listener = listen(settings.listen).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        if let WebRoot::Dir(dir) = &settings.api.web
            && !dir.is_dir()
        {
            warn!(
                web_dir = %dir.display(),
                "the web folder does not exist, so / answers 404: give an existing --web-dir, or none to serve the page built into the binary"
            );
        }

        let metrics = Arc::new(Metrics::new());
        let admission = Arc::new(Admission::new(
            settings.admission.rate_limit,
            settings.admission.rate_burst,
            settings.admission.trusted_proxies.clone(),
            settings.admission.max_polls_per_ip,
        ));
        // validate() made sure HSTS comes only with TLS.
        let api = settings.api.clone();
        let web = match &api.web {
            WebRoot::Embedded => "built in".to_owned(),
            WebRoot::Dir(dir) => dir.display().to_string(),
        };
        let tls_on = tls.is_some();
        let loops = EventLoops::start(settings.event_loops).map_err(StartError::EventLoops)?;
        let parts = Parts {
            listener,
            tls,
            loops,
            api,
            metrics: metrics.clone(),
            admission,
            settings: &settings,
        };
        let accepting: Box<dyn Serve> = match &settings.store {
            StoreChoice::Memory => {
                let store = MemoryStore::with_metrics(settings.limits.clone(), metrics);
                Box::new(parts.accept_loop(store))
            }
            StoreChoice::Redis(url) => {
                let store = RedisStore::connect(
                    url,
                    settings.redis_ca_file.as_deref(),
                    settings.limits.clone(),
                    metrics,
                )
                .await?;
                info!("rooms and mailboxes are in Redis, shared with every instance using it");
                Box::new(parts.accept_loop(store))
            }
        };
        // Logged once the store is ready: from here on requests are served.
        let scheme = if tls_on { "https" } else { "http" };
        let cert = match &settings.tls {
            Some(tls) => tls.cert.display().to_string(),
            None => "-".into(),
        };
        info!(
            listen = %local_addr,
            tls = tls_on,
            cert = %cert,
            web = %web,
            "signal relay listening on {scheme}://{local_addr}/",
        );
        match &settings.api.tickets {
            Some(keys) => info!(
                ?keys,
                "a ticket is required to join a room, get TURN credentials or offer over WHIP/WHEP"
            ),
            None if !local_addr.ip().is_loopback() => warn!(
                listen = %local_addr,
                "no ticket key is configured: rooms are open to anyone who reaches this address, and so are TURN credentials; give --ticket-secret-file or --ticket-public-key-file to admit ticket holders only (docs/security.md)"
            ),
            None => {}
        }
        Ok(Server {
            local_addr,
            accepting,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        self.accepting.run(Box::pin(shutdown)).await;
    }
}

/// What an [`AcceptLoop`] is built from besides its store.
struct Parts<'a> {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    loops: EventLoops,
    api: ApiSettings,
    metrics: Arc<Metrics>,
    admission: Arc<Admission>,
    settings: &'a Settings,
}

impl Parts<'_> {
    fn accept_loop<S: Store>(self, store: S) -> AcceptLoop<S> {
        let store = Arc::new(store);
        let api = Arc::new(Api::new(
            store.clone(),
            self.api,
            self.metrics,
            self.admission.clone(),
        ));
        AcceptLoop {
            listener: self.listener,
            tls: self.tls,
            store,
            api,
            admission: self.admission,
            connections: Arc::new(Semaphore::new(self.settings.max_connections)),
            loops: Arc::new(self.loops),
            header_timeout: self.settings.header_timeout,
            handshake_timeout: self
                .settings
                .tls
                .as_ref()
                .map_or(Duration::ZERO, |tls| tls.handshake_timeout),
            sweep_every: sweep_interval(self.settings.limits.peer_ttl),
        }
    }
}

impl<S: Store> Serve for AcceptLoop<S> {
    fn run(self: Box<Self>, shutdown: Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.accept_until(shutdown))
    }
}

impl<S: Store> AcceptLoop<S> {
    async fn accept_until(self, shutdown: Shutdown) {
        let AcceptLoop {
            listener,
            tls,
            store,
            api,
            admission,
            connections,
            loops,
            header_timeout,
            handshake_timeout,
            sweep_every,
        } = self;
        let protocols = Arc::new(Protocols::new(header_timeout));
        let graceful = GracefulShutdown::new();
        let sweeper = tokio::spawn(sweep_periodically(store.clone(), admission, sweep_every));
        let mut shutdown = shutdown;
        loop {
            // At the connection cap, stop accepting (the kernel queues new
            // connections) rather than run out of memory or descriptors.
            let (permit, accepted) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = async {
                    let permit = connections.clone().acquire_owned().await;
                    (permit, listener.accept().await)
                } => accepted,
            };
            let Ok(permit) = permit else { break };
            match accepted {
                Ok((stream, remote)) => {
                    let connection = Connection {
                        api: api.clone(),
                        protocols: protocols.clone(),
                        header_timeout,
                        handshake_timeout,
                        watcher: graceful.watcher(),
                        _permit: permit,
                    };
                    let loops = loops.clone();
                    tokio::spawn(connection.place(stream, remote, tls.clone(), loops));
                }
                Err(error) => {
                    warn!(%error, "accept failed; pausing before the next accept");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            }
        }

        drop(listener);
        let parked_polls = store.stats().await.parked_polls;
        info!(
            connections = graceful.count(),
            parked_polls, "shutting down: no new connections, ending parked polls"
        );
        store.close();
        sweeper.abort();
        tokio::time::sleep(SHUTDOWN_DRAIN).await;
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            warn!("some connections were still busy after {SHUTDOWN_GRACE:?}; closing them");
        }
        // Stops the loops, dropping what still runs there.
        drop(loops);
        info!("shut down");
    }
}

/// Binds with a deep accept backlog: after a restart or a proxy cut, every
/// client re-polls at once, and a shallow queue would drop their SYNs.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted server can bind while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn sweep_periodically<S: Store>(store: Arc<S>, admission: Arc<Admission>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        store.sweep().await;
        admission.forget_idle();
    }
}

/// The three ways a connection can be served. Over TLS, ALPN already says
/// which protocol the client speaks; the auto builder's version sniffing
/// has no timeout of its own, so it is used only for plain TCP, after the
/// first bytes have arrived.
struct Protocols {
    sniffing: auto::Builder<TokioExecutor>,
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(header_timeout: Duration) -> Protocols {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(MAX_HTTP1_BUFFER);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_H2_STREAMS)
            // Flow-control windows bound the request bytes one connection
            // can have buffered: signaling bodies are small.
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .keep_alive_interval(H2_KEEP_ALIVE)
            .keep_alive_timeout(H2_KEEP_ALIVE);
        Protocols {
            sniffing: builder.clone(),
            http1: builder.clone().http1_only(),
            http2: builder.http2_only(),
        }
    }
}

/// Which of [`Protocols`] serves a connection.
enum Protocol {
    Sniffed,
    Http1,
    Http2,
}

struct Connection<S: Store> {
    api: Arc<Api<S>>,
    protocols: Arc<Protocols>,
    header_timeout: Duration,
    handshake_timeout: Duration,
    watcher: Watcher,
    /// Held for the connection's life: its slot under --max-connections.
    _permit: OwnedSemaphorePermit,
}

impl<S: Store> Connection<S> {
    /// Runs where the connection was accepted, only until its first bytes
    /// are in: then hands it to the event loop that serves it, its room's
    /// home when the first request line names one. Over TLS nothing can
    /// be read before the handshake, so the loop is the next in turn.
    async fn place(
        self,
        stream: TcpStream,
        remote: SocketAddr,
        tls: Option<TlsAcceptor>,
        loops: Arc<EventLoops>,
    ) {
        // Signaling messages are small and latency-bound.
        let _ = stream.set_nodelay(true);
        let home = match tls {
            Some(_) => loops.any(),
            None => {
                // A client that connects and says nothing is dropped here;
                // once bytes flow, hyper's header timeout takes over.
                // (`peek` waits for a byte; `readable` may report readiness
                // spuriously.) One peek, never a loop waiting for more: the
                // socket stays readable, so a loop would spin.
                let mut head = [0u8; PLACEMENT_PEEK];
                let peeked = tokio::time::timeout(self.header_timeout, stream.peek(&mut head));
                match peeked.await {
                    Ok(Ok(n)) if n > 0 => match room_named_by(&head[..n]) {
                        Some(room) => loops.home_of(&room),
                        None => loops.any(),
                    },
                    _ => return debug!(%remote, "connection sent nothing in time; closed"),
                }
            }
        };
        // Registered with the home loop's reactor, so its wake-ups are
        // local to that thread.
        match stream.into_std() {
            Ok(stream) => drop(home.spawn(self.serve(stream, remote, tls))),
            Err(error) => debug!(%remote, %error, "connection lost while being placed"),
        }
    }

    /// Serves a placed connection on the loop it runs on.
    async fn serve(
        self,
        stream: std::net::TcpStream,
        remote: SocketAddr,
        tls: Option<TlsAcceptor>,
    ) {
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(error) => return debug!(%remote, %error, "cannot register a placed connection"),
        };
        match tls {
            None => Box::pin(self.serve_with(Protocol::Sniffed, stream, remote)).await,
            // Boxed, so a plain connection's task does not reserve room
            // for a TLS session.
            Some(acceptor) => Box::pin(self.serve_tls(acceptor, stream, remote)).await,
        }
    }

    async fn serve_tls(self, acceptor: TlsAcceptor, stream: TcpStream, remote: SocketAddr) {
        // Boxed: the handshake's state is dropped once it is done.
        let handshake = Box::pin(tokio::time::timeout(
            self.handshake_timeout,
            acceptor.accept(stream),
        ));
        let stream = match handshake.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return debug!(%remote, %error, "TLS handshake failed"),
            Err(_) => return debug!(%remote, "TLS handshake timed out"),
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let protocol = if h2 { Protocol::Http2 } else { Protocol::Http1 };
        self.serve_with(protocol, stream, remote).await;
    }

    async fn serve_with<I>(self, protocol: Protocol, io: I, remote: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let builder = match protocol {
            Protocol::Sniffed => &self.protocols.sniffing,
            Protocol::Http1 => &self.protocols.http1,
            Protocol::Http2 => &self.protocols.http2,
        };
        let api = self.api.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.handle(request, remote).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        if let Err(error) = self.watcher.watch(connection).await {
            debug!(%remote, %error, "connection ended with an error");
        }
    }
}
#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn connection(
        graceful: &GracefulShutdown,
        permits: &Arc<Semaphore>,
    ) -> Connection<MemoryStore> {
        let store = Arc::new(MemoryStore::new(crate::store::Limits::default()));
        let admission = Arc::new(Admission::new(0, 0, Vec::new(), 0));
        let api = Arc::new(Api::new(
            store,
            ApiSettings::default(),
            Arc::default(),
            admission,
        ));
        Connection {
            api,
            protocols: Arc::new(Protocols::new(Duration::from_secs(5))),
            header_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            watcher: graceful.watcher(),
            _permit: permits.clone().try_acquire_owned().unwrap(),
        }
    }

    /// Connections whose first request names one room are all served on
    /// its home loop; connections naming none are dealt out in turn.
    #[tokio::test]
    async fn a_rooms_connections_meet_on_its_home_loop() {
        let loops = Arc::new(EventLoops::start(2).unwrap());
        let graceful = GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(16));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        let open = |first_line: String| {
            let listener = &listener;
            let loops = loops.clone();
            let connection = connection(&graceful, &permits);
            async move {
                let mut client = TcpStream::connect(addr).await.unwrap();
                let head = format!("{first_line}\r\nHost: relay\r\n\r\n");
                client.write_all(head.as_bytes()).await.unwrap();
                let (stream, remote) = listener.accept().await.unwrap();
                connection.place(stream, remote, None, loops).await;
                client
            }
        };
        for peer in ["a", "b", "c", "d"] {
            let line = format!("GET /signal?room=demo&peer={peer}&since=0 HTTP/1.1");
            clients.push(open(line).await);
        }
        for _ in 0..4 {
            clients.push(open("GET /healthz HTTP/1.1".to_owned()).await);
        }
        let home = loops.home_of("demo").id();
        let expected = |id| if id == home { 4 + 2 } else { 2 };
        // Each connection is one task for as long as it is open.
        for handle in loops.handles() {
            let want = expected(handle.id());
            let mut alive = handle.metrics().num_alive_tasks();
            for _ in 0..100 {
                if alive == want {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                alive = handle.metrics().num_alive_tasks();
            }
            assert_eq!(alive, want, "connections on loop {}", handle.id());
        }
        drop(clients);
    }

    /// A connection's task lives as long as the connection: the TLS session
    /// and hyper's connection are boxed so that it stays small (1 784 bytes
    /// when a TLS handshake and a cloned builder were inline).
    #[tokio::test]
    async fn a_connections_task_stays_small() {
        let graceful = GracefulShutdown::new();
        let connection = connection(&graceful, &Arc::new(Semaphore::new(1)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let task = connection.serve(stream, "127.0.0.1:1".parse().unwrap(), None);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 768, "a connection's task is {size} bytes");
    }
}

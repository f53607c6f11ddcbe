//! The listener framework every protocol server plugs into.
//!
//! [`Listeners::bind`] opens every configured socket before accepting on any,
//! so a port conflict stops start-up with one clear message instead of a
//! half-running server. Each accepted connection is checked against the
//! connection limits, wrapped in TLS when its port speaks TLS from the first
//! byte (RFC 8314 §3.3 "implicit TLS"), and handed to the port's
//! [`Service`] in a task of its own. [`Listeners::shutdown`] stops accepting
//! at once, tells every session through its [`ShutdownSignal`] (so IMAP can
//! say `* BYE`, SMTP `421`), waits up to a grace period, then cuts what is
//! left.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, error, info, warn};

/// How a port speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Never (HTTP behind a proxy, or a port only for loopback).
    Plain,
    /// Plain at first; the client may upgrade with STARTTLS / STLS
    /// (RFC 3207, RFC 2595, RFC 9051 §6.2.1). The [`Service`] does the
    /// upgrade with [`Connection::start_tls`].
    StartTls,
    /// TLS from the first byte (RFC 8314 §3.3). The framework completes the
    /// handshake before the [`Service`] sees the connection.
    Implicit,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Plain => "plain",
            TlsMode::StartTls => "STARTTLS",
            TlsMode::Implicit => "implicit TLS",
        })
    }
}

/// A boxed future, as [`Service::handle`] returns (no extra crate needed).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A protocol server: IMAP, POP3, SMTP, HTTP. One value serves every
/// connection of the listeners it is given to.
pub trait Service: Send + Sync + 'static {
    /// The protocol's name, for logs ("imap").
    fn name(&self) -> &'static str;

    /// Runs one session to its end. The connection is closed when the
    /// returned future finishes (or is aborted after the shutdown grace).
    fn handle(self: Arc<Self>, conn: Connection, ctx: ConnContext) -> BoxFuture<'static, ()>;

    /// A line to send to a connection refused for a limit, before closing
    /// it, e.g. `* BYE Too many connections\r\n` (RFC 9051 §7.1.5) or
    /// `421 4.7.0 Too many connections\r\n` (RFC 5321 §3.8). Only sent on
    /// ports that are not TLS from the first byte; `None` closes silently.
    fn busy_reply(&self) -> Option<&'static [u8]> {
        None
    }
}

/// A client connection: plain TCP (possibly upgraded later) or TLS.
pub enum Connection {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// An in-memory pipe, so a protocol's whole session can run without sockets (fuzz
    /// targets, tests). Never TLS; STARTTLS on it fails.
    Memory(tokio::io::DuplexStream),
}

impl Connection {
    /// Whether TLS is active on this connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, Connection::Tls(_))
    }

    /// The TCP socket underneath (none for an in-memory connection).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Connection::Plain(tcp) => Some(tcp),
            Connection::Tls(tls) => Some(tls.get_ref().0),
            Connection::Memory(_) => None,
        }
    }

    /// The TLS session, when TLS is active (protocol version, cipher suite,
    /// SNI name, ALPN).
    pub fn tls_session(&self) -> Option<&rustls::ServerConnection> {
        match self {
            Connection::Plain(_) | Connection::Memory(_) => None,
            Connection::Tls(tls) => Some(tls.get_ref().1),
        }
    }

    /// Upgrades a plain connection to TLS (STARTTLS, STLS), giving up after
    /// `timeout`.
    ///
    /// The caller must first throw away anything it has buffered from the
    /// client but not yet parsed: plaintext pipelined after the STARTTLS
    /// command must never be read as if it came over TLS (RFC 3207 §5,
    /// RFC 2595 §3.1; the CVE-2011-0411 command-injection flaw). A failed
    /// handshake leaves nothing usable, so the connection is consumed.
    pub async fn start_tls(self, config: Arc<ServerConfig>, timeout: Duration) -> io::Result<Connection> {
        match self {
            Connection::Plain(tcp) => {
                let tls = tokio::time::timeout(timeout, TlsAcceptor::from(config).accept(tcp))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
                Ok(Connection::Tls(Box::new(tls)))
            }
            Connection::Tls(_) => Err(io::Error::new(io::ErrorKind::InvalidInput, "TLS is already active")),
            Connection::Memory(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no TLS on an in-memory connection",
            )),
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connection::Plain(tcp) => f.debug_tuple("Plain").field(tcp).finish(),
            Connection::Tls(tls) => f.debug_tuple("Tls").field(tls.get_ref().0).finish(),
            Connection::Memory(_) => f.write_str("Memory"),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Connection::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Connection::Memory(m) => Pin::new(m).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Connection::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Connection::Memory(m) => Pin::new(m).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Connection::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
            Connection::Memory(m) => Pin::new(m).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Plain(tcp) => tcp.is_write_vectored(),
            Connection::Tls(tls) => tls.is_write_vectored(),
            Connection::Memory(m) => m.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Connection::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Connection::Memory(m) => Pin::new(m).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Connection::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            Connection::Memory(m) => Pin::new(m).poll_shutdown(cx),
        }
    }
}

/// What a session knows about its connection and the server around it.
#[derive(Debug, Clone)]
pub struct ConnContext {
    /// The listener's config key ("imaps"), for logs and greetings.
    pub listener: &'static str,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls_mode: TlsMode,
    /// Whether TLS is active when the session starts (implicit-TLS ports).
    pub tls_active: bool,
    /// The server's TLS config, for STARTTLS; `None` when no certificate is
    /// loaded (then do not advertise STARTTLS).
    pub tls_config: Option<Arc<ServerConfig>>,
    /// How long a STARTTLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// Fires when the server begins shutting down.
    pub shutdown: ShutdownSignal,
}

/// Tells sessions that the server is shutting down. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

/// The sending side of a [`ShutdownSignal`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownSignal {
    /// A trigger and the signal it fires (for services run outside
    /// [`Listeners`], and for tests).
    pub fn channel() -> (ShutdownTrigger, ShutdownSignal) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), ShutdownSignal(rx))
    }

    /// Whether shutdown has begun. A dropped trigger counts as shutdown.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub async fn triggered(&self) {
        let mut rx = self.0.clone();
        // An error means the trigger is gone, which is a shutdown too.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// SIGTERM and SIGINT handlers, registered the moment this is made: a signal that
/// arrives while the server is still starting is held, not fatal, and `recv` sees it.
pub struct ShutdownSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    /// Registers the handlers; must be called inside the tokio runtime.
    pub fn install() -> ShutdownSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let watch = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!("cannot watch for {name} ({e})");
                    None
                }
            };
            ShutdownSignals {
                term: watch(SignalKind::terminate(), "SIGTERM"),
                int: watch(SignalKind::interrupt(), "Ctrl-C"),
            }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    /// Waits for SIGTERM or Ctrl-C.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(&mut self.term) => info!("SIGTERM received; shutting down"),
                () = next(&mut self.int) => info!("Ctrl-C received; shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            info!("Ctrl-C received; shutting down");
        }
    }
}

/// Connection limits, applied to each listener (all addresses of one
/// service) separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// How long a client has to finish an implicit-TLS handshake; a client
    /// that connects and says nothing must not hold a slot for long.
    pub tls_handshake_timeout: Duration,
}

impl Default for Limits {
    /// What `[limits]` defaults to in tern.toml.
    fn default() -> Self {
        Limits {
            max_connections: 1000,
            max_connections_per_ip: 50,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// One service's listener: the addresses it listens on, how they speak
/// TLS, and the service that handles each connection.
pub struct ListenerSpec {
    /// The config key, e.g. "imaps"; names the listener in logs and errors.
    pub name: &'static str,
    pub addrs: Vec<SocketAddr>,
    pub tls_mode: TlsMode,
    pub service: Arc<dyn Service>,
}

/// Why the listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("{service}: cannot listen on {addr}: {}", explain_bind_error(source))]
    Bind {
        service: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },

    #[error("{service}: uses {mode}, but no TLS certificate is loaded; set [tls] in tern.toml")]
    NoTlsConfig { service: &'static str, mode: TlsMode },
}

fn explain_bind_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            "address in use — another server is running there; stop it or use --port-offset".to_string()
        }
        io::ErrorKind::PermissionDenied => "permission denied — ports below 1024 need root or the \
             CAP_NET_BIND_SERVICE capability (setcap cap_net_bind_service=+ep on the tern binary)"
            .to_string(),
        io::ErrorKind::AddrNotAvailable => {
            "no such address on this machine — check the address in tern.toml's [listen]".to_string()
        }
        _ => e.to_string(),
    }
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Sessions that ended by themselves within the grace period.
    pub finished: usize,
    /// Sessions still running when the grace ran out, and cut.
    pub aborted: usize,
}

/// Every bound listener and every live session.
///
/// Dropping it without [`Listeners::shutdown`] aborts everything at once.
pub struct Listeners {
    bound: Vec<(&'static str, SocketAddr)>,
    accept_loops: JoinSet<()>,
    sessions: Arc<Mutex<JoinSet<()>>>,
    trigger: ShutdownTrigger,
}

impl Listeners {
    /// Binds every address of every spec, then starts accepting on all of
    /// them. If any address cannot be bound, none is kept and the error
    /// names the service and the address. Call inside a Tokio runtime.
    ///
    /// `tls` is needed when any spec is [`TlsMode::StartTls`] or
    /// [`TlsMode::Implicit`].
    pub async fn bind(
        specs: Vec<ListenerSpec>,
        tls: Option<Arc<ServerConfig>>,
        limits: Limits,
    ) -> Result<Listeners, ListenError> {
        // Bind everything before accepting anything: one failure drops the
        // sockets already bound (closing them) and nothing has started.
        let mut sockets_per_spec = Vec::with_capacity(specs.len());
        for spec in &specs {
            if spec.tls_mode != TlsMode::Plain && tls.is_none() {
                return Err(ListenError::NoTlsConfig {
                    service: spec.name,
                    mode: spec.tls_mode,
                });
            }
            let mut sockets = Vec::with_capacity(spec.addrs.len());
            for &addr in &spec.addrs {
                let bind_err = |source| ListenError::Bind {
                    service: spec.name,
                    addr,
                    source,
                };
                let std_listener = bind_socket(addr).map_err(bind_err)?;
                let listener = TcpListener::from_std(std_listener).map_err(bind_err)?;
                let local = listener.local_addr().map_err(bind_err)?;
                sockets.push((local, listener));
            }
            sockets_per_spec.push(sockets);
        }

        let (trigger, signal) = ShutdownSignal::channel();
        let sessions = Arc::new(Mutex::new(JoinSet::new()));
        let mut accept_loops = JoinSet::new();
        let mut bound = Vec::new();
        for (spec, sockets) in specs.into_iter().zip(sockets_per_spec) {
            let shared = Arc::new(ListenerShared {
                name: spec.name,
                tls_mode: spec.tls_mode,
                service: spec.service,
                tls: tls.clone(),
                limits,
                gate: Gate::default(),
                shutdown: signal.clone(),
            });
            for (local, listener) in sockets {
                info!(
                    listener = spec.name,
                    service = shared.service.name(),
                    addr = %local,
                    tls = %spec.tls_mode,
                    "listening"
                );
                bound.push((spec.name, local));
                accept_loops.spawn(accept_loop(listener, local, shared.clone(), sessions.clone()));
            }
        }
        Ok(Listeners {
            bound,
            accept_loops,
            sessions,
            trigger,
        })
    }

    /// Every bound (listener name, address), with the real port where the
    /// config asked for port 0.
    pub fn local_addrs(&self) -> &[(&'static str, SocketAddr)] {
        &self.bound
    }

    /// The first address `name` is bound to.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.bound.iter().find(|(n, _)| *n == name).map(|(_, addr)| *addr)
    }

    /// Sessions running now.
    pub fn live_sessions(&self) -> usize {
        let mut sessions = lock(&self.sessions);
        reap(&mut sessions);
        sessions.len()
    }

    /// Stops accepting at once (the listening sockets are closed before the
    /// wait begins, so new clients are refused), signals every session,
    /// waits up to `grace` for them to end, and aborts the rest.
    pub async fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        self.trigger.trigger();
        while let Some(result) = self.accept_loops.join_next().await {
            log_join_error(result, "accept loop");
        }
        // No accept loop is left to add sessions, so the set is final.
        let mut sessions = std::mem::take(&mut *lock(&self.sessions));
        reap(&mut sessions);
        let running = sessions.len();
        info!(sessions = running, grace_seconds = grace.as_secs_f64(), "shutting down");

        let mut finished = 0;
        let _ = tokio::time::timeout(grace, async {
            while let Some(result) = sessions.join_next().await {
                log_join_error(result, "session");
                finished += 1;
            }
        })
        .await;
        let aborted = sessions.len();
        if aborted > 0 {
            warn!(aborted, "grace period over; cutting the remaining sessions");
        }
        sessions.shutdown().await;
        ShutdownReport { finished, aborted }
    }
}

/// What the accept loop and the sessions of one listener share.
struct ListenerShared {
    name: &'static str,
    tls_mode: TlsMode,
    service: Arc<dyn Service>,
    tls: Option<Arc<ServerConfig>>,
    limits: Limits,
    gate: Gate,
    shutdown: ShutdownSignal,
}

/// Opens a listening socket. IPv6 sockets are IPV6_V6ONLY so "0.0.0.0:25"
/// and "[::]:25" can both be listed whatever the host's
/// net.ipv6.bindv6only; SO_REUSEADDR lets a restart bind while old
/// connections linger in TIME_WAIT, and on Unix it still refuses a second
/// listener on the same port, so conflicts are reported.
fn bind_socket(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    shared: Arc<ListenerShared>,
    sessions: Arc<Mutex<JoinSet<()>>>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = shared.shutdown.triggered() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => admit(&shared, &sessions, stream, peer, local),
            Err(e) => {
                // Mostly a client that gave up before we accepted; but out
                // of file descriptors (EMFILE) would fail at once again, so
                // pause rather than spin.
                warn!(listener = shared.name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    debug!(listener = shared.name, addr = %local, "stopped listening");
}

fn admit(
    shared: &Arc<ListenerShared>,
    sessions: &Mutex<JoinSet<()>>,
    stream: TcpStream,
    peer: SocketAddr,
    listen_addr: SocketAddr,
) {
    let permit = match shared.gate.admit(peer.ip(), &shared.limits) {
        Ok(permit) => permit,
        Err(limit) => {
            // Debug, not warn: a flood would otherwise flood the log too.
            debug!(listener = shared.name, %peer, "refused: {limit}");
            if shared.tls_mode != TlsMode::Implicit
                && let Some(reply) = shared.service.busy_reply()
            {
                // Best effort and non-blocking: a fresh socket's send buffer
                // takes a short line at once, and a refused client gets no
                // more of our time than that.
                let _ = stream.try_write(reply);
            }
            return;
        }
    };
    // Mail protocols are request/response; don't let Nagle hold replies.
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(listen_addr);
    let span = tracing::info_span!("session", listener = shared.name, %peer);
    let session = run_session(shared.clone(), stream, peer, local, permit).instrument(span);
    let mut sessions = lock(sessions);
    reap(&mut sessions);
    sessions.spawn(session);
}

async fn run_session(
    shared: Arc<ListenerShared>,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    permit: Permit,
) {
    // Held for the whole session: the slot frees when this task ends,
    // however it ends.
    let _permit = permit;
    let conn = match (shared.tls_mode, &shared.tls) {
        (TlsMode::Implicit, Some(config)) => {
            let handshake = TlsAcceptor::from(config.clone()).accept(stream);
            match tokio::time::timeout(shared.limits.tls_handshake_timeout, handshake).await {
                Ok(Ok(tls)) => Connection::Tls(Box::new(tls)),
                Ok(Err(e)) => {
                    debug!("TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    debug!("TLS handshake timed out");
                    return;
                }
            }
        }
        // `bind` refuses TLS modes without a config, so this arm is Plain
        // or StartTls.
        _ => Connection::Plain(stream),
    };
    debug!(tls = conn.is_tls(), "session started");
    let ctx = ConnContext {
        listener: shared.name,
        peer,
        local,
        tls_mode: shared.tls_mode,
        tls_active: conn.is_tls(),
        tls_config: shared.tls.clone(),
        tls_handshake_timeout: shared.limits.tls_handshake_timeout,
        shutdown: shared.shutdown.clone(),
    };
    shared.service.clone().handle(conn, ctx).await;
    debug!("session ended");
}

/// Counts live connections of one listener, in total and per client IP.
#[derive(Default)]
struct Gate {
    state: Arc<Mutex<GateState>>,
}

#[derive(Default)]
struct GateState {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Which limit refused a connection.
#[derive(Debug)]
enum LimitHit {
    Total(usize),
    PerIp(usize),
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitHit::Total(n) => write!(f, "{n} connections open (limits.max_connections)"),
            LimitHit::PerIp(n) => write!(
                f,
                "{n} connections open from this address (limits.max_connections_per_ip)"
            ),
        }
    }
}

impl Gate {
    fn admit(&self, ip: IpAddr, limits: &Limits) -> Result<Permit, LimitHit> {
        // An IPv4 client reaching an IPv6 socket appears as ::ffff:a.b.c.d;
        // count it as the IPv4 address it is.
        let ip = ip.to_canonical();
        let mut state = lock(&self.state);
        if state.total >= limits.max_connections {
            return Err(LimitHit::Total(state.total));
        }
        let from_ip = state.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= limits.max_connections_per_ip {
            return Err(LimitHit::PerIp(from_ip));
        }
        state.total += 1;
        state.per_ip.insert(ip, from_ip + 1);
        Ok(Permit {
            state: self.state.clone(),
            ip,
        })
    }
}

/// One admitted connection's place in its [`Gate`]; given back on drop.
struct Permit {
    state: Arc<Mutex<GateState>>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        state.total = state.total.saturating_sub(1);
        if let Some(n) = state.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Locks a mutex, carrying on past a poisoned one: the data guarded here
/// (counters, task sets) stays consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Drops finished sessions from the set, so it holds live ones only.
fn reap(sessions: &mut JoinSet<()>) {
    while let Some(result) = sessions.try_join_next() {
        log_join_error(result, "session");
    }
}

fn log_join_error(result: Result<(), JoinError>, what: &str) {
    if let Err(e) = result
        && e.is_panic()
    {
        error!("{what} panicked: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Instant;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    /// A line-echo service for tests. Greets with whether TLS is on; echoes
    /// each line; `quit` ends the session; `starttls` upgrades. When
    /// shutdown begins it announces so once and carries on serving, the
    /// way an SMTP session finishes its transaction before leaving.
    struct Echo;

    impl Service for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }

        fn busy_reply(&self) -> Option<&'static [u8]> {
            Some(b"busy\n")
        }

        fn handle(self: Arc<Self>, conn: Connection, ctx: ConnContext) -> BoxFuture<'static, ()> {
            Box::pin(async move {
                let _ = echo_session(conn, ctx).await;
            })
        }
    }

    async fn echo_session(conn: Connection, ctx: ConnContext) -> io::Result<()> {
        let mut conn = BufReader::new(conn);
        conn.get_mut()
            .write_all(format!("hello tls={}\n", ctx.tls_active).as_bytes())
            .await?;
        let mut announced = false;
        loop {
            let mut line = String::new();
            tokio::select! {
                () = ctx.shutdown.triggered(), if !announced => {
                    announced = true;
                    conn.get_mut().write_all(b"shutting down\n").await?;
                    continue;
                }
                n = conn.read_line(&mut line) => if n? == 0 { return Ok(()) },
            }
            match line.trim_end() {
                "quit" => {
                    conn.get_mut().write_all(b"bye\n").await?;
                    return Ok(());
                }
                "starttls" => {
                    // into_inner drops anything pipelined after the command
                    // (RFC 3207 §5).
                    let mut plain = conn.into_inner();
                    plain.write_all(b"go\n").await?;
                    let config = ctx.tls_config.clone().ok_or(io::ErrorKind::Unsupported)?;
                    let tls = plain.start_tls(config, ctx.tls_handshake_timeout).await?;
                    conn = BufReader::new(tls);
                    conn.get_mut().write_all(b"hello tls=true\n").await?;
                }
                other => conn.get_mut().write_all(format!("{other}\n").as_bytes()).await?,
            }
        }
    }

    fn spec(name: &'static str, tls_mode: TlsMode) -> ListenerSpec {
        ListenerSpec {
            name,
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            tls_mode,
            service: Arc::new(Echo),
        }
    }

    fn limits(max_connections: usize, max_connections_per_ip: usize) -> Limits {
        Limits {
            max_connections,
            max_connections_per_ip,
            tls_handshake_timeout: Duration::from_secs(5),
        }
    }

    /// A self-signed pair in a temporary folder, and the server config.
    fn tls_pair() -> (tempfile::TempDir, PathBuf, Arc<ServerConfig>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        crate::tls::generate_self_signed("mail.example.test", &cert, &key).expect("generate");
        let config = crate::tls::load_server_config(&cert, &key).expect("load");
        (dir, cert, config)
    }

    fn client_connector(cert: &std::path::Path) -> tokio_rustls::TlsConnector {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_file_iter(cert).expect("open") {
            roots.add(c.expect("cert")).expect("add");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// Reads one line (without the newline); "" at end of stream.
    async fn read_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> String {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
            .await
            .expect("line in time")
            .expect("read");
        line.trim_end().to_string()
    }

    async fn say<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut BufReader<S>, line: &str) -> String {
        conn.get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write");
        read_line(conn).await
    }

    async fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
        BufReader::new(TcpStream::connect(addr).await.expect("connect"))
    }

    #[tokio::test]
    async fn plain_round_trip() {
        let listeners = Listeners::bind(vec![spec("http", TlsMode::Plain)], None, Limits::default())
            .await
            .expect("bind");
        let addr = listeners.local_addr("http").expect("bound");
        assert_ne!(addr.port(), 0, "the real port is reported");
        let mut conn = connect(addr).await;
        assert_eq!(read_line(&mut conn).await, "hello tls=false");
        assert_eq!(say(&mut conn, "ping").await, "ping");
        assert_eq!(say(&mut conn, "quit").await, "bye");
        let report = listeners.shutdown(Duration::from_secs(5)).await;
        assert_eq!(report.aborted, 0);
    }

    #[tokio::test]
    async fn implicit_tls_round_trip() {
        let (_dir, cert, server_config) = tls_pair();
        let listeners = Listeners::bind(
            vec![spec("imaps", TlsMode::Implicit)],
            Some(server_config),
            Limits::default(),
        )
        .await
        .expect("bind");
        let addr = listeners.local_addr("imaps").expect("bound");
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = rustls_pki_types::ServerName::try_from("mail.example.test").expect("name");
        let tls = client_connector(&cert).connect(name, tcp).await.expect("handshake");
        let mut conn = BufReader::new(tls);
        assert_eq!(read_line(&mut conn).await, "hello tls=true");
        assert_eq!(say(&mut conn, "over tls").await, "over tls");
        assert_eq!(say(&mut conn, "quit").await, "bye");
        let report = listeners.shutdown(Duration::from_secs(5)).await;
        assert_eq!(report.aborted, 0);
    }

    #[tokio::test]
    async fn starttls_upgrade() {
        let (_dir, cert, server_config) = tls_pair();
        let listeners = Listeners::bind(
            vec![spec("imap", TlsMode::StartTls)],
            Some(server_config),
            Limits::default(),
        )
        .await
        .expect("bind");
        let addr = listeners.local_addr("imap").expect("bound");
        let mut plain = connect(addr).await;
        assert_eq!(read_line(&mut plain).await, "hello tls=false");
        assert_eq!(say(&mut plain, "starttls").await, "go");
        assert!(plain.buffer().is_empty());
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let tls = client_connector(&cert)
            .connect(name, plain.into_inner())
            .await
            .expect("handshake");
        let mut conn = BufReader::new(tls);
        assert_eq!(read_line(&mut conn).await, "hello tls=true");
        assert_eq!(say(&mut conn, "secret").await, "secret");
        assert_eq!(say(&mut conn, "quit").await, "bye");
        let report = listeners.shutdown(Duration::from_secs(5)).await;
        assert_eq!(report.aborted, 0);
    }

    #[tokio::test]
    async fn silent_client_cannot_hold_an_implicit_tls_slot() {
        let (_dir, _cert, server_config) = tls_pair();
        let mut limits = limits(10, 1);
        limits.tls_handshake_timeout = Duration::from_millis(200);
        let listeners = Listeners::bind(vec![spec("pop3s", TlsMode::Implicit)], Some(server_config), limits)
            .await
            .expect("bind");
        let addr = listeners.local_addr("pop3s").expect("bound");
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "the server closes a connection that never starts TLS");
        listeners.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn per_ip_limit_refuses_extra_connections_until_one_closes() {
        let listeners = Listeners::bind(
            vec![spec("smtp", TlsMode::StartTls)],
            Some(tls_pair().2),
            limits(100, 2),
        )
        .await
        .expect("bind");
        let addr = listeners.local_addr("smtp").expect("bound");
        let mut first = connect(addr).await;
        assert_eq!(read_line(&mut first).await, "hello tls=false");
        let mut second = connect(addr).await;
        assert_eq!(read_line(&mut second).await, "hello tls=false");

        // The third gets the service's busy line, then the end of the stream.
        let mut third = connect(addr).await;
        assert_eq!(read_line(&mut third).await, "busy");
        assert_eq!(read_line(&mut third).await, "");

        // Once one session ends its slot is free again.
        assert_eq!(say(&mut first, "quit").await, "bye");
        drop(first);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut again = connect(addr).await;
            match read_line(&mut again).await.as_str() {
                "hello tls=false" => break,
                "busy" if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
                other => panic!("unexpected {other:?}"),
            }
        }
        drop(second);
        listeners.shutdown(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn total_limit_refuses_extra_connections() {
        let listeners = Listeners::bind(vec![spec("http", TlsMode::Plain)], None, limits(1, 50))
            .await
            .expect("bind");
        let addr = listeners.local_addr("http").expect("bound");
        let mut first = connect(addr).await;
        assert_eq!(read_line(&mut first).await, "hello tls=false");
        let mut second = connect(addr).await;
        assert_eq!(read_line(&mut second).await, "busy");
        assert_eq!(listeners.live_sessions(), 1);
        listeners.shutdown(Duration::from_millis(10)).await;
    }

    #[tokio::test]
    async fn graceful_shutdown_lets_a_session_finish_and_refuses_new_ones() {
        let listeners = Listeners::bind(vec![spec("imap", TlsMode::Plain)], None, Limits::default())
            .await
            .expect("bind");
        let addr = listeners.local_addr("imap").expect("bound");
        let mut session = connect(addr).await;
        assert_eq!(read_line(&mut session).await, "hello tls=false");
        assert_eq!(say(&mut session, "before").await, "before");

        let started = Instant::now();
        let shutdown = tokio::spawn(listeners.shutdown(Duration::from_secs(30)));
        assert_eq!(read_line(&mut session).await, "shutting down", "the session is told");

        // New connections are refused. The listening socket closes just
        // after the signal, so allow a moment for it.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpStream::connect(addr).await {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
                _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
                other => panic!("still accepting after shutdown: {other:?}"),
            }
        }

        // The session in flight is still served, and ends on its own.
        assert_eq!(say(&mut session, "after").await, "after");
        assert_eq!(say(&mut session, "quit").await, "bye");
        let report = shutdown.await.expect("shutdown task");
        assert_eq!(
            report,
            ShutdownReport {
                finished: 1,
                aborted: 0
            }
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not wait out the grace"
        );
    }

    #[tokio::test]
    async fn sessions_still_running_after_the_grace_are_cut() {
        let listeners = Listeners::bind(vec![spec("pop3", TlsMode::Plain)], None, Limits::default())
            .await
            .expect("bind");
        let addr = listeners.local_addr("pop3").expect("bound");
        let mut stubborn = connect(addr).await;
        assert_eq!(read_line(&mut stubborn).await, "hello tls=false");

        let report = listeners.shutdown(Duration::from_millis(200)).await;
        assert_eq!(
            report,
            ShutdownReport {
                finished: 0,
                aborted: 1
            }
        );
        assert_eq!(read_line(&mut stubborn).await, "shutting down");
        assert_eq!(read_line(&mut stubborn).await, "", "the connection is closed");
    }

    #[tokio::test]
    async fn bind_conflict_names_the_service_and_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let mut conflicting = spec("imap", TlsMode::Plain);
        conflicting.addrs = vec![addr];
        let specs = vec![spec("http", TlsMode::Plain), conflicting];
        let err = Listeners::bind(specs, None, Limits::default())
            .await
            .err()
            .expect("conflict");
        assert_eq!(
            err.to_string(),
            format!(
                "imap: cannot listen on {addr}: address in use — another server is running there; \
                 stop it or use --port-offset"
            )
        );
    }

    #[tokio::test]
    async fn tls_listener_without_certificate_is_refused() {
        let err = Listeners::bind(vec![spec("submissions", TlsMode::Implicit)], None, Limits::default())
            .await
            .err()
            .expect("no tls");
        assert!(
            err.to_string()
                .starts_with("submissions: uses implicit TLS, but no TLS certificate"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn ipv4_and_ipv6_wildcards_share_a_port() {
        // Find a port free on both families, then bind both wildcards on it.
        let Ok(v6) = bind_socket("[::1]:0".parse().expect("addr")) else {
            return; // No IPv6 on this machine.
        };
        let port = v6.local_addr().expect("addr").port();
        drop(v6);
        let mut both = spec("smtp", TlsMode::Plain);
        both.addrs = vec![
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port)),
        ];
        let listeners = Listeners::bind(vec![both], None, Limits::default())
            .await
            .expect("both bind");
        assert_eq!(listeners.local_addrs().len(), 2);
        for (_, addr) in listeners.local_addrs() {
            let mut conn = connect(*addr).await;
            assert_eq!(read_line(&mut conn).await, "hello tls=false");
        }
        listeners.shutdown(Duration::from_millis(10)).await;
    }

    #[tokio::test]
    async fn shutdown_signals_resolve_on_sigterm() {
        // Catch SIGTERM in this process before sending it, so it can never
        // take the test binary down, whatever the scheduling.
        let mut guard = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install");
        let mut signals = ShutdownSignals::install();
        let waiter = tokio::spawn(async move { signals.recv().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("resolved")
            .expect("task");
        let _ = guard.recv().await;
    }
}

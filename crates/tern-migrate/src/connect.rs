//! Reaching a source: TCP, then TLS (implicit, or after STARTTLS/STLS, which the
//! protocol modules negotiate), verified against the system's CAs plus an optional
//! private CA file. rustls with the ring provider, as everywhere in Tern.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::MigrateError;
use crate::source::SourceSettings;

/// How long connecting (TCP and TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to a source, plain or TLS.
#[derive(Debug)]
pub enum SourceStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for SourceStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SourceStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            SourceStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SourceStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            SourceStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            SourceStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SourceStream::Plain(s) => Pin::new(s).poll_flush(cx),
            SourceStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SourceStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            SourceStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Opens the TCP connection.
pub async fn tcp(settings: &SourceSettings) -> Result<TcpStream, MigrateError> {
    let addr = (settings.host.as_str(), settings.port);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| MigrateError::Connect {
            host: settings.host.clone(),
            port: settings.port,
            reason: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        })?
        .map_err(|e| MigrateError::Connect {
            host: settings.host.clone(),
            port: settings.port,
            reason: e.to_string(),
        })?;
    // Small commands (FETCH, STATUS) must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Wraps a TCP connection in TLS, verifying the server's certificate and name.
pub async fn tls(settings: &SourceSettings, tcp: TcpStream) -> Result<SourceStream, MigrateError> {
    let connector = TlsConnector::from(client_config(settings)?);
    let host = settings.host.trim_start_matches('[').trim_end_matches(']').to_string();
    let name = ServerName::try_from(host.clone()).map_err(|_| MigrateError::Tls {
        host: host.clone(),
        reason: "not a valid host name for TLS".into(),
    })?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| MigrateError::Tls {
            host: host.clone(),
            reason: "the TLS handshake did not finish in time".into(),
        })?
        .map_err(|e| MigrateError::Tls {
            host: host.clone(),
            reason: format!("{e}; if the server uses a private CA, pass its certificate with --ca-file"),
        })?;
    Ok(SourceStream::Tls(Box::new(stream)))
}

/// rustls verifying against the system's CAs and the source's `ca_file`.
pub fn client_config(settings: &SourceSettings) -> Result<Arc<rustls::ClientConfig>, MigrateError> {
    let extra: Vec<String> = settings.ca_file.iter().cloned().collect();
    tern_net::tls::client_config(&extra).map_err(|reason| MigrateError::Tls {
        host: settings.host.clone(),
        reason,
    })
}

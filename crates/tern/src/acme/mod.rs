//! The TLS certificate from an ACME CA (RFC 8555; Let's Encrypt by default), kept
//! renewed while Tern runs.
//!
//! `tern serve` runs [`AcmeTask`] when `[acme] enabled`: at start and then twice a day
//! it looks at the certificate the listeners present and orders a new one when there
//! is none, when it is self-signed, when it lacks a name it should carry, or when it
//! expires within `renew_before_days`. It asks for this host's name and, for every
//! hosted domain, `autoconfig.`, `autodiscover.` and `mta-sts.` names, each only if
//! its DNS points at the same addresses as the host name (a name that does not would
//! fail the whole order; it is logged and left out). Challenges are HTTP-01 (RFC 8555
//! §8.3), answered by the web listeners from [`Http01Challenges`]. The new certificate
//! (with a new key each time) is written over `[tls]`'s files and swapped into every
//! listener through their shared [`SwappableCertificate`]; no restart. A failure is
//! retried later with a growing delay and never touches the certificate in use.
//!
//! What it keeps in `DATA/acme/` (mode 0700):
//! - `account.json` (0600): the ACME account's key and URL. Never logged.
//! - `status.json`: what the last checks found (names wanted and left out, the last
//!   error, the next check), read by `tern cert status`.
//! - `renew-request`: written by `tern cert renew`, taken by the running server,
//!   which orders at once and records the request's id in `status.json` when done.
//!
//! One module per part: `files` (the data folder), `certificate` (inspection, trust,
//! renewal reasons), `names` (what to order), `client` (HTTP to the CA, published
//! challenges) and `task` (the background task).
//!
//! This sits in the binary's library beside `server` because it ties four parts
//! together (the store's domains, DNS, the web face's challenge map and tern-net's
//! listeners), none of which needs to know about the others.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, HttpClient,
    Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tern_dns::resolve::{Answer, Lookup};
use tern_net::tls::{self, SwappableCertificate, TlsError};
use tern_store::Store;
use tern_web::acme::{CertificateTrust, Http01Challenges};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{AcmeSection, Config};

mod certificate;
mod client;
mod files;
mod names;
mod task;
#[cfg(test)]
mod tests;

pub use certificate::*;
use client::*;
pub use files::*;
pub use names::*;
pub use task::*;

/// How often the certificate is looked at: twice a day.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(12 * 3600);
/// The first retry after a failure; each further failure doubles it, up to
/// [`CHECK_INTERVAL`]. Let's Encrypt allows 5 failed validations per name per hour.
const FIRST_RETRY: Duration = Duration::from_secs(5 * 60);
/// How often the running server looks for `tern cert renew`'s request.
const REQUEST_POLL: Duration = Duration::from_secs(1);
/// One HTTP exchange with the CA.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole order, from placing it to the certificate.
const ORDER_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The most names one certificate may carry (Let's Encrypt's limit).
pub const MAX_NAMES: usize = 100;
/// The per-domain names clients and other servers look up (autoconfig for Thunderbird,
/// autodiscover for Outlook, mta-sts for sending servers, RFC 8461 §3.3).
pub const DOMAIN_NAME_PREFIXES: [&str; 3] = ["autoconfig", "autodiscover", "mta-sts"];

/// What went wrong getting or keeping a certificate. Each message says what to look at.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("the ACME server ({directory}) {doing}: {source}")]
    Server {
        directory: String,
        doing: &'static str,
        source: instant_acme::Error,
    },
    #[error(
        "the CA could not validate {0}; check that each name's A/AAAA records point at this server and that port 80 reaches Tern's http listener"
    )]
    Validation(String),
    #[error("the CA offered no http-01 challenge for {0}")]
    NoHttp01(String),
    #[error("the authorization for {name} is {status}")]
    Authorization { name: String, status: String },
    #[error("the CA took longer than {} minutes over the order", ORDER_TIMEOUT.as_secs() / 60)]
    Timeout,
    #[error("the issued certificate lacks {0}")]
    Incomplete(String),
    #[error("cannot make the certificate request: {0}")]
    Csr(#[from] rcgen::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot read the certificate: {0}")]
    Certificate(String),
    #[error("cannot set up the connection to the ACME server: {0}")]
    Client(String),
    #[error("cannot list the hosted domains: {0}")]
    Store(#[from] tern_store::StoreError),
    #[error("{path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("{path} is damaged ({source}); delete it to start afresh")]
    Damaged { path: PathBuf, source: serde_json::Error },
}

impl AcmeError {
    fn server(directory: &str, doing: &'static str) -> impl FnOnce(instant_acme::Error) -> AcmeError {
        let directory = directory.to_string();
        move |source| AcmeError::Server {
            directory,
            doing,
            source,
        }
    }
}

//! Step 3: the TLS handshake on each port (after STARTTLS where the port starts
//! plain) and the certificate it shows, judged with each problem named apart.

use super::*;

/// Step 3: the TLS handshake on a connected port, and the certificate it showed.
/// Returns the finding and whether the certificate verified.
pub(super) async fn check_tls(
    endpoint: Endpoint,
    stream: TcpStream,
    server_name: &ServerName<'static>,
    roots: &RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> (Finding, bool) {
    let name = endpoint_name(endpoint);
    let recorder = Arc::new(Recorder {
        provider: provider.clone(),
        chain: Mutex::new(Vec::new()),
    });
    let config =
        match rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions() {
            Ok(builder) => builder
                .dangerous()
                .with_custom_certificate_verifier(recorder.clone())
                .with_no_client_auth(),
            Err(e) => {
                return (
                    Finding::new(Status::Error, Check::Tls, name, format!("cannot set up TLS here: {e}")).at(endpoint),
                    false,
                );
            }
        };
    let connector = TlsConnector::from(Arc::new(config));
    let handshake = async {
        let stream = match endpoint.security {
            Security::Tls => stream,
            Security::StartTls => starttls(endpoint.protocol, stream).await?,
        };
        let mut tls = connector
            .connect(server_name.clone(), stream)
            .await
            .map_err(|e| format!("the TLS handshake failed: {e}"))?;
        let version = match tls.get_ref().1.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
            _ => "TLS",
        };
        // On an implicit-TLS port the server speaks first: its greeting shows that the
        // right service sits behind the TLS.
        if endpoint.security == Security::Tls {
            let mut conn = Conn::new(&mut tls);
            expect_greeting(endpoint.protocol, &mut conn).await?;
        }
        let _ = tls.shutdown().await;
        Ok::<_, String>(version)
    };
    let version = match tokio::time::timeout(DIALOGUE_TIMEOUT, handshake).await {
        Ok(Ok(version)) => version,
        Ok(Err(why)) => {
            let advice = match endpoint.security {
                Security::Tls => format!(
                    "Port {} must speak TLS from the first byte (RFC 8314): check that [listen] puts it under \
                     the implicit-TLS service (imaps, pop3s, submissions) and that tern serve started with a \
                     certificate.",
                    endpoint.port
                ),
                Security::StartTls => format!(
                    "Port {} must offer STARTTLS: check that [listen] puts it under the STARTTLS service (imap, \
                     pop3, submission) and that tern serve started with a certificate.",
                    endpoint.port
                ),
            };
            return (
                Finding::new(Status::Error, Check::Tls, name, why)
                    .advice(advice)
                    .at(endpoint),
                false,
            );
        }
        Err(_) => {
            return (
                Finding::new(
                    Status::Error,
                    Check::Tls,
                    name,
                    format!("no TLS within {} s", DIALOGUE_TIMEOUT.as_secs()),
                )
                .advice("Check that the service on this port is Tern's and that the server is not overloaded.")
                .at(endpoint),
                false,
            );
        }
    };
    let chain = std::mem::take(&mut *recorder.chain.lock().unwrap_or_else(PoisonError::into_inner));
    let verdict = judge(&chain, server_name, roots, provider, unix_now());
    let (status, detail, advice) = verdict.finding(version);
    let mut finding = Finding::new(status, Check::Tls, name, detail).at(endpoint);
    finding.advice = advice;
    (finding, verdict.problems.is_empty())
}

/// Seconds since 1970 now.
pub(super) fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Accepts any certificate but keeps the chain it was shown, for [`judge`]. Handshake
/// signatures are still checked, so the chain judged is the one whose key is in use.
#[derive(Debug)]
pub(super) struct Recorder {
    provider: Arc<CryptoProvider>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.chain.lock().unwrap_or_else(PoisonError::into_inner) = chain;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// What is wrong with a certificate, each problem on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertProblem {
    /// Past its notAfter (a Unix time).
    Expired { not_after: i64 },
    /// Before its notBefore.
    NotYetValid { not_before: i64 },
    /// Not issued for the host name; the names it has.
    WrongName { names: Vec<String> },
    /// Signed by itself, and not trusted as such.
    SelfSigned,
    /// Issued by a CA that is not trusted here.
    UntrustedIssuer { issuer: String },
    /// Anything else the verifier refused, or a certificate that cannot be read.
    Other(String),
}

/// A certificate as judged.
#[derive(Debug, Clone)]
pub struct CertVerdict {
    /// The DNS names and IP addresses it is for.
    pub names: Vec<String>,
    /// Who issued it (the issuer's common name, or the whole name).
    pub issuer: String,
    pub not_before: i64,
    pub not_after: i64,
    /// Empty when the certificate verifies.
    pub problems: Vec<CertProblem>,
    now: i64,
}

impl CertVerdict {
    /// Whole days until it expires (negative once expired).
    pub fn days_left(&self) -> i64 {
        (self.not_after - self.now).div_euclid(86_400)
    }

    /// The finding's status, detail and advice.
    pub(super) fn finding(&self, version: &str) -> (Status, String, Option<String>) {
        let names = if self.names.is_empty() {
            "no names".to_string()
        } else {
            self.names.join(", ")
        };
        let about = format!(
            "certificate for {names}, issued by {}, valid until {}",
            self.issuer,
            date(self.not_after)
        );
        if self.problems.is_empty() {
            let days = self.days_left();
            if days < EXPIRY_WARNING_DAYS {
                return (
                    Status::Warning,
                    format!("{version}; {about}: expires in {days} days"),
                    Some(
                        "Renew the certificate now (and check that its automatic renewal works), then restart \
                         tern serve or let it reload the files."
                            .into(),
                    ),
                );
            }
            return (Status::Ok, format!("{version}; {about}"), None);
        }
        let mut seen = Vec::new();
        let mut todo = Vec::new();
        for problem in &self.problems {
            match problem {
                CertProblem::Expired { not_after } => {
                    seen.push(format!("EXPIRED on {}", date(*not_after)));
                    todo.push("Renew the certificate and restart tern serve.".to_string());
                }
                CertProblem::NotYetValid { not_before } => {
                    seen.push(format!("NOT YET VALID: only from {}", date(*not_before)));
                    todo.push(
                        "Check the server's clock (and the clock of the machine that issued the certificate)."
                            .to_string(),
                    );
                }
                CertProblem::WrongName { names } => {
                    let names = if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    };
                    seen.push(format!("WRONG NAME: it names {names}, not the server's name"));
                    todo.push(
                        "Get a certificate that includes the server's host name (the hostname of tern.toml), or \
                         tell clients the name the certificate has."
                            .to_string(),
                    );
                }
                CertProblem::SelfSigned => {
                    seen.push("SELF-SIGNED: no client trusts it unless told to".to_string());
                    todo.push(
                        "Get a certificate from a public CA (e.g. Let's Encrypt) for the server's host name; a \
                         self-signed one makes every client warn or refuse."
                            .to_string(),
                    );
                }
                CertProblem::UntrustedIssuer { issuer } => {
                    seen.push(format!("UNTRUSTED ISSUER: {issuer} is not a CA trusted here"));
                    todo.push(
                        "Install the full chain (the certificate followed by its intermediates) in the \
                         certificate file; for a private CA, every client must trust that CA (check with \
                         --ca-file CA.pem)."
                            .to_string(),
                    );
                }
                CertProblem::Other(why) => {
                    seen.push(why.clone());
                    todo.push("Replace the certificate with one from a public CA for the server's name.".to_string());
                }
            }
        }
        todo.dedup();
        (
            Status::Error,
            format!("{version}; {about}: {}", seen.join("; ")),
            Some(todo.join(" ")),
        )
    }
}

/// Judges a chain as a client would for `server_name` at time `now`, naming each
/// problem: validity dates and names are read from the leaf itself, and whether it
/// chains to a trusted CA is asked at a moment inside its validity, so an expired
/// certificate from an unknown CA reports both.
pub fn judge(
    chain: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    roots: &RootCertStore,
    provider: &CryptoProvider,
    now: i64,
) -> CertVerdict {
    let mut verdict = CertVerdict {
        names: Vec::new(),
        issuer: "an unknown issuer".into(),
        not_before: 0,
        not_after: 0,
        problems: Vec::new(),
        now,
    };
    let Some(leaf) = chain.first() else {
        verdict
            .problems
            .push(CertProblem::Other("the server sent no certificate".into()));
        return verdict;
    };
    let self_signed = match x509_parser::parse_x509_certificate(leaf.as_ref()) {
        Ok((_, cert)) => {
            verdict.not_before = cert.validity().not_before.timestamp();
            verdict.not_after = cert.validity().not_after.timestamp();
            verdict.issuer = common_name(cert.issuer()).unwrap_or_else(|| cert.issuer().to_string());
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for name in &san.value.general_names {
                    match name {
                        x509_parser::extensions::GeneralName::DNSName(n) => verdict.names.push(n.to_string()),
                        x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                            if let Some(ip) = ip_from_bytes(bytes) {
                                verdict.names.push(ip.to_string());
                            }
                        }
                        _ => {}
                    }
                }
            }
            if verdict.names.is_empty()
                && let Some(cn) = common_name(cert.subject())
            {
                // Clients ignore the common name (RFC 6125 §6.4.4), but it says what was meant.
                verdict.names.push(format!("{cn} (common name only)"));
            }
            cert.issuer().as_raw() == cert.subject().as_raw()
        }
        Err(e) => {
            verdict
                .problems
                .push(CertProblem::Other(format!("the certificate cannot be read: {e}")));
            return verdict;
        }
    };
    let time_ok = if now < verdict.not_before {
        verdict.problems.push(CertProblem::NotYetValid {
            not_before: verdict.not_before,
        });
        false
    } else if now > verdict.not_after {
        verdict.problems.push(CertProblem::Expired {
            not_after: verdict.not_after,
        });
        false
    } else {
        true
    };
    let parsed = match ParsedCertificate::try_from(leaf) {
        Ok(parsed) => parsed,
        Err(e) => {
            verdict
                .problems
                .push(CertProblem::Other(format!("the certificate cannot be used: {e}")));
            return verdict;
        }
    };
    let at = if time_ok {
        now
    } else {
        verdict.not_before + (verdict.not_after - verdict.not_before) / 2
    };
    let at = UnixTime::since_unix_epoch(Duration::from_secs(at.max(0) as u64));
    if let Err(e) = rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        &chain[1..],
        at,
        provider.signature_verification_algorithms.all,
    ) {
        verdict.problems.push(match e {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) if self_signed => {
                CertProblem::SelfSigned
            }
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => CertProblem::UntrustedIssuer {
                issuer: verdict.issuer.clone(),
            },
            rustls::Error::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            ) => CertProblem::Other("an intermediate certificate of the chain is outside its validity dates".into()),
            other => CertProblem::Other(format!("the certificate does not verify: {other}")),
        });
    }
    if let Err(e) = rustls::client::verify_server_name(&parsed, server_name) {
        verdict.problems.push(match e {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => CertProblem::WrongName {
                names: verdict.names.clone(),
            },
            other => CertProblem::Other(format!("the certificate's names cannot be checked: {other}")),
        });
    }
    verdict
}

pub(super) fn common_name(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

pub(super) fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// "2027-03-01 12:00 UTC".
pub(super) fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}

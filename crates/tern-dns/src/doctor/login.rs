//! Step 4: with the password, a login over IMAP, POP3 and SMTP submission on each
//! protocol's best port whose certificate verified; server text redacted.

use super::*;

/// What a refused login means.
pub(super) enum Refusal {
    /// Wrong password, unknown or disabled account.
    Credentials(String),
    /// The server refuses for now (too many failures, store unavailable).
    Temporary(String),
    /// Anything else: the dialogue broke.
    Broken(String),
}

/// Step 4: one login, on a connection that verifies the certificate.
pub(super) async fn login(
    endpoint: Endpoint,
    ip: IpAddr,
    server_name: &ServerName<'static>,
    tls: &TlsConnector,
    user: &str,
    password: &Password,
) -> Finding {
    let name = format!("{} {}", endpoint.protocol.label(), endpoint.port);
    let attempt = async {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(SocketAddr::new(ip, endpoint.port)))
            .await
            .map_err(|_| Refusal::Broken("no answer to connect".into()))?
            .map_err(|e| Refusal::Broken(format!("cannot connect: {e}")))?;
        let me = ehlo_name(&tcp);
        let (tcp, greeting) = match endpoint.security {
            Security::Tls => (tcp, None),
            Security::StartTls => {
                let mut conn = Conn::new(tcp);
                // POP3's greeting is read again by async-pop below.
                let greeting = expect_greeting(endpoint.protocol, &mut conn)
                    .await
                    .map_err(Refusal::Broken)?;
                upgrade(endpoint.protocol, &mut conn, &me)
                    .await
                    .map_err(Refusal::Broken)?;
                (conn.into_inner().map_err(Refusal::Broken)?, Some(greeting))
            }
        };
        let stream = tls
            .connect(server_name.clone(), tcp)
            .await
            .map_err(|e| Refusal::Broken(format!("TLS failed: {e}")))?;
        match endpoint.protocol {
            Protocol::Imap => imap_login(stream, greeting.is_none(), user, password).await,
            Protocol::Pop3 => pop3_login(stream, greeting, user, password).await,
            Protocol::Submission => smtp_login(stream, greeting.is_none(), &me, user, password).await,
        }
    };
    let result = match tokio::time::timeout(DIALOGUE_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Refusal::Broken(format!(
            "no answer within {} s",
            DIALOGUE_TIMEOUT.as_secs()
        ))),
    };
    let finding = match result {
        Ok(()) => Finding::new(
            Status::Ok,
            Check::Login,
            name,
            format!("logged in as {user} on {}", endpoint_name(endpoint)),
        ),
        Err(Refusal::Credentials(said)) => Finding::new(
            Status::Error,
            Check::Login,
            name,
            format!(
                "refused: wrong password or disabled account (the server said: {})",
                redact(&said, password)
            ),
        )
        .advice(format!(
            "Check the password the client uses; to set a new one: `tern user passwd {user}`; to see whether the \
             account is enabled: `tern user list`."
        )),
        Err(Refusal::Temporary(said)) => Finding::new(
            Status::Error,
            Check::Login,
            name,
            format!("the server refuses logins for now: {}", redact(&said, password)),
        )
        .advice(
            "Too many failed logins from this address or on this account lock logins for up to 15 minutes; \
             stop the client that keeps trying a wrong password, wait, and check again.",
        ),
        Err(Refusal::Broken(why)) => Finding::new(
            Status::Error,
            Check::Login,
            name,
            format!("the login could not be tried: {}", redact(&why, password)),
        )
        .advice("Look at the server's log at the time of this check for the reason."),
    };
    finding.at(endpoint)
}

/// Classifies a refusal by the server's words: a throttled or unavailable server says so
/// (Tern: `[UNAVAILABLE]` in IMAP, `[SYS/TEMP]` in POP3 (RFC 3206 §4), "too many failed
/// logins" in all three).
pub(super) fn refusal(text: String) -> Refusal {
    let lower = text.to_ascii_lowercase();
    if lower.contains("too many") || lower.contains("[unavailable]") || lower.contains("[sys/temp]") {
        Refusal::Temporary(text)
    } else {
        Refusal::Credentials(text)
    }
}

pub(super) async fn imap_login<S>(
    stream: S,
    read_greeting: bool,
    user: &str,
    password: &Password,
) -> Result<(), Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin + fmt::Debug + Send,
{
    let mut client = async_imap::Client::new(stream);
    if read_greeting {
        match client.read_response().await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(Refusal::Broken("the server closed the connection".into())),
            Err(e) => return Err(Refusal::Broken(e.to_string())),
        }
    }
    // RFC 9051 §6.2.3 LOGIN; after STARTTLS no greeting comes (§6.2.1).
    match client.login(user, password.expose()).await {
        Ok(mut session) => {
            let _ = session.logout().await;
            Ok(())
        }
        Err((async_imap::error::Error::No(text), _)) => Err(refusal(text)),
        Err((async_imap::error::Error::Bad(text), _)) => Err(Refusal::Broken(format!("LOGIN refused: {text}"))),
        Err((e, _)) => Err(Refusal::Broken(e.to_string())),
    }
}

pub(super) async fn pop3_login<S>(
    stream: S,
    greeting: Option<String>,
    user: &str,
    password: &Password,
) -> Result<(), Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // async-pop starts by reading a greeting; after STLS (RFC 2595 §4) none comes, so the
    // one read before it is given again.
    let stream = Replayed::new(
        greeting.map(|g| format!("{g}\r\n").into_bytes()).unwrap_or_default(),
        stream,
    );
    let mut client = async_pop::new(stream)
        .await
        .map_err(|e| Refusal::Broken(e.message().to_string()))?;
    // AUTH PLAIN (RFC 5034 §4) when offered, else USER/PASS (RFC 1939 §7). Chosen here,
    // because async-pop's login() falls back from one to the other and a wrong
    // password would count twice against the account's limit.
    let result = if client.has_auth_mechanism("PLAIN") {
        client
            .auth(async_pop::sasl::PlainAuthenticator::new(user, password.expose()))
            .await
            .map(|_| ())
    } else {
        client.login(user, password.expose()).await.map(|_| ())
    };
    match result {
        Ok(()) => {
            let _ = client.quit().await;
            Ok(())
        }
        Err(e) => match e.kind() {
            async_pop::error::ErrorKind::ServerError(text) => Err(refusal(text.clone())),
            _ => Err(Refusal::Broken(e.message().to_string())),
        },
    }
}

pub(super) async fn smtp_login<S>(
    stream: S,
    read_greeting: bool,
    me: &str,
    user: &str,
    password: &Password,
) -> Result<(), Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Conn::new(stream);
    if read_greeting {
        expect_greeting(Protocol::Submission, &mut conn)
            .await
            .map_err(Refusal::Broken)?;
    }
    // RFC 3207 §4.2: after STARTTLS the client forgets what it knew and says EHLO again.
    let keywords = smtp_ehlo(&mut conn, me).await.map_err(Refusal::Broken)?;
    let plain = keywords.iter().any(|k| {
        let mut words = k.split_whitespace();
        words.next() == Some("AUTH") && words.any(|m| m == "PLAIN")
    });
    if !plain {
        return Err(Refusal::Broken(
            "the server does not offer AUTH PLAIN on this port (RFC 4954)".into(),
        ));
    }
    // RFC 4954 §4 with an initial response; RFC 4616 §2: authzid NUL authcid NUL passwd.
    let blob = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{}", password.expose()));
    conn.send(&format!("AUTH PLAIN {blob}"))
        .await
        .map_err(Refusal::Broken)?;
    let (code, text) = conn.smtp_reply().await.map_err(Refusal::Broken)?;
    let said = format!("{code} {}", text.join(" "));
    let outcome = match code {
        235 => Ok(()),
        // RFC 4954 §6: 535 credentials invalid; 454 temporary failure.
        535 => Err(Refusal::Credentials(said)),
        400..=499 => Err(Refusal::Temporary(said)),
        _ => Err(Refusal::Broken(format!("AUTH refused: {said}"))),
    };
    let _ = conn.send("QUIT").await;
    outcome
}

/// A server's words with the password cut out, should a server ever echo it.
pub(super) fn redact(text: &str, password: &Password) -> String {
    let secret = password.expose();
    if secret.is_empty() {
        clip(text)
    } else {
        clip(&text.replace(secret, "(password hidden)"))
    }
}

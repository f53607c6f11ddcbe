//! The small client dialogues the checks need: greetings, STARTTLS/STLS upgrades
//! (RFC 9051 §6.2.1, RFC 2595 §4, RFC 3207 §4) and EHLO, over a line-oriented
//! connection with limits on what the server may send.

use super::*;

/// A line-oriented connection to a server, with limits on what it may send.
pub(super) struct Conn<S> {
    pub(super) io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(super) fn new(stream: S) -> Conn<S> {
        Conn {
            io: BufReader::new(stream),
        }
    }

    /// One line without its CRLF.
    pub(super) async fn line(&mut self) -> Result<String, String> {
        let mut buf = Vec::new();
        let n = (&mut self.io)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| format!("reading from the server failed: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        if buf.last() != Some(&b'\n') {
            return Err(format!("the server sent a line longer than {MAX_LINE} bytes"));
        }
        let text = String::from_utf8_lossy(&buf);
        Ok(text.trim_end_matches(['\r', '\n']).to_string())
    }

    pub(super) async fn send(&mut self, line: &str) -> Result<(), String> {
        let stream = self.io.get_mut();
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| format!("writing to the server failed: {e}"))?;
        stream
            .flush()
            .await
            .map_err(|e| format!("writing to the server failed: {e}"))
    }

    /// An SMTP reply (RFC 5321 §4.2.1): its code and the text of every line.
    pub(super) async fn smtp_reply(&mut self) -> Result<(u16, Vec<String>), String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await?;
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
            let Some(code) = code else {
                return Err(format!("not an SMTP reply: {:?}", clip(&line)));
            };
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                return Ok((code, lines));
            }
            if lines.len() > MAX_LINES {
                return Err("the server's reply does not end".into());
            }
        }
    }

    /// The stream, for TLS. Anything the server sent after agreeing to start TLS would be
    /// read as if it had come over TLS (the response-injection attack of CVE-2011-0411,
    /// from the client's side), so it is refused.
    pub(super) fn into_inner(self) -> Result<S, String> {
        if self.io.buffer().is_empty() {
            Ok(self.io.into_inner())
        } else {
            Err("the server sent data after agreeing to start TLS (a broken server or an attack)".into())
        }
    }
}

/// A server's text, cut short for a report.
pub(super) fn clip(text: &str) -> String {
    const MAX: usize = 160;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

/// The greeting each protocol starts with: IMAP `* OK` (RFC 9051 §7.1.1), POP3 `+OK`
/// (RFC 1939 §4), SMTP `220` (RFC 5321 §4.3.1). Returns the greeting line(s).
pub(super) async fn expect_greeting<S: AsyncRead + AsyncWrite + Unpin>(
    protocol: Protocol,
    conn: &mut Conn<S>,
) -> Result<String, String> {
    let (ok, line) = match protocol {
        Protocol::Imap => {
            let line = conn.line().await?;
            (line.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("* OK")), line)
        }
        Protocol::Pop3 => {
            let line = conn.line().await?;
            (line.starts_with("+OK"), line)
        }
        Protocol::Submission => {
            let (code, lines) = conn.smtp_reply().await?;
            (code == 220, format!("{code} {}", lines.join(" / ")))
        }
    };
    if ok {
        Ok(line)
    } else {
        Err(format!(
            "the server did not answer with a greeting of {}: {:?}",
            protocol.label(),
            clip(&line)
        ))
    }
}

/// The plain-text part of a STARTTLS port: greeting, the capability that offers TLS,
/// and the command that starts it. Returns the stream, ready for the TLS handshake.
pub(super) async fn starttls(protocol: Protocol, stream: TcpStream) -> Result<TcpStream, String> {
    let me = ehlo_name(&stream);
    let mut conn = Conn::new(stream);
    expect_greeting(protocol, &mut conn).await?;
    upgrade(protocol, &mut conn, &me).await?;
    conn.into_inner()
}

/// After the greeting: checks that the server offers TLS and asks for it.
/// `me` is what this side calls itself in SMTP's EHLO.
pub(super) async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    protocol: Protocol,
    conn: &mut Conn<S>,
    me: &str,
) -> Result<(), String> {
    match protocol {
        Protocol::Imap => {
            // RFC 9051 §6.1.1 CAPABILITY must list STARTTLS (RFC 2595 §3.1); then §6.2.1:
            // after the tagged OK, TLS begins at once.
            let capabilities = imap_command(conn, "D1", "CAPABILITY").await?;
            if !capabilities
                .iter()
                .filter(|l| l.get(..13).is_some_and(|p| p.eq_ignore_ascii_case("* CAPABILITY ")))
                .flat_map(|l| l.split_whitespace())
                .any(|c| c.eq_ignore_ascii_case("STARTTLS"))
            {
                return Err("the server does not offer STARTTLS (not in its CAPABILITY)".into());
            }
            imap_command(conn, "D2", "STARTTLS")
                .await
                .map_err(|e| format!("STARTTLS refused: {e}"))?;
        }
        Protocol::Pop3 => {
            // RFC 2449 §5 CAPA lists STLS (RFC 2595 §4); a server without CAPA may still
            // take STLS, so the command itself decides then.
            conn.send("CAPA").await?;
            let first = conn.line().await?;
            if first.starts_with("+OK") {
                let mut offered = false;
                let mut ended = false;
                for _ in 0..MAX_LINES {
                    let line = conn.line().await?;
                    if line == "." {
                        ended = true;
                        break;
                    }
                    offered |= line
                        .split_whitespace()
                        .next()
                        .is_some_and(|c| c.eq_ignore_ascii_case("STLS"));
                }
                if !ended {
                    return Err("the server's CAPA answer does not end".into());
                }
                if !offered {
                    return Err("the server does not offer STLS (not in its CAPA)".into());
                }
            }
            conn.send("STLS").await?;
            let answer = conn.line().await?;
            if !answer.starts_with("+OK") {
                return Err(format!("STLS refused: {:?}", clip(&answer)));
            }
        }
        Protocol::Submission => {
            // RFC 3207 §4: EHLO lists STARTTLS; STARTTLS answered 220 starts TLS.
            let keywords = smtp_ehlo(conn, me).await?;
            if !keywords.iter().any(|k| k == "STARTTLS") {
                return Err("the server does not offer STARTTLS (not in its EHLO reply)".into());
            }
            conn.send("STARTTLS").await?;
            let (code, text) = conn.smtp_reply().await?;
            if code != 220 {
                return Err(format!("STARTTLS refused: {code} {}", clip(&text.join(" "))));
            }
        }
    }
    Ok(())
}

/// Sends a tagged IMAP command and reads up to its tagged answer, which must be OK.
/// Returns the untagged lines before it.
pub(super) async fn imap_command<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    tag: &str,
    command: &str,
) -> Result<Vec<String>, String> {
    conn.send(&format!("{tag} {command}")).await?;
    let mut untagged = Vec::new();
    for _ in 0..MAX_LINES {
        let line = conn.line().await?;
        if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
            return if rest.get(..2).is_some_and(|s| s.eq_ignore_ascii_case("OK")) {
                Ok(untagged)
            } else {
                Err(clip(rest))
            };
        }
        untagged.push(line);
    }
    Err(format!("no answer to {command}"))
}

/// This side's address literal for EHLO (RFC 5321 §4.1.3: a client without a name of
/// its own sends its address, `[192.0.2.1]` or `[IPv6:2001:db8::1]`).
pub(super) fn ehlo_name(stream: &TcpStream) -> String {
    match stream.local_addr().map(|a| a.ip()) {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{v6}]"),
        },
        Ok(IpAddr::V4(v4)) => format!("[{v4}]"),
        Err(_) => "[127.0.0.1]".into(),
    }
}

/// EHLO as `me`. Returns the extension keywords, upper case.
pub(super) async fn smtp_ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    me: &str,
) -> Result<Vec<String>, String> {
    conn.send(&format!("EHLO {me}")).await?;
    let (code, lines) = conn.smtp_reply().await?;
    if code != 250 {
        return Err(format!("EHLO refused: {code} {}", clip(&lines.join(" "))));
    }
    // The first line is the server's name; each further one an extension (RFC 5321 §4.1.1.1).
    Ok(lines.iter().skip(1).map(|l| l.to_ascii_uppercase()).collect())
}

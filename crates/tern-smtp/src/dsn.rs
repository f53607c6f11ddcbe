//! Delivery status notifications (RFC 3464): the bounce a sender gets when a message
//! cannot be delivered, and the "still trying" notice after a delay (RFC 3461 §4.1
//! NOTIFY=DELAY).
//!
//! A DSN is sent with the null reverse-path `<>` (RFC 5321 §4.5.5) so that it can never
//! cause another DSN, and is marked Auto-Submitted (RFC 3834 §5).

use std::fmt::Write as _;

/// RFC 3464 §2.3.3 Action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
        }
    }
}

/// One recipient's fields in the report.
#[derive(Debug, Clone)]
pub struct ReportedRecipient {
    pub address: String,
    pub orcpt: Option<String>,
    pub action: Action,
    /// The last SMTP reply ("550 5.1.1 no such user") or Tern's own reason.
    pub reply: Option<String>,
    /// The host that answered.
    pub remote_host: Option<String>,
}

/// What the report is about.
pub struct Report<'a> {
    pub hostname: &'a str,
    /// The original envelope sender: the DSN goes to them.
    pub to: &'a str,
    pub env_id: Option<&'a str>,
    /// When Tern accepted the original (unix seconds).
    pub arrival: i64,
    /// For a delay notice: until when Tern keeps trying.
    pub retry_until: Option<i64>,
    pub recipients: &'a [ReportedRecipient],
    pub original: &'a [u8],
    /// RET=HDRS: include only the original's header.
    pub headers_only: bool,
}

/// The RFC 3463 status code inside an SMTP reply, or one derived from its class.
pub fn status_of(reply: Option<&str>, action: Action) -> String {
    if let Some(reply) = reply {
        let mut words = reply.split_whitespace();
        let code = words.next().unwrap_or("");
        if let Some(status) = words.next().filter(|w| is_status(w)) {
            return status.to_string();
        }
        match code.chars().next() {
            Some('5') => return "5.0.0".into(),
            Some('4') if action == Action::Delayed => return "4.0.0".into(),
            Some('4') => return "4.4.7".into(), // expired while tempfailing
            _ => {}
        }
    }
    match action {
        Action::Delivered => "2.0.0".into(),
        Action::Delayed => "4.4.1".into(),
        Action::Failed => "5.4.4".into(),
    }
}

fn is_status(w: &str) -> bool {
    let parts: Vec<&str> = w.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn rfc5322_date(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

/// The header block of a message (up to and including the blank line).
fn header_block(raw: &[u8]) -> &[u8] {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(raw.len());
    &raw[..end]
}

/// Builds the notification message.
pub fn build(report: &Report<'_>) -> Vec<u8> {
    let now = crate::queue::now();
    let boundary = format!("tern-dsn-{:016x}", rand::random::<u64>());
    let delayed = report.recipients.iter().all(|r| r.action == Action::Delayed);
    let subject = if delayed {
        "Delayed Mail (still being retried)"
    } else if report.recipients.iter().any(|r| r.action == Action::Failed) {
        "Undelivered Mail Returned to Sender"
    } else {
        "Successful Mail Delivery Report"
    };
    let mut m = String::new();
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <dsn.{id:016x}@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n",
        host = report.hostname,
        to = report.to,
        date = rfc5322_date(now),
        id = rand::random::<u64>(),
    );
    // The part a person reads.
    if delayed {
        let _ = write!(
            m,
            "This is the mail system at {}.\r\n\r\n\
             Your message could not be delivered yet to the recipients below. It is still\r\n\
             being retried; you do not need to send it again.\r\n",
            report.hostname
        );
        if let Some(until) = report.retry_until {
            let _ = write!(m, "Tern keeps trying until {}.\r\n", rfc5322_date(until));
        }
    } else {
        let _ = write!(
            m,
            "This is the mail system at {}.\r\n\r\n\
             I'm sorry to have to tell you that your message could not be delivered to\r\n\
             the recipients below. The reasons are given with each.\r\n",
            report.hostname
        );
    }
    m.push_str("\r\n");
    for r in report.recipients {
        let _ = write!(m, "<{}>: ", r.address);
        match (&r.remote_host, &r.reply) {
            (Some(host), Some(reply)) => {
                let _ = write!(m, "host {host} said: {reply}\r\n");
            }
            (None, Some(reply)) => {
                let _ = write!(m, "{reply}\r\n");
            }
            _ => m.push_str(r.action.as_str()),
        }
        m.push_str("\r\n");
    }
    // RFC 3464 §2.2: per-message fields.
    let _ = write!(
        m,
        "\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {}\r\n",
        report.hostname
    );
    if let Some(env_id) = report.env_id {
        let _ = write!(m, "Original-Envelope-Id: {env_id}\r\n");
    }
    let _ = write!(m, "Arrival-Date: {}\r\n", rfc5322_date(report.arrival));
    // RFC 3464 §2.3: per-recipient fields, each group after a blank line.
    for r in report.recipients {
        let _ = write!(m, "\r\nFinal-Recipient: rfc822; {}\r\n", r.address);
        if let Some(orcpt) = &r.orcpt {
            let _ = write!(m, "Original-Recipient: {orcpt}\r\n");
        }
        let _ = write!(
            m,
            "Action: {}\r\nStatus: {}\r\n",
            r.action.as_str(),
            status_of(r.reply.as_deref(), r.action)
        );
        if let Some(host) = &r.remote_host {
            let _ = write!(m, "Remote-MTA: dns; {host}\r\n");
        }
        if let Some(reply) = &r.reply
            && r.remote_host.is_some()
        {
            let _ = write!(m, "Diagnostic-Code: smtp; {reply}\r\n");
        }
        if r.action == Action::Delayed
            && let Some(until) = report.retry_until
        {
            let _ = write!(m, "Will-Retry-Until: {}\r\n", rfc5322_date(until));
        }
    }
    let (kind, original) = if report.headers_only {
        ("text/rfc822-headers", header_block(report.original))
    } else {
        ("message/rfc822", report.original)
    };
    let _ = write!(m, "\r\n--{boundary}\r\nContent-Type: {kind}\r\n\r\n");
    let mut out = m.into_bytes();
    out.extend_from_slice(original);
    if !original.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_comes_from_the_reply() {
        assert_eq!(status_of(Some("550 5.1.1 no such user"), Action::Failed), "5.1.1");
        assert_eq!(status_of(Some("554 transaction failed"), Action::Failed), "5.0.0");
        assert_eq!(status_of(Some("451 try later"), Action::Failed), "4.4.7");
        assert_eq!(status_of(None, Action::Delayed), "4.4.1");
    }

    #[test]
    fn report_is_parseable_and_complete() {
        let original = b"From: a@x.test\r\nSubject: hello\r\n\r\nbody\r\n";
        let raw = build(&Report {
            hostname: "mail.x.test",
            to: "a@x.test",
            env_id: Some("E1"),
            arrival: 1_700_000_000,
            retry_until: None,
            recipients: &[ReportedRecipient {
                address: "b@y.test".into(),
                orcpt: Some("rfc822;b@y.test".into()),
                action: Action::Failed,
                reply: Some("550 5.1.1 no such user".into()),
                remote_host: Some("mx.y.test".into()),
            }],
            original,
            headers_only: true,
        });
        let message = mail_parser::MessageParser::new().parse(&raw).unwrap();
        assert_eq!(message.subject(), Some("Undelivered Mail Returned to Sender"));
        let text = String::from_utf8(raw.clone()).unwrap();
        assert!(text.contains("Final-Recipient: rfc822; b@y.test\r\nOriginal-Recipient: rfc822;b@y.test\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.y.test\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n"));
        assert!(text.contains("Original-Envelope-Id: E1\r\n"));
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n\r\nFrom: a@x.test\r\nSubject: hello\r\n\r\n--"));
        assert!(!text.contains("body\r\n--"));
    }
}

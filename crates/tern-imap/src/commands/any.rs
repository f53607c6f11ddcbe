//! Commands valid in every state (RFC 9051 §6.1) and the small session-wide ones:
//! CAPABILITY, NOOP/CHECK, LOGOUT, ID (RFC 2971), ENABLE (RFC 5161), NAMESPACE
//! (RFC 2342).

use imap_codec::imap_types::core::{IString, NString, Vec1};
use imap_codec::imap_types::extensions::enable::CapabilityEnable;

use crate::session::{Reply, Result, Session, State};

/// RFC 9051 §6.1.1.
pub fn capability(s: &mut Session) -> Result {
    let caps = s.capabilities();
    s.out.untagged(&format!("CAPABILITY {caps}"));
    Ok(Reply::ok("CAPABILITY completed"))
}

/// RFC 9051 §6.1.2 NOOP and §6.4.1 CHECK: the moment to learn what changed, including
/// expunges.
pub async fn noop(s: &mut Session) -> Result {
    s.sync(true, true).await?;
    Ok(Reply::ok("NOOP completed"))
}

/// RFC 9051 §6.1.3.
pub fn logout(s: &mut Session) -> Result {
    s.out.untagged("BYE Logging out");
    s.state = State::Logout;
    Ok(Reply::ok("LOGOUT completed"))
}

/// RFC 2971 §3.1: the client says who it is (logged, it helps support); the server
/// answers in kind.
pub fn id(s: &mut Session, parameters: Option<Vec<(IString<'_>, NString<'_>)>>) -> Result {
    if let Some(parameters) = &parameters {
        if parameters.len() > 30 {
            return Err(Reply::bad("ID takes at most 30 field-value pairs (RFC 2971 §3.3)"));
        }
        let client: Vec<String> = parameters
            .iter()
            .map(|(k, v)| {
                let v = v.0.as_ref().map(|v| String::from_utf8_lossy(v.as_ref()).into_owned());
                format!(
                    "{}={}",
                    String::from_utf8_lossy(k.as_ref()),
                    v.unwrap_or_else(|| "NIL".into())
                )
            })
            .collect();
        tracing::info!(peer = %s.peer, client = %client.join(" "), "IMAP client ID");
    }
    s.out.untagged(&format!(
        "ID (\"name\" \"Tern\" \"version\" \"{}\" \"vendor\" \"Tern\")",
        env!("CARGO_PKG_VERSION")
    ));
    Ok(Reply::ok("ID completed"))
}

/// RFC 5161 §3.1, with IMAP4rev2 (RFC 9051 §6.3.1), CONDSTORE and QRESYNC (RFC 7162
/// §3.2.3) and UTF8=ACCEPT (RFC 6855 §3).
pub fn enable(s: &mut Session, capabilities: Vec1<CapabilityEnable<'_>>) -> Result {
    let mut enabled = Vec::new();
    for capability in capabilities.as_ref() {
        match capability.to_string().to_ascii_uppercase().as_str() {
            "CONDSTORE" if !s.condstore => {
                s.condstore = true;
                enabled.push("CONDSTORE");
            }
            "QRESYNC" if !s.qresync => {
                // QRESYNC implies CONDSTORE (RFC 7162 §3.2.3).
                s.qresync = true;
                s.condstore = true;
                enabled.push("QRESYNC");
            }
            "IMAP4REV2" if !s.rev2 => {
                s.rev2 = true;
                s.utf8 = true;
                enabled.push("IMAP4rev2");
            }
            "UTF8=ACCEPT" if !s.utf8 => {
                s.utf8 = true;
                enabled.push("UTF8=ACCEPT");
            }
            // Unknown or already enabled: ENABLED lists only what this command changed.
            _ => {}
        }
    }
    s.out.untagged(format!("ENABLED {}", enabled.join(" ")).trim_end());
    Ok(Reply::ok("ENABLE completed"))
}

/// RFC 2342 §5: one personal namespace with "/" as the delimiter; no shared ones.
pub fn namespace(s: &mut Session) -> Result {
    s.out.untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
    Ok(Reply::ok("NAMESPACE completed"))
}

//! LIST and LSUB (RFC 9051 §6.3.9, RFC 3501 §6.3.9), with LIST-EXTENDED selection and
//! return options (RFC 5258), LIST-STATUS (RFC 5819), CHILDREN (RFC 3348) and
//! SPECIAL-USE (RFC 6154 §2).

use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};

use super::status::{check_items, write_status};
use crate::extensions::{Extra, ListRequest};
use crate::names;
use crate::session::{Reply, Result, Session};

pub async fn list(
    s: &mut Session,
    reference: Mailbox<'_>,
    pattern: ListMailbox<'_>,
    lsub: bool,
    extra: Extra,
) -> Result {
    let request = match extra.list {
        Some(request) if !lsub => request,
        _ => {
            let reference: Vec<u8> = match &reference {
                Mailbox::Inbox => b"INBOX".to_vec(),
                Mailbox::Other(o) => o.as_ref().to_vec(),
            };
            let pattern: Vec<u8> = match &pattern {
                ListMailbox::Token(t) => t.as_ref().to_vec(),
                ListMailbox::String(st) => st.as_ref().to_vec(),
            };
            ListRequest {
                reference,
                patterns: vec![pattern],
                ..Default::default()
            }
        }
    };
    run(s, request, lsub).await
}

async fn run(s: &mut Session, req: ListRequest, lsub: bool) -> Result {
    let verb = if lsub { "LSUB" } else { "LIST" };
    let utf8 = s.utf8;
    let decode = |raw: &[u8]| {
        names::from_wire(raw, utf8).ok_or_else(|| Reply::bad("Name is not valid modified UTF-7 (RFC 3501 §5.1.3)"))
    };
    let reference = decode(&req.reference)?;
    let patterns: Vec<String> = req.patterns.iter().map(|p| decode(p)).collect::<Result<_>>()?;
    for option in &req.selection {
        if !["SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"].contains(&option.as_str()) {
            return Err(Reply::bad(format!("Unknown LIST selection option {option}")));
        }
    }
    for option in &req.returns {
        if !["SUBSCRIBED", "CHILDREN", "STATUS", "SPECIAL-USE"].contains(&option.as_str()) {
            return Err(Reply::bad(format!("Unknown LIST return option {option}")));
        }
    }
    check_items(&req.status_items)?;
    if req.status_items.iter().any(|i| i == "DELETED-STORAGE") {
        return Err(Reply::bad("DELETED-STORAGE is available from STATUS, not from LIST"));
    }
    let select_subscribed = lsub || req.selection.iter().any(|o| o == "SUBSCRIBED");
    let recursive = req.selection.iter().any(|o| o == "RECURSIVEMATCH");
    if recursive && !select_subscribed {
        // RFC 5258 §3.1: RECURSIVEMATCH needs another selection option.
        return Err(Reply::bad("RECURSIVEMATCH needs SUBSCRIBED"));
    }
    let select_special = req.selection.iter().any(|o| o == "SPECIAL-USE");
    let return_subscribed = select_subscribed || req.returns.iter().any(|o| o == "SUBSCRIBED");
    let return_status = req.returns.iter().any(|o| o == "STATUS");
    if patterns.len() == 1 && patterns[0].is_empty() && !lsub {
        // RFC 9051 §6.3.9: an empty pattern asks for the delimiter and root.
        s.out.untagged(&format!("{verb} (\\Noselect) \"/\" \"\""));
        return Ok(Reply::ok(format!("{verb} completed")));
    }
    // The reference and the pattern are joined as they are (RFC 9051 §6.3.9's
    // examples; Dovecot does the same, so `LIST "INBOX" *` also matches INBOX), unless
    // the pattern is absolute.
    let full: Vec<String> = patterns
        .iter()
        .map(|p| {
            if p.starts_with('/') {
                p.clone()
            } else {
                format!("{reference}{p}")
            }
        })
        .collect();
    let account = s.account_id()?;
    let mailboxes = s.store.mailboxes(account).await?;
    let child_of = |parent: &str, name: &str| {
        name.len() > parent.len() + 1 && name.starts_with(parent) && name.as_bytes()[parent.len()] == b'/'
    };
    for m in &mailboxes {
        if !full.iter().any(|p| matches(p, &m.name)) {
            continue;
        }
        let subscribed_child = mailboxes.iter().any(|c| c.subscribed && child_of(&m.name, &c.name));
        let selected = (!select_subscribed || m.subscribed) && (!select_special || m.special_use.is_some());
        // RFC 5258 §3.5: with RECURSIVEMATCH a parent is listed for its subscribed
        // children, marked with CHILDINFO.
        let childinfo = recursive && !m.subscribed && subscribed_child;
        if !selected && !childinfo {
            continue;
        }
        let has_children = mailboxes.iter().any(|c| child_of(&m.name, &c.name));
        let mut attrs: Vec<&str> = Vec::new();
        if !lsub {
            attrs.push(if has_children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            });
        }
        if return_subscribed && m.subscribed && !lsub {
            attrs.push("\\Subscribed");
        }
        if let Some(u) = m.special_use {
            attrs.push(u.attribute());
        }
        s.out
            .raw(b"* ")
            .text(verb)
            .raw(b" (")
            .text(&attrs.join(" "))
            .raw(b") \"/\" ");
        s.out.string(names::to_wire(&m.name, utf8).as_bytes(), utf8);
        if childinfo {
            s.out.raw(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
        }
        s.out.crlf();
        if return_status && selected {
            write_status(&mut s.out, m, &req.status_items, utf8, 0);
        }
    }
    Ok(Reply::ok(format!("{verb} completed")))
}

/// RFC 9051 §6.3.9 wildcards: `*` matches anything, `%` anything but the delimiter.
/// INBOX matches in any case.
pub fn matches(pattern: &str, name: &str) -> bool {
    let pattern = if pattern.len() >= 5
        && pattern.is_char_boundary(5)
        && pattern[..5].eq_ignore_ascii_case("INBOX")
        && (name == "INBOX" || name.starts_with("INBOX/"))
    {
        format!("INBOX{}", &pattern[5..])
    } else {
        pattern.to_string()
    };
    glob(pattern.as_bytes(), name.as_bytes())
}

/// Recursive matching; `%` may not cross "/". Patterns are short, names shallow.
fn glob(p: &[u8], n: &[u8]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some(b'*') => (0..=n.len()).any(|i| glob(&p[1..], &n[i..])),
        Some(b'%') => {
            let limit = n.iter().position(|&b| b == b'/').unwrap_or(n.len());
            (0..=limit).any(|i| glob(&p[1..], &n[i..]))
        }
        Some(&c) => n.first() == Some(&c) && glob(&p[1..], &n[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards() {
        assert!(matches("*", "INBOX"));
        assert!(matches("*", "Archive/2024"));
        assert!(matches("%", "Archive"));
        assert!(!matches("%", "Archive/2024"));
        assert!(matches("Archive/%", "Archive/2024"));
        assert!(matches("inbox", "INBOX"));
        assert!(matches("Inbox/*", "INBOX/Sub"));
        assert!(!matches("inbox", "Inbox2"));
        assert!(matches("A*4", "Archive/2024"));
        assert!(!matches("A%4", "Archive/2024"));
        assert!(matches("%/%", "Archive/2024"));
        assert!(matches("*/%", "a/b/c"));
        assert!(!matches("%", "a/b"));
    }
}

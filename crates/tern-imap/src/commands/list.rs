//! LIST and LSUB (RFC 9051 §6.3.9, RFC 3501 §6.3.9), with CHILDREN (RFC 3348) and
//! SPECIAL-USE (RFC 6154 §2) attributes.

use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};

use crate::extensions::Extra;
use crate::names;
use crate::session::{Reply, Result, Session};

pub async fn list(
    s: &mut Session,
    reference: Mailbox<'_>,
    pattern: ListMailbox<'_>,
    lsub: bool,
    _extra: Extra,
) -> Result {
    let verb = if lsub { "LSUB" } else { "LIST" };
    let reference = match &reference {
        Mailbox::Inbox => "INBOX".to_string(),
        Mailbox::Other(_) => s.mailbox_name(&reference)?,
    };
    let raw_pattern: &[u8] = match &pattern {
        ListMailbox::Token(t) => t.as_ref(),
        ListMailbox::String(st) => st.as_ref(),
    };
    let pattern = names::from_wire(raw_pattern, s.utf8)
        .ok_or_else(|| Reply::bad("Pattern is not valid modified UTF-7 (RFC 3501 §5.1.3)"))?;
    if pattern.is_empty() {
        // RFC 9051 §6.3.9: an empty pattern asks for the delimiter and root.
        s.out.untagged(&format!("{verb} (\\Noselect) \"/\" \"\""));
        return Ok(Reply::ok(format!("{verb} completed")));
    }
    // The reference is a prefix unless the pattern is absolute (RFC 9051 §6.3.9).
    let full = if reference.is_empty() || pattern.starts_with('/') {
        pattern
    } else if reference.ends_with('/') {
        format!("{reference}{pattern}")
    } else {
        format!("{reference}/{pattern}")
    };
    let account = s.account_id()?;
    let mailboxes = s.store.mailboxes(account).await?;
    let all: Vec<&str> = mailboxes.iter().map(|m| m.name.as_str()).collect();
    for m in &mailboxes {
        if lsub && !m.subscribed {
            continue;
        }
        if !matches(&full, &m.name) {
            continue;
        }
        let has_children = all
            .iter()
            .any(|n| n.len() > m.name.len() + 1 && n.starts_with(&m.name) && n.as_bytes()[m.name.len()] == b'/');
        let mut attrs = vec![if has_children {
            "\\HasChildren"
        } else {
            "\\HasNoChildren"
        }];
        if let Some(u) = m.special_use {
            attrs.push(u.attribute());
        }
        s.out
            .raw(b"* ")
            .text(verb)
            .raw(b" (")
            .text(&attrs.join(" "))
            .raw(b") \"/\" ");
        s.out.string(names::to_wire(&m.name, s.utf8).as_bytes(), s.utf8).crlf();
    }
    Ok(Reply::ok(format!("{verb} completed")))
}

/// RFC 9051 §6.3.9 wildcards: `*` matches anything, `%` anything but the delimiter.
/// INBOX matches in any case.
pub fn matches(pattern: &str, name: &str) -> bool {
    let pattern = if pattern.len() >= 5
        && pattern[..5].eq_ignore_ascii_case("INBOX")
        && (name == "INBOX" || name.starts_with("INBOX/"))
    {
        format!("INBOX{}", &pattern[5..])
    } else {
        pattern.to_string()
    };
    glob(pattern.as_bytes(), name.as_bytes())
}

fn glob(p: &[u8], n: &[u8]) -> bool {
    // Iterative matching with backtracking to the last wildcard; `%` may not cross "/".
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize, bool)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'*' || p[pi] == b'%') {
            star = Some((pi, ni, p[pi] == b'%'));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn, percent)) = star {
            if percent && n[sn] == b'/' {
                return false;
            }
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1, percent));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*' || c == b'%')
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
    }
}

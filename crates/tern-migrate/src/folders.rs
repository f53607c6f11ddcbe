//! Folder mapping: which source folders are copied, and to which Tern folder.
//!
//! A source names its folders on the wire in modified UTF-7 (RFC 3501 §5.1.3), under a
//! personal namespace prefix with its own hierarchy separator (RFC 2342: `INBOX.` and
//! `.` on Courier and some Dovecots, none and `/` elsewhere). Tern names are UTF-8 with
//! `/` (tern_store::DELIMITER). Special folders are recognised by their SPECIAL-USE
//! attribute (RFC 6154 §2) and, on servers without it, by the names mail clients have
//! used in many languages; they land in Tern's own Sent, Drafts, Trash, Junk and
//! Archive. The administrator's rename and exclude rules come first.

use serde::{Deserialize, Serialize};
use tern_store::SpecialUse;

/// The administrator's folder rules for a source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderRules {
    /// Glob patterns over the UTF-8 `/`-separated name (`*` any text, `%` any text
    /// without `/`); a matching folder is not copied.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// SPECIAL-USE attributes whose folders are not copied (`\All` on Gmail).
    #[serde(default)]
    pub exclude_attributes: Vec<String>,
    /// `(from, to)`: a folder named `from`, and its children, go to `to` instead.
    #[serde(default)]
    pub rename: Vec<(String, String)>,
}

/// The source's personal namespace (RFC 2342 §5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Namespace {
    pub prefix: String,
    pub delimiter: Option<char>,
    /// Other users' and shared namespaces' prefixes: never copied.
    pub foreign_prefixes: Vec<String>,
    /// Only folders beneath the prefix are the mailbox's (a user root given by the
    /// administrator, e.g. an admin login that sees every user's folders).
    pub prefix_required: bool,
}

impl Namespace {
    /// Narrows the namespace to a user root folder (UTF-8, with the source's
    /// delimiter), as migration tools' CSV files give it.
    pub fn with_root(mut self, root: &str) -> Namespace {
        let delimiter = self.delimiter.unwrap_or('/');
        let root = root.trim_end_matches(delimiter);
        self.prefix = format!("{}{delimiter}", tern_store::utf7::encode(root));
        self.prefix_required = true;
        self
    }
}

/// A folder as the source lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFolder {
    /// The name exactly as the source sends it (modified UTF-7).
    pub wire_name: String,
    pub delimiter: Option<char>,
    /// Attributes as sent, e.g. `\Sent`, `\Noselect`, `\HasChildren`.
    pub attributes: Vec<String>,
}

/// What happens to one source folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Copy {
        /// The Tern folder, UTF-8 with `/`.
        target: String,
        /// Set when it is one of Tern's special folders.
        special_use: Option<SpecialUse>,
    },
    Skip {
        reason: String,
    },
}

/// Names clients have given special folders, compared case-insensitively, for servers
/// that do not announce SPECIAL-USE.
const LOCALIZED: &[(SpecialUse, &[&str])] = &[
    (
        SpecialUse::Sent,
        &[
            "Sent",
            "Sent Items",
            "Sent Messages",
            "Sent Mail",
            "Gesendet",
            "Gesendete Elemente",
            "Gesendete Objekte",
            "Éléments envoyés",
            "Messages envoyés",
            "Envoyés",
            "Enviados",
            "Elementos enviados",
            "Itens enviados",
            "Posta inviata",
            "Inviati",
            "Verzonden",
            "Verzonden items",
            "Skickat",
            "Skickade objekt",
            "Sendt",
            "Sendte elementer",
            "Lähetetyt",
            "Wysłane",
            "Odeslaná pošta",
            "Отправленные",
        ],
    ),
    (
        SpecialUse::Trash,
        &[
            "Trash",
            "Deleted Items",
            "Deleted Messages",
            "Bin",
            "Papierkorb",
            "Gelöschte Elemente",
            "Gelöschte Objekte",
            "Corbeille",
            "Éléments supprimés",
            "Papelera",
            "Elementos eliminados",
            "Lixeira",
            "Itens excluídos",
            "Cestino",
            "Posta eliminata",
            "Prullenbak",
            "Verwijderde items",
            "Papperskorgen",
            "Borttagna objekt",
            "Papirkurv",
            "Slettede elementer",
            "Kosz",
            "Koš",
            "Корзина",
        ],
    ),
    (
        SpecialUse::Drafts,
        &[
            "Drafts",
            "Draft",
            "Entwürfe",
            "Brouillons",
            "Borradores",
            "Rascunhos",
            "Bozze",
            "Concepten",
            "Utkast",
            "Kladder",
            "Wersje robocze",
            "Koncepty",
            "Черновики",
        ],
    ),
    (
        SpecialUse::Junk,
        &[
            "Junk",
            "Spam",
            "Junk E-mail",
            "Junk Email",
            "Junk Mail",
            "Bulk Mail",
            "Junk-E-Mail",
            "Unerwünscht",
            "Courrier indésirable",
            "Indésirables",
            "Correo no deseado",
            "Lixo eletrônico",
            "Posta indesiderata",
            "Ongewenste e-mail",
            "Skräppost",
            "Søppelpost",
            "Wiadomości-śmieci",
            "Нежелательная почта",
            "Спам",
        ],
    ),
    (
        SpecialUse::Archive,
        &[
            "Archive",
            "Archives",
            "Archiv",
            "Archivo",
            "Archivio",
            "Archief",
            "Arkiv",
            "Archiwum",
            "Архив",
        ],
    ),
];

/// Tern's folder for a special use (the store creates these with every account).
pub fn special_folder_name(use_: SpecialUse) -> Option<&'static str> {
    SpecialUse::DEFAULT_FOLDERS
        .iter()
        .find(|(_, u)| *u == use_)
        .map(|(name, _)| *name)
}

fn attribute_use(attributes: &[String]) -> Option<SpecialUse> {
    attributes.iter().find_map(|a| match SpecialUse::from_attribute(a) {
        // \All and \Flagged are views over other folders, not a place of their own.
        Some(SpecialUse::All | SpecialUse::Flagged) | None => None,
        Some(u) => Some(u),
    })
}

fn localized_use(name: &str) -> Option<SpecialUse> {
    LOCALIZED.iter().find_map(|(u, names)| {
        names
            .iter()
            .any(|n| n.to_lowercase() == name.to_lowercase())
            .then_some(*u)
    })
}

/// `pattern` (with `*` and `%`, RFC 9051 §6.3.9 wildcards) matches `name`.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('%', rest)) => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| go(rest, &n[i..])),
            Some((c, rest)) => n.first().is_some_and(|f| f == c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// The UTF-8, `/`-separated name of a source folder inside its namespace, or `None`
/// when it belongs to another namespace.
pub fn display_name(folder: &SourceFolder, ns: &Namespace) -> Option<String> {
    let decoded = tern_store::utf7::decode(&folder.wire_name).unwrap_or_else(|| folder.wire_name.clone());
    if decoded.eq_ignore_ascii_case("INBOX") {
        return Some("INBOX".into());
    }
    let ns_prefix = tern_store::utf7::decode(&ns.prefix).unwrap_or_else(|| ns.prefix.clone());
    if ns
        .foreign_prefixes
        .iter()
        .any(|p| !p.is_empty() && folder.wire_name.starts_with(p.as_str()))
    {
        return None;
    }
    let under_prefix = !ns_prefix.is_empty() && decoded.len() > ns_prefix.len() && starts_with_ci(&decoded, &ns_prefix);
    if ns.prefix_required && !under_prefix {
        return None;
    }
    let inner = if under_prefix {
        &decoded[ns_prefix.len()..]
    } else {
        decoded.as_str()
    };
    let delimiter = folder.delimiter.or(ns.delimiter);
    Some(match delimiter {
        Some('/') | None => inner.to_string(),
        // A '/' inside a level would make a new level in Tern: keep it visible instead.
        Some(d) => inner
            .split(d)
            .map(|level| level.replace('/', "_"))
            .collect::<Vec<_>>()
            .join("/"),
    })
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len()).is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

/// Decides what happens to each source folder.
pub fn plan(folder: &SourceFolder, ns: &Namespace, rules: &FolderRules) -> Plan {
    let skip = |reason: String| Plan::Skip { reason };
    if folder
        .attributes
        .iter()
        .any(|a| a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent"))
    {
        return skip("not selectable (a folder that only holds other folders)".into());
    }
    if let Some(a) = folder
        .attributes
        .iter()
        .find(|a| rules.exclude_attributes.iter().any(|x| x.eq_ignore_ascii_case(a)))
    {
        return skip(format!("{a} folders are excluded (a view of mail in other folders)"));
    }
    let Some(name) = display_name(folder, ns) else {
        return skip("outside the mailbox's namespace or root folder".into());
    };
    if let Some(p) = rules.exclude.iter().find(|p| glob_matches(p, &name)) {
        return skip(format!("excluded by the rule {p:?}"));
    }
    if let Some((from, to)) = rules
        .rename
        .iter()
        .find(|(from, _)| name == *from || name.starts_with(&format!("{from}/")))
    {
        return Plan::Copy {
            target: format!("{to}{}", &name[from.len()..]),
            special_use: None,
        };
    }
    if name == "INBOX" {
        return Plan::Copy {
            target: "INBOX".into(),
            special_use: None,
        };
    }
    // Only a top-level folder is taken for a special one by its name: "Projects/Sent"
    // is somebody's own folder.
    let by_name = (!name.contains('/')).then(|| localized_use(&name)).flatten();
    match attribute_use(&folder.attributes).or(by_name) {
        Some(u) => Plan::Copy {
            target: special_folder_name(u).unwrap_or(&name).to_string(),
            special_use: Some(u),
        },
        None => Plan::Copy {
            target: name,
            special_use: None,
        },
    }
}

/// Parses an untagged NAMESPACE response (RFC 2342 §5): the personal namespace's first
/// prefix and delimiter, and the other namespaces' prefixes. `line` is the response
/// without the leading `* NAMESPACE `.
pub fn parse_namespace(line: &str) -> Option<Namespace> {
    let mut groups = Vec::new();
    let mut rest = line.trim();
    for _ in 0..3 {
        rest = rest.trim_start();
        if let Some(r) = strip_prefix_ci(rest, "NIL") {
            groups.push(Vec::new());
            rest = r;
            continue;
        }
        let r = rest.strip_prefix('(')?;
        let (items, r) = parse_namespace_group(r)?;
        groups.push(items);
        rest = r;
    }
    let personal = groups.first()?.first().cloned();
    let foreign = groups.iter().skip(1).flatten().map(|(p, _)| p.clone()).collect();
    let (prefix, delimiter) = personal.unwrap_or_default();
    Some(Namespace {
        prefix,
        delimiter,
        foreign_prefixes: foreign,
        prefix_required: false,
    })
}

fn strip_prefix_ci<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    starts_with_ci(s, p).then(|| &s[p.len()..])
}

/// `("prefix" "delim")("prefix2" NIL))...` → the pairs and what follows the group.
/// A namespace's prefix and hierarchy delimiter.
type NamespaceItem = (String, Option<char>);

fn parse_namespace_group(mut s: &str) -> Option<(Vec<NamespaceItem>, &str)> {
    let mut items = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(r) = s.strip_prefix(')') {
            return Some((items, r));
        }
        s = s.strip_prefix('(')?;
        let (prefix, r) = quoted(s.trim_start())?;
        let r = r.trim_start();
        let (delimiter, r) = match strip_prefix_ci(r, "NIL") {
            Some(r) => (None, r),
            None => {
                let (d, r) = quoted(r)?;
                (d.chars().next(), r)
            }
        };
        // Namespace response extensions (RFC 2342 §5) may follow; skip to this item's end.
        let end = r.find(')')?;
        items.push((prefix, delimiter));
        s = &r[end + 1..];
    }
}

fn quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &body[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str, delim: char, attrs: &[&str]) -> SourceFolder {
        SourceFolder {
            wire_name: name.into(),
            delimiter: Some(delim),
            attributes: attrs.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn target(p: Plan) -> (String, Option<SpecialUse>) {
        match p {
            Plan::Copy { target, special_use } => (target, special_use),
            Plan::Skip { reason } => panic!("skipped: {reason}"),
        }
    }

    #[test]
    fn namespace_prefix_and_separator_are_translated() {
        let ns = parse_namespace(r##"(("INBOX." ".")) NIL (("#shared." "."))"##).unwrap();
        assert_eq!(ns.prefix, "INBOX.");
        assert_eq!(ns.delimiter, Some('.'));
        assert_eq!(ns.foreign_prefixes, vec!["#shared.".to_string()]);
        let rules = FolderRules::default();
        assert_eq!(target(plan(&folder("INBOX", '.', &[]), &ns, &rules)).0, "INBOX");
        assert_eq!(
            target(plan(&folder("INBOX.Work.Reports", '.', &[]), &ns, &rules)).0,
            "Work/Reports"
        );
        assert_eq!(target(plan(&folder("INBOX.a/b", '.', &[]), &ns, &rules)).0, "a_b");
        assert_eq!(target(plan(&folder("INBOX.K&AOQ-se", '.', &[]), &ns, &rules)).0, "Käse");
        assert!(matches!(
            plan(&folder("#shared.x", '.', &[]), &ns, &rules),
            Plan::Skip { .. }
        ));
        // A user root: only its subtree, without the root.
        let rooted = parse_namespace(r#"(("" "/")) NIL NIL"#)
            .unwrap()
            .with_root("users/alice");
        assert_eq!(
            target(plan(&folder("users/alice/Work", '/', &[]), &rooted, &rules)).0,
            "Work"
        );
        assert!(matches!(
            plan(&folder("users/bob/Work", '/', &[]), &rooted, &rules),
            Plan::Skip { .. }
        ));
    }

    #[test]
    fn special_folders_by_attribute_and_by_localized_name() {
        let ns = parse_namespace(r#"(("" "/")) NIL NIL"#).unwrap();
        let rules = FolderRules::default();
        assert_eq!(
            target(plan(&folder("Sent Items", '/', &[]), &ns, &rules)),
            ("Sent".into(), Some(SpecialUse::Sent))
        );
        assert_eq!(
            target(plan(&folder("Papierkorb", '/', &[]), &ns, &rules)),
            ("Trash".into(), Some(SpecialUse::Trash))
        );
        assert_eq!(
            target(plan(&folder("&AMk-l&AOk-ments envoy&AOk-s", '/', &[]), &ns, &rules)),
            ("Sent".into(), Some(SpecialUse::Sent))
        );
        assert_eq!(
            target(plan(
                &folder("[Gmail]/Sent Mail", '/', &["\\HasNoChildren", "\\Sent"]),
                &ns,
                &rules
            )),
            ("Sent".into(), Some(SpecialUse::Sent))
        );
        // Nested folders keep their own names.
        assert_eq!(
            target(plan(&folder("Projects/Sent", '/', &[]), &ns, &rules)).0,
            "Projects/Sent"
        );
    }

    #[test]
    fn gmail_views_rules_and_noselect_are_skipped() {
        let ns = Namespace::default();
        let gmail = crate::source::SourceSettings::preset(crate::source::Preset::Gmail, crate::source::Protocol::Imap);
        assert!(matches!(
            plan(&folder("[Gmail]/All Mail", '/', &["\\All"]), &ns, &gmail.rules),
            Plan::Skip { .. }
        ));
        assert!(matches!(
            plan(&folder("[Gmail]", '/', &["\\Noselect"]), &ns, &gmail.rules),
            Plan::Skip { .. }
        ));
        let rules = FolderRules {
            exclude: vec!["Archive/20*".into(), "Tmp%".into()],
            rename: vec![("Old Sent".into(), "Archive/Sent 2019".into())],
            ..Default::default()
        };
        assert!(matches!(
            plan(&folder("Archive/2019", '/', &[]), &ns, &rules),
            Plan::Skip { .. }
        ));
        assert!(matches!(plan(&folder("Tmp", '/', &[]), &ns, &rules), Plan::Skip { .. }));
        assert_eq!(target(plan(&folder("Tmp/x", '/', &[]), &ns, &rules)).0, "Tmp/x");
        assert_eq!(
            target(plan(&folder("Old Sent/a", '/', &["\\Sent"]), &ns, &rules)),
            ("Archive/Sent 2019/a".into(), None)
        );
    }
}

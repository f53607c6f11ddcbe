//! Reading an exported Maildir folder, and listing the folders of a Maildir++ tree.
//!
//! The Maildir layout has no RFC; it is described at <https://cr.yp.to/proto/maildir.html>
//! ("the maildir spec" below). A folder is a directory with `cur/`, `new/` and `tmp/`;
//! each message is one file whose bytes are the message exactly. Delivered but not yet
//! seen by a mail reader, a file sits in `new/`; once a reader has seen it, it moves to
//! `cur/` and its name gains an "info" suffix `:2,FLAGS`.
//!
//! Beyond the spec we follow the conventions exporters actually write:
//! - Dovecot's `dovecot-keywords` file, which names the lowercase flag letters
//!   (<https://doc.dovecot.org/main/core/config/mailbox/formats/maildir.html>).
//! - Maildir++ (Courier, Dovecot's default layout): subfolders are directories
//!   `.Parent.Child` inside the root folder, names in IMAP modified UTF-7.
//! - `!` instead of `:` before the info, as written by maildirs exported on Windows,
//!   where `:` cannot appear in a file name.
//!
//! Dovecot's "fs" layout (subfolders nested as plain directories) is not read here.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{DEFAULT_MAX_MESSAGE_SIZE, ExportError, ExportedMessage};

/// Dovecot's per-folder file mapping the flag letters `a`..`z` to keyword names.
const KEYWORDS_FILE: &str = "dovecot-keywords";

/// Dovecot allows 26 keywords per folder, one per lowercase letter.
const KEYWORD_LETTERS: usize = 26;

/// One Maildir folder, listed when opened.
#[derive(Debug)]
pub struct Maildir {
    path: PathBuf,
    entries: Vec<Entry>,
    keywords: Vec<Option<String>>,
    max_message_size: u64,
}

/// A message file found when the folder was listed; read only when its turn comes.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    /// The file name, lossily decoded: flags and the timestamp are ASCII, so a stray
    /// non-UTF-8 byte elsewhere in the name does not matter.
    file_name: String,
    internal_date: Option<i64>,
}

impl Maildir {
    /// Lists the messages of the Maildir folder at `path` (its `cur/` and `new/`;
    /// `tmp/` holds deliveries still being written and is ignored, as the maildir spec
    /// tells readers to do) and reads its `dovecot-keywords` file, if any.
    ///
    /// Messages come out ordered by internal date, then file name, so that importing
    /// the same export twice appends in the same order.
    pub fn open(path: &Path) -> Result<Maildir, ExportError> {
        fs::metadata(path).map_err(|e| ExportError::io(path, e))?;
        if !is_maildir(path) {
            return Err(ExportError::NotMaildir {
                path: path.to_path_buf(),
            });
        }
        let keywords = read_keywords(path)?;

        let mut entries = Vec::new();
        for subdir in ["cur", "new"] {
            let dir = path.join(subdir);
            let listing = match fs::read_dir(&dir) {
                Ok(listing) => listing,
                // A maildir with only one of the two is still a maildir.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ExportError::io(dir, e)),
            };
            for item in listing {
                let item = item.map_err(|e| ExportError::io(&dir, e))?;
                let file_name = item.file_name().to_string_lossy().into_owned();
                // The maildir spec: readers skip names starting with a dot.
                if file_name.starts_with('.') {
                    continue;
                }
                let file_path = item.path();
                // fs::metadata follows symlinks, so a linked message is read too.
                let meta = fs::metadata(&file_path).map_err(|e| ExportError::io(&file_path, e))?;
                if !meta.is_file() {
                    continue;
                }
                let internal_date = internal_date(&file_name, meta.modified().ok());
                entries.push(Entry {
                    path: file_path,
                    file_name,
                    internal_date,
                });
            }
        }
        entries.sort_by(|a, b| {
            a.internal_date
                .cmp(&b.internal_date)
                .then_with(|| a.file_name.cmp(&b.file_name))
        });

        Ok(Maildir {
            path: path.to_path_buf(),
            entries,
            keywords,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        })
    }

    /// Sets the largest message [`Maildir::messages`] reads; a larger one yields
    /// [`ExportError::TooLarge`] and the iteration goes on with the next message.
    pub fn with_max_message_size(mut self, limit: u64) -> Self {
        self.max_message_size = limit;
        self
    }

    /// The folder this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many messages the folder holds: the total for a progress bar.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reads the messages one at a time, in the order described at [`Maildir::open`].
    /// A file that cannot be read yields an error and the iteration goes on, so the
    /// caller decides whether one bad file stops the import.
    pub fn messages(&self) -> Messages<'_> {
        Messages { maildir: self, next: 0 }
    }

    fn read(&self, entry: &Entry) -> Result<ExportedMessage, ExportError> {
        let file = File::open(&entry.path).map_err(|e| ExportError::io(&entry.path, e))?;
        let mut raw = Vec::new();
        // Read at most one byte past the limit: enough to know the file is too large
        // without reading all of it.
        file.take(self.max_message_size.saturating_add(1))
            .read_to_end(&mut raw)
            .map_err(|e| ExportError::io(&entry.path, e))?;
        let read_len = u64::try_from(raw.len()).unwrap_or(u64::MAX);
        if read_len > self.max_message_size {
            let size = fs::metadata(&entry.path).map_or(read_len, |m| m.len());
            return Err(ExportError::TooLarge {
                location: entry.path.display().to_string(),
                size,
                limit: self.max_message_size,
            });
        }

        let mut message = ExportedMessage::new(raw, entry.path.display().to_string());
        message.internal_date = entry.internal_date;
        // Files in new/ normally carry no info, so they come out unseen, as the spec
        // means them to be. If an exporter did write flags on one (Python's mailbox
        // can), we keep them, as Dovecot and Python's mailbox do when reading.
        if let Some(flags) = info_flags(&entry.file_name) {
            apply_flags(&mut message, flags, &self.keywords);
        }
        Ok(message)
    }
}

/// The messages of a [`Maildir`], read lazily; see [`Maildir::messages`].
#[derive(Debug)]
pub struct Messages<'a> {
    maildir: &'a Maildir,
    next: usize,
}

impl Iterator for Messages<'_> {
    type Item = Result<ExportedMessage, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.maildir.entries.get(self.next)?;
        self.next += 1;
        Some(self.maildir.read(entry))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.maildir.entries.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Messages<'_> {}

/// Lists the folders of a Maildir++ tree rooted at `root`: the root itself as
/// `"INBOX"` (when it is a maildir), then every subfolder directory `.A.B` as `"A/B"`,
/// sorted by name.
///
/// Maildir++ separates hierarchy levels with `.` in one directory name; we return `/`
/// as the separator. Dovecot writes non-ASCII folder names in IMAP modified UTF-7
/// (RFC 3501 §5.1.3), so `.Entw&APw-rfe` comes back as `"Entwürfe"`; a name that is
/// not valid modified UTF-7 is returned as it is on disk. Dot-directories that are not
/// maildirs (`.notmuch`, say) are skipped.
pub fn folders(root: &Path) -> Result<Vec<(String, PathBuf)>, ExportError> {
    fs::metadata(root).map_err(|e| ExportError::io(root, e))?;
    let mut found = Vec::new();
    if is_maildir(root) {
        found.push(("INBOX".to_owned(), root.to_path_buf()));
    }

    let mut subfolders = Vec::new();
    let listing = fs::read_dir(root).map_err(|e| ExportError::io(root, e))?;
    for item in listing {
        let item = item.map_err(|e| ExportError::io(root, e))?;
        let dir_name = item.file_name();
        if dir_name.as_encoded_bytes().first() != Some(&b'.') {
            continue;
        }
        let dir_path = item.path();
        if !dir_path.is_dir() || !is_maildir(&dir_path) {
            continue;
        }
        let Some(dir_name) = dir_name.to_str() else {
            return Err(ExportError::Malformed {
                path: dir_path,
                reason: "the folder name is not valid UTF-8 or modified UTF-7; rename the \
                         directory and import again"
                    .to_owned(),
            });
        };
        let name = folder_name(dir_name).map_err(|reason| ExportError::Malformed {
            path: dir_path.clone(),
            reason,
        })?;
        subfolders.push((name, dir_path));
    }
    subfolders.sort();
    found.extend(subfolders);

    if found.is_empty() {
        return Err(ExportError::NotMaildir {
            path: root.to_path_buf(),
        });
    }
    Ok(found)
}

/// A maildir has `cur/` or `new/`; `tmp/` alone does not make one, and some exporters
/// leave out the empty ones.
fn is_maildir(path: &Path) -> bool {
    path.join("cur").is_dir() || path.join("new").is_dir()
}

/// `.Work.Reports` → `Work/Reports`, decoding modified UTF-7.
fn folder_name(dir_name: &str) -> Result<String, String> {
    let dotted = dir_name.strip_prefix('.').unwrap_or(dir_name);
    let levels: Vec<&str> = dotted.split('.').collect();
    if levels.iter().any(|level| level.is_empty()) {
        return Err(format!(
            "the Maildir++ folder name {dir_name:?} has an empty level between dots; rename \
             the directory (e.g. `.Parent.Child`) and import again"
        ));
    }
    let name = levels.join("/");
    // A name that is not valid modified UTF-7 (a UTF-8 name with a literal `&`, say)
    // is kept as it is on disk.
    Ok(tern_store::utf7::decode(&name).unwrap_or(name))
}

/// Reads `dovecot-keywords`: lines "N keyword", N from 0 (letter `a`) to 25 (`z`).
/// Lines that do not fit are skipped: a damaged keyword list should cost a keyword,
/// not the import.
fn read_keywords(maildir: &Path) -> Result<Vec<Option<String>>, ExportError> {
    let mut keywords = vec![None; KEYWORD_LETTERS];
    let path = maildir.join(KEYWORDS_FILE);
    let text = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(keywords),
        Err(e) => return Err(ExportError::io(path, e)),
    };
    for line in text.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let line = line.trim_end_matches('\r');
        let Some((index, keyword)) = line.split_once(' ') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        // An IMAP keyword is an atom (RFC 9051 §4.3): no spaces or controls.
        let keyword = keyword.trim();
        if keyword.is_empty() || keyword.chars().any(|c| c.is_whitespace() || c.is_control()) {
            continue;
        }
        if let Some(slot) = keywords.get_mut(index) {
            *slot = Some(keyword.to_owned());
        }
    }
    Ok(keywords)
}

/// The flags of a file name's version-2 info ("unique:2,FLAGS"), or `None` when the
/// name has none (files in new/; the spec's experimental ":1," info).
fn info_flags(file_name: &str) -> Option<&str> {
    let at = file_name.rfind(":2,").max(file_name.rfind("!2,"))?;
    file_name.get(at + 3..)
}

/// Applies info flags, per the maildir spec's list, plus Dovecot's keyword letters.
fn apply_flags(message: &mut ExportedMessage, flags: &str, keywords: &[Option<String>]) {
    for flag in flags.chars() {
        match flag {
            // "Passed": resent, forwarded or bounced. IMAP has no system flag for it;
            // $Forwarded is the registered keyword with that meaning (RFC 5550 §5.9).
            'P' => message.add_keyword("$Forwarded"),
            'R' => message.answered = true,
            'S' => message.seen = true,
            'T' => message.deleted = true,
            'D' => message.draft = true,
            'F' => message.flagged = true,
            'a'..='z' => {
                let index = usize::from(flag as u8 - b'a');
                // A letter without a line in dovecot-keywords has no name to import.
                if let Some(Some(keyword)) = keywords.get(index) {
                    message.add_keyword(keyword);
                }
            }
            // Other letters are other programs' private flags.
            _ => {}
        }
    }
}

/// The message's arrival time: the earlier of the file name's leading unix timestamp
/// (the delivery time the maildir spec puts before the first '.') and the file's
/// modification time.
///
/// Why the earlier: Dovecot takes INTERNALDATE from the mtime and sets the mtime to
/// the date given by IMAP APPEND, while the name keeps the time the file was written;
/// so for mail a migration tool APPENDed, the older mtime is the true arrival date.
/// When an export was copied without keeping mtimes (`cp`, some archivers), the mtime
/// becomes the copy time and the name's timestamp is the older, true one. For mail
/// delivered normally the two agree.
fn internal_date(file_name: &str, mtime: Option<SystemTime>) -> Option<i64> {
    let from_name = leading_timestamp(file_name);
    let from_mtime = mtime.and_then(unix_seconds);
    match (from_name, from_mtime) {
        (Some(name), Some(mtime)) => Some(name.min(mtime)),
        (name, mtime) => name.or(mtime),
    }
}

fn leading_timestamp(file_name: &str) -> Option<i64> {
    let head = file_name.split('.').next()?;
    // Up to 12 digits covers any real date and keeps the parse from overflowing.
    if head.is_empty() || head.len() > 12 || !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    head.parse().ok()
}

fn unix_seconds(time: SystemTime) -> Option<i64> {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).ok(),
        Err(before) => i64::try_from(before.duration().as_secs()).ok().map(|s| -s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn maildir(root: &Path) -> PathBuf {
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        root.to_path_buf()
    }

    fn put(dir: &Path, sub: &str, name: &str, bytes: &[u8], mtime: Option<i64>) -> PathBuf {
        let path = dir.join(sub).join(name);
        fs::write(&path, bytes).unwrap();
        if let Some(secs) = mtime {
            let time = UNIX_EPOCH + Duration::from_secs(secs as u64);
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(time)
                .unwrap();
        }
        path
    }

    fn read_all(dir: &Path) -> Vec<ExportedMessage> {
        Maildir::open(dir)
            .unwrap()
            .messages()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn flags_come_from_the_info_suffix() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = maildir(tmp.path());
        put(&dir, "cur", "1000.a.host:2,FRS", b"A", Some(5000));
        put(&dir, "cur", "1001.b.host:2,DT", b"B", Some(5000));
        put(&dir, "cur", "1002.c.host:2,P", b"C", Some(5000));
        put(&dir, "cur", "1003.d.host:2,", b"D", Some(5000));
        // Unknown upper-case letters and the spec's experimental ":1," are ignored.
        put(&dir, "cur", "1004.e.host:1,S", b"E", Some(5000));
        put(&dir, "cur", "1005.f.host:2,SXZ", b"F", Some(5000));
        let m = read_all(&dir);
        assert_eq!(m.len(), 6);
        assert!(m[0].flagged && m[0].answered && m[0].seen && !m[0].deleted && !m[0].draft);
        assert!(m[1].draft && m[1].deleted && !m[1].seen);
        assert_eq!(m[2].keywords, vec!["$Forwarded".to_owned()]);
        assert!(!m[2].seen && !m[2].answered);
        assert!(!m[3].seen && m[3].keywords.is_empty());
        assert!(!m[4].seen);
        assert!(m[5].seen && !m[5].flagged);
    }

    #[test]
    fn windows_exports_use_a_bang_before_the_info() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = maildir(tmp.path());
        put(&dir, "cur", "1000.a.host!2,FS", b"A", None);
        let m = read_all(&dir);
        assert!(m[0].seen && m[0].flagged);
    }

    #[test]
    fn new_messages_are_unseen_and_tmp_and_dot_files_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = maildir(tmp.path());
        put(&dir, "new", "1000.a.host", b"new one", None);
        put(&dir, "tmp", "1001.b.host", b"half written", None);
        put(&dir, "cur", ".hidden:2,S", b"not mail", None);
        fs::create_dir(dir.join("cur").join("1002.dir")).unwrap();
        let md = Maildir::open(&dir).unwrap();
        assert_eq!(md.len(), 1);
        let m: Vec<_> = md.messages().collect::<Result<_, _>>().unwrap();
        assert_eq!(m[0].raw, b"new one");
        assert!(!m[0].seen);
    }

    #[test]
    fn dovecot_keywords_file_names_the_lowercase_letters() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = maildir(tmp.path());
        fs::write(
            dir.join(KEYWORDS_FILE),
            "0 $Junk\r\n1 project-x\nnonsense\n3 two words\n99 out-of-range\n25 last\n",
        )
        .unwrap();
        // 'c' has no line, 'd' had an invalid keyword: both are dropped.
        put(&dir, "cur", "1000.a.host:2,Sabcdz", b"A", None);
        let m = read_all(&dir);
        assert!(m[0].seen);
        assert_eq!(m[0].keywords, vec!["$Junk", "project-x", "last"]);
    }

    #[test]
    fn bytes_are_exact_crlf_and_no_trailing_newline() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = maildir(tmp.path());
        let crlf = b"Subject: a\r\n\r\nbody\r\nFrom here\r\n";
        let bare = b"Subject: b\n\nno newline at the end";
        put(&dir, "cur", "1000.a.host:2,S", crlf, None);
        put(&dir, "cur", "1001.b.host:2,S", bare, None);
        let m = read_all(&dir);
        assert_eq!(m[0].raw, crlf);
        assert_eq!(m[1].raw, bare);
        assert!(m[0].source.ends_with("1000.a.host:2,S"));
    }

    #[test]
    fn internal_date_is_the_earlier_of_name_and_mtime_and_orders_the_import() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = maildir(tmp.path());
        // APPENDed through Dovecot: old mtime, name written at migration time.
        put(&dir, "cur", "1700000000.a.host:2,S", b"appended", Some(1_500_000_000));
        // Copied without keeping mtimes: the name is older.
        put(&dir, "cur", "1400000000.b.host:2,S", b"copied", Some(1_750_000_000));
        // No timestamp in the name: the mtime.
        put(&dir, "new", "courier-name", b"mtime only", Some(1_600_000_000));
        // Same date as the copied one: file name breaks the tie.
        put(&dir, "new", "1400000000.a.host", b"tie", Some(1_750_000_000));
        let m = read_all(&dir);
        let got: Vec<_> = m.iter().map(|m| (m.raw.as_slice(), m.internal_date)).collect();
        assert_eq!(
            got,
            vec![
                (&b"tie"[..], Some(1_400_000_000)),
                (&b"copied"[..], Some(1_400_000_000)),
                (&b"appended"[..], Some(1_500_000_000)),
                (&b"mtime only"[..], Some(1_600_000_000)),
            ]
        );
    }

    #[test]
    fn too_large_message_is_an_error_and_the_rest_still_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = maildir(tmp.path());
        put(&dir, "cur", "1000.a.host:2,S", b"0123456789", None);
        put(&dir, "cur", "1001.b.host:2,S", b"small", None);
        let md = Maildir::open(&dir).unwrap().with_max_message_size(8);
        let results: Vec<_> = md.messages().collect();
        match &results[0] {
            Err(ExportError::TooLarge { size, limit, .. }) => {
                assert_eq!((*size, *limit), (10, 8));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(results[1].as_ref().unwrap().raw, b"small");
    }

    #[test]
    fn not_a_maildir_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Maildir::open(tmp.path()).unwrap_err();
        assert!(matches!(err, ExportError::NotMaildir { .. }), "{err}");
        assert!(err.to_string().contains("cur/"));
        let err = Maildir::open(&tmp.path().join("missing")).unwrap_err();
        assert!(matches!(err, ExportError::Io { .. }), "{err}");
        assert!(matches!(
            folders(tmp.path()).unwrap_err(),
            ExportError::NotMaildir { .. }
        ));
    }

    #[test]
    fn maildir_plus_plus_tree_lists_its_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let root = maildir(tmp.path());
        maildir(&root.join(".Work"));
        maildir(&root.join(".Work.Reports"));
        maildir(&root.join(".Entw&APw-rfe"));
        maildir(&root.join(".R&-D"));
        // Not maildirs: skipped.
        fs::create_dir(root.join(".notmuch")).unwrap();
        fs::write(root.join(".dovecot.lda-dupes"), "").unwrap();
        fs::create_dir(root.join("plain")).unwrap();
        let got = folders(&root).unwrap();
        let names: Vec<_> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["INBOX", "Entwürfe", "R&D", "Work", "Work/Reports"]);
        assert_eq!(got[0].1, root);
        assert_eq!(got[4].1, root.join(".Work.Reports"));
    }

    #[test]
    fn tree_without_messages_at_the_root_has_no_inbox() {
        let tmp = tempfile::tempdir().unwrap();
        maildir(&tmp.path().join(".Archive"));
        let got = folders(tmp.path()).unwrap();
        assert_eq!(got, vec![("Archive".to_owned(), tmp.path().join(".Archive"))]);
    }

    #[test]
    fn empty_folder_level_is_malformed() {
        let tmp = tempfile::tempdir().unwrap();
        maildir(&tmp.path().join(".A..B"));
        let err = folders(tmp.path()).unwrap_err();
        assert!(matches!(err, ExportError::Malformed { .. }), "{err}");
    }

    #[test]
    fn modified_utf7_folder_names() {
        assert_eq!(
            folder_name(".Entw&APw-rfe.&ZeVnLIqe-").as_deref(),
            Ok("Entwürfe/日本語")
        );
        // Not modified UTF-7: kept as on disk.
        assert_eq!(folder_name(".R&D").as_deref(), Ok("R&D"));
        assert_eq!(folder_name(".Entwürfe & Co").as_deref(), Ok("Entwürfe & Co"));
    }

    #[test]
    fn timestamps_from_names() {
        assert_eq!(
            leading_timestamp("1708031310.M769290P3712350.nine,S=7898,W=8002:2,Sa"),
            Some(1_708_031_310)
        );
        assert_eq!(leading_timestamp("abc.def"), None);
        assert_eq!(leading_timestamp("99999999999999999999.x"), None);
        assert_eq!(leading_timestamp(""), None);
        assert_eq!(info_flags("1.a.host,S=12:2,FS"), Some("FS"));
        assert_eq!(info_flags("1.a.host"), None);
    }
}

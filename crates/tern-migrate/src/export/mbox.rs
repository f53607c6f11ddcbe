//! Reading an exported mbox file, streaming.
//!
//! The mbox family is described in RFC 4155 (Appendix A) and, for the quoting
//! variants, in qmail's mbox(5) (<http://qmail.org/man/man5/mbox.html>) and
//! <https://www.loc.gov/preservation/digital/formats/fdd/fdd000385.shtml>:
//!
//! - Each message is preceded by a separator line `From SENDER DATE`, DATE in asctime
//!   form (`Thu Jan  1 00:00:00 2026`), and followed by one blank line that the writer
//!   adds; neither belongs to the message.
//! - A message line that itself starts with `From ` is quoted as `>From ` so it cannot
//!   be taken for a separator. In mboxrd, lines already quoted (`>From `, `>>From `)
//!   gain one more `>`, so that reading can remove exactly one; mboxo (Python's
//!   `mailbox`, mutt) quotes only `From `. We undo mboxrd quoting: for a message
//!   written as mboxo, that restores every `From ` line, and only a line that was
//!   already `>From ` in the original loses its `>` — the format cannot tell the two
//!   apart.
//!
//! Writers disagree on how loosely a separator may be recognised, so we keep to the
//! strict reading: a separator is a `From ` line at the start of the file, or one that
//! follows a blank line *and* whose rest is a sender and a date. Any other `From ` line
//! (an unquoted one in a body, a sentence that happens to start with "From ") stays in
//! the message.
//!
//! Flags live in headers that mail readers add: `Status:` and `X-Status:` (mutt,
//! Dovecot, Python's `mailbox`), `X-Mozilla-Status:` and `X-Mozilla-Keys:`
//! (Thunderbird), `X-Keywords:` (Dovecot). They are read but left in the message:
//! Tern stores messages byte-exact.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::iter::FusedIterator;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::{DEFAULT_MAX_MESSAGE_SIZE, ExportError, ExportedMessage};

/// The most we read as one piece of a line. A longer line is handled in pieces, so a
/// file without newlines cannot make us read it whole; separator lines are far shorter.
const MAX_CHUNK: u64 = 64 * 1024;

/// An mbox file being read; it is an iterator over its messages.
///
/// Reading stops after an I/O error (the rest of the file cannot be trusted to be
/// where we think); a message over the size limit yields [`ExportError::TooLarge`] and
/// reading goes on with the next one.
pub struct Mbox<R = BufReader<File>> {
    reader: R,
    path: PathBuf,
    len_bytes: u64,
    bytes_read: u64,
    /// The separator line of the next message, already read.
    next_separator: Option<Vec<u8>>,
    /// Messages handed out so far, for `mbox:PATH#N`.
    count: usize,
    max_message_size: u64,
    chunk_limit: u64,
    failed: bool,
    chunk: Vec<u8>,
}

impl Mbox {
    /// Opens the mbox file at `path` and checks that it looks like one (its first line,
    /// after any blank lines, starts with `From `). An empty file is an empty mbox.
    pub fn open(path: &Path) -> Result<Mbox, ExportError> {
        let file = File::open(path).map_err(|e| ExportError::io(path, e))?;
        let meta = file.metadata().map_err(|e| ExportError::io(path, e))?;
        if !meta.is_file() {
            return Err(ExportError::NotMbox {
                path: path.to_path_buf(),
                reason: "it is a directory or a special file, not a regular file".to_owned(),
            });
        }
        Mbox::from_reader(BufReader::with_capacity(256 * 1024, file), path, meta.len())
    }
}

impl<R: BufRead> Mbox<R> {
    /// Reads an mbox from any buffered reader; `path` names it in errors and sources.
    pub(crate) fn from_reader(reader: R, path: &Path, len_bytes: u64) -> Result<Self, ExportError> {
        let mut mbox = Mbox {
            reader,
            path: path.to_path_buf(),
            len_bytes,
            bytes_read: 0,
            next_separator: None,
            count: 0,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            chunk_limit: MAX_CHUNK,
            failed: false,
            chunk: Vec::new(),
        };
        mbox.find_first_separator()?;
        Ok(mbox)
    }

    /// Sets the largest message handed out; see [`ExportError::TooLarge`].
    pub fn with_max_message_size(mut self, limit: u64) -> Self {
        self.max_message_size = limit;
        self
    }

    /// The file's size in bytes: the total for a byte-based progress bar.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// How many bytes of the file have been read so far: the position for a progress
    /// bar (call it between `next()` calls, e.g. in a `while let` loop). It includes
    /// the next message's separator line, which is read ahead.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Reads the next piece of a line into `self.chunk`: up to and including a
    /// newline, or `chunk_limit` bytes. Returns `false` at the end of the file.
    fn read_chunk(&mut self) -> Result<bool, ExportError> {
        self.chunk.clear();
        let n = (&mut self.reader)
            .take(self.chunk_limit)
            .read_until(b'\n', &mut self.chunk)
            .map_err(|e| ExportError::io(&self.path, e))?;
        self.bytes_read += n as u64;
        Ok(n > 0)
    }

    fn find_first_separator(&mut self) -> Result<(), ExportError> {
        loop {
            if !self.read_chunk()? {
                return Ok(()); // empty, or only blank lines: no messages
            }
            if is_blank(&self.chunk) {
                continue;
            }
            if !self.chunk.starts_with(b"From ") {
                return Err(ExportError::NotMbox {
                    path: self.path.clone(),
                    reason: "its first line does not start with \"From \"".to_owned(),
                });
            }
            // At the start of the file any "From " line is the separator, even one
            // whose date we cannot read; that message then has no internal date.
            let separator = std::mem::take(&mut self.chunk);
            // A separator longer than one chunk: drop the rest of the line, or it
            // would become the message's first line.
            let mut complete = separator.ends_with(b"\n");
            while !complete && self.read_chunk()? {
                complete = self.chunk.ends_with(b"\n");
            }
            self.next_separator = Some(separator);
            return Ok(());
        }
    }

    /// Reads one message's lines, up to the next separator or the end of the file.
    /// Returns the message bytes (`None` if over the size limit) and its size.
    fn read_message(&mut self) -> Result<(Option<Vec<u8>>, u64), ExportError> {
        let limit = self.max_message_size;
        let mut raw = Some(Vec::new());
        let mut size: u64 = 0;
        let mut at_line_start = true;
        let mut last_line_blank = false;
        let mut last_len = 0;
        while self.read_chunk()? {
            let complete = self.chunk.ends_with(b"\n");
            if at_line_start && complete && last_line_blank && separator_date(&self.chunk).is_some() {
                self.next_separator = Some(std::mem::take(&mut self.chunk));
                break;
            }
            let blank = at_line_start && is_blank(&self.chunk);
            // mboxrd: ^>+From  loses one '>'.
            let unquote = at_line_start && is_quoted_from(&self.chunk);
            let bytes = if unquote { &self.chunk[1..] } else { &self.chunk[..] };
            size += bytes.len() as u64;
            // Keep two bytes of slack for the blank line that may be stripped below, and
            // stop holding the message once it is surely too large.
            if size > limit.saturating_add(2) {
                raw = None;
            }
            if let Some(raw) = raw.as_mut() {
                raw.extend_from_slice(bytes);
            }
            last_line_blank = blank;
            last_len = bytes.len();
            at_line_start = complete;
        }
        // The blank line before the next separator, or at the end of the file, is the
        // writer's, not the message's.
        if last_line_blank {
            size -= last_len as u64;
            if let Some(raw) = raw.as_mut() {
                raw.truncate(raw.len().saturating_sub(last_len));
            }
        }
        if size > limit {
            raw = None;
        }
        Ok((raw, size))
    }
}

impl<R: BufRead> Iterator for Mbox<R> {
    type Item = Result<ExportedMessage, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let separator = self.next_separator.take()?;
        self.count += 1;
        let location = format!("mbox:{}#{}", self.path.display(), self.count);
        let (raw, size) = match self.read_message() {
            Ok(read) => read,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        let Some(raw) = raw else {
            return Some(Err(ExportError::TooLarge {
                location,
                size,
                limit: self.max_message_size,
            }));
        };
        let mut message = ExportedMessage::new(raw, location);
        message.internal_date = separator_date(&separator).flatten();
        apply_flag_headers(&mut message);
        Some(Ok(message))
    }
}

impl<R: BufRead> FusedIterator for Mbox<R> {}

impl<R> std::fmt::Debug for Mbox<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbox")
            .field("path", &self.path)
            .field("len_bytes", &self.len_bytes)
            .field("bytes_read", &self.bytes_read)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

fn trim_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

fn is_quoted_from(line: &[u8]) -> bool {
    let quotes = line.iter().take_while(|&&b| b == b'>').count();
    quotes > 0 && line[quotes..].starts_with(b"From ")
}

/// If `line` is a separator (`From SENDER DATE`), the date it carries: `Some(None)` when
/// the date has the shape of one but is not a real time (Feb 30, hour 25). `None` when
/// the line is not a separator.
fn separator_date(line: &[u8]) -> Option<Option<i64>> {
    let rest = trim_line_ending(line.strip_prefix(b"From ")?);
    let text = String::from_utf8_lossy(rest);
    let tokens: Vec<&str> = text.split_ascii_whitespace().collect();
    // "From sender date"; some writers leave the sender out.
    if tokens.len() >= 2
        && let Some(date) = parse_date(&tokens[1..])
    {
        return Some(date);
    }
    parse_date(&tokens)
}

/// Parses the date of a separator line. asctime (`Thu Jan  1 00:00:00 2026`) is what
/// writers should use; we also take a zone before or after the year
/// (`... 00:00:00 2026 +0100`, `... 00:00:00 UTC 2026`), the RFC 5322 form some
/// exporters write (`Thu, 1 Jan 2026 00:00:00 +0000`) and UUCP's trailing
/// `remote from HOST`. Every token must be one of those parts, or this is prose.
fn parse_date(tokens: &[&str]) -> Option<Option<i64>> {
    if tokens.len() > 8 {
        return None;
    }
    let mut weekday = false;
    let mut month = None;
    let mut day = None;
    let mut time = None;
    let mut year = None;
    let mut offset = None;
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i].trim_end_matches(',');
        if token.eq_ignore_ascii_case("remote")
            && tokens.get(i + 1).is_some_and(|t| t.eq_ignore_ascii_case("from"))
            && tokens.len() == i + 3
        {
            break;
        }
        if !weekday && month.is_none() && is_weekday(token) {
            weekday = true;
        } else if month.is_none() && month_number(token).is_some() {
            month = month_number(token);
        } else if time.is_none() && token.contains(':') {
            time = Some(parse_time(token)?);
        } else if token.bytes().all(|b| b.is_ascii_digit()) && !token.is_empty() {
            if token.len() == 4 && year.is_none() {
                year = token.parse::<i32>().ok();
            } else if token.len() <= 2 && day.is_none() {
                day = token.parse::<u32>().ok();
            } else {
                return None;
            }
        } else if offset.is_none() {
            offset = Some(zone_offset(token)?);
        } else {
            return None;
        }
        i += 1;
    }
    let ((month, day), ((hour, minute, second), year)) = month.zip(day).zip(time.zip(year))?;
    let timestamp = NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|date| date.and_hms_opt(hour, minute, second))
        .map(|moment| moment.and_utc().timestamp() - offset.unwrap_or(0));
    Some(timestamp)
}

fn is_weekday(token: &str) -> bool {
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .iter()
        .any(|d| d.eq_ignore_ascii_case(token))
}

fn month_number(token: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let index = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(token))?;
    u32::try_from(index + 1).ok()
}

/// `H:MM` or `HH:MM:SS`.
fn parse_time(token: &str) -> Option<(u32, u32, u32)> {
    let mut parts = token.split(':');
    let mut field = || -> Option<Option<u32>> {
        match parts.next() {
            None => Some(None),
            Some(p) if (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()),
            Some(_) => None,
        }
    };
    let hour = field()??;
    let minute = field()??;
    let second = field()?.unwrap_or(0);
    if parts.next().is_some() {
        return None;
    }
    Some((hour, minute, second))
}

/// A zone as seconds east of UTC: `+hhmm`/`-hhmm`, or a name RFC 5322 §4.3 knows.
fn zone_offset(token: &str) -> Option<i64> {
    if let Some(sign) = token
        .strip_prefix('+')
        .map(|_| 1)
        .or(token.strip_prefix('-').map(|_| -1))
    {
        let digits = &token[1..];
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let hours: i64 = digits[..2].parse().ok()?;
        let minutes: i64 = digits[2..].parse().ok()?;
        return Some(sign * (hours * 3600 + minutes * 60));
    }
    let hours = match token.to_ascii_uppercase().as_str() {
        "UT" | "UTC" | "GMT" | "Z" => 0,
        "EDT" => -4,
        "EST" | "CDT" => -5,
        "CST" | "MDT" => -6,
        "MST" | "PDT" => -7,
        "PST" => -8,
        _ => return None,
    };
    Some(hours * 3600)
}

/// Reads the flag headers of the message's header section (up to the first blank
/// line) into its flags and keywords.
fn apply_flag_headers(message: &mut ExportedMessage) {
    const WANTED: [&str; 5] = ["status", "x-status", "x-mozilla-status", "x-keywords", "x-mozilla-keys"];
    let mut fields: Vec<(String, String)> = Vec::new();
    // Whether the field being unfolded is one we keep.
    let mut keeping = false;
    for line in message.raw.split_inclusive(|&b| b == b'\n') {
        let line = trim_line_ending(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // RFC 5322 §2.2.3: a folded continuation of the previous field.
            if keeping && let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(String::from_utf8_lossy(line).trim());
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            keeping = false;
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_ascii_lowercase();
        keeping = WANTED.contains(&name.as_str());
        if keeping {
            let value = String::from_utf8_lossy(&line[colon + 1..]).trim().to_owned();
            fields.push((name, value));
        }
    }

    for (name, value) in &fields {
        match name.as_str() {
            // "O" (old: no longer \Recent) has nothing to carry over.
            "status" => message.seen |= value.contains('R'),
            "x-status" => {
                message.answered |= value.contains('A');
                message.flagged |= value.contains('F');
                message.draft |= value.contains('T');
                message.deleted |= value.contains('D');
            }
            // Thunderbird's flag word in hex (nsMsgMessageFlags): Read 0x1,
            // Replied 0x2, Marked 0x4, Expunged 0x8, Forwarded 0x1000.
            "x-mozilla-status" => {
                if let Ok(bits) = u32::from_str_radix(value, 16) {
                    message.seen |= bits & 0x0001 != 0;
                    message.answered |= bits & 0x0002 != 0;
                    message.flagged |= bits & 0x0004 != 0;
                    message.deleted |= bits & 0x0008 != 0;
                    if bits & 0x1000 != 0 {
                        message.add_keyword("$Forwarded");
                    }
                }
            }
            "x-keywords" | "x-mozilla-keys" => {
                for keyword in value.split(|c: char| c == ',' || c.is_ascii_whitespace()) {
                    if is_keyword_atom(keyword) {
                        message.add_keyword(keyword);
                    }
                }
            }
            _ => {}
        }
    }
}

/// An IMAP flag keyword is an atom (RFC 9051 §9, `flag-keyword`): printable ASCII
/// without specials; a system flag (`\Seen`) is not a keyword.
fn is_keyword_atom(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && !b"(){%*\"\\]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn mbox(bytes: &[u8]) -> Mbox<Cursor<Vec<u8>>> {
        Mbox::from_reader(Cursor::new(bytes.to_vec()), Path::new("test.mbox"), bytes.len() as u64).unwrap()
    }

    fn read(bytes: &[u8]) -> Vec<ExportedMessage> {
        mbox(bytes).collect::<Result<_, _>>().unwrap()
    }

    fn raws(bytes: &[u8]) -> Vec<Vec<u8>> {
        read(bytes).into_iter().map(|m| m.raw).collect()
    }

    const JAN_1_2026: i64 = 1_767_225_600;

    #[test]
    fn separators_and_the_blank_line_before_them_are_not_part_of_messages() {
        let file = b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n\
Subject: one\n\nfirst body\n\n\
From alice@example.com Mon Nov 23 10:00:00 2026\n\
Subject: two\n\nsecond body\n\n";
        let m = read(file);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].raw, b"Subject: one\n\nfirst body\n");
        assert_eq!(m[1].raw, b"Subject: two\n\nsecond body\n");
        assert_eq!(m[0].internal_date, Some(JAN_1_2026));
        assert_eq!(m[1].internal_date, Some(1_795_428_000));
        assert_eq!(m[0].source, "mbox:test.mbox#1");
        assert_eq!(m[1].source, "mbox:test.mbox#2");
    }

    #[test]
    fn body_ending_in_blank_lines_keeps_them() {
        let file = b"From a Thu Jan  1 00:00:00 2026\nS: 1\n\nbody\n\n\n\
From b Thu Jan  1 00:00:00 2026\nS: 2\n\nbody\n\n\n";
        assert_eq!(
            raws(file),
            vec![b"S: 1\n\nbody\n\n".to_vec(), b"S: 2\n\nbody\n\n".to_vec()]
        );
    }

    #[test]
    fn mboxrd_quoting_is_undone_once() {
        let file = b"From a Thu Jan  1 00:00:00 2026\n\
Subject: q\n\n>From the start\n>>From twice\n>>>From thrice\n> From not quoted\n>Fromage\nFrom\n\n";
        assert_eq!(
            raws(file),
            vec![
                b"Subject: q\n\nFrom the start\n>From twice\n>>From thrice\n> From not quoted\n>Fromage\nFrom\n"
                    .to_vec()
            ]
        );
    }

    #[test]
    fn from_lines_that_are_not_separators_stay_in_the_body() {
        let file = b"From a Thu Jan  1 00:00:00 2026\n\
Subject: prose\n\n\
line\n\
From b Thu Jan  1 00:00:00 2026\n\
\n\
From the desk of the editor\n\
\n\
From here to there, 10:00 on Jan 5 2026\n\
\n\
From c Fri Jan  2 00:00:00 2026\n\
Subject: real\n\nx\n";
        let m = read(file);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0].raw,
            b"Subject: prose\n\nline\nFrom b Thu Jan  1 00:00:00 2026\n\nFrom the desk of the editor\n\nFrom here to there, 10:00 on Jan 5 2026\n"
        );
        assert_eq!(m[1].raw, b"Subject: real\n\nx\n");
        assert_eq!(m[1].internal_date, Some(JAN_1_2026 + 86_400));
    }

    #[test]
    fn crlf_files_keep_crlf() {
        let file = b"From a Thu Jan  1 00:00:00 2026\r\n\
Subject: one\r\n\r\n>From body\r\n\r\n\
From b Thu Jan  1 00:00:00 2026\r\n\
Subject: two\r\n\r\nend\r\n\r\n";
        let m = read(file);
        assert_eq!(m[0].raw, b"Subject: one\r\n\r\nFrom body\r\n");
        assert_eq!(m[1].raw, b"Subject: two\r\n\r\nend\r\n");
        assert_eq!(m[1].internal_date, Some(JAN_1_2026));
    }

    #[test]
    fn message_without_trailing_newline_at_the_end_of_the_file() {
        let file = b"From a Thu Jan  1 00:00:00 2026\nSubject: x\n\nno newline";
        assert_eq!(raws(file), vec![b"Subject: x\n\nno newline".to_vec()]);
        // And an empty message between two separators.
        let file = b"From a Thu Jan  1 00:00:00 2026\n\nFrom b Thu Jan  1 00:00:00 2026\nS: b\n";
        assert_eq!(raws(file), vec![b"".to_vec(), b"S: b\n".to_vec()]);
    }

    #[test]
    fn empty_mbox_has_no_messages() {
        assert!(read(b"").is_empty());
        assert!(read(b"\n\r\n\n").is_empty());
    }

    #[test]
    fn a_file_that_is_not_an_mbox_is_refused() {
        let bytes = b"Subject: hello\n\nbody\n";
        let err = Mbox::from_reader(Cursor::new(bytes.to_vec()), Path::new("x"), 0).unwrap_err();
        assert!(matches!(err, ExportError::NotMbox { .. }), "{err}");
        assert!(err.to_string().contains("tern import maildir"));
    }

    #[test]
    fn flags_come_from_status_headers_which_stay_in_the_message() {
        let file = b"From a Thu Jan  1 00:00:00 2026\n\
Subject: 1\nStatus: RO\nX-Status: AF\n\nbody Status: nothing\n\n\
From a Thu Jan  1 00:00:00 2026\n\
Status: O\nx-status: DT\nSubject: 2\n\n\n\
From a Thu Jan  1 00:00:00 2026\n\
Subject: 3\n\nX-Status: AFDT\n";
        let m = read(file);
        assert!(m[0].seen && m[0].answered && m[0].flagged && !m[0].deleted && !m[0].draft);
        assert!(m[0].raw.starts_with(b"Subject: 1\nStatus: RO\nX-Status: AF\n"));
        assert!(!m[1].seen && m[1].deleted && m[1].draft && !m[1].answered);
        // A Status-like line in the body is not a header.
        assert!(!m[2].answered && !m[2].flagged && !m[2].deleted && !m[2].draft);
    }

    #[test]
    fn thunderbird_and_dovecot_flag_headers() {
        let file = b"From - Thu Jan  1 00:00:00 2026\n\
X-Mozilla-Status: 1005\nX-Mozilla-Status2: 00000000\n\
X-Mozilla-Keys: $label1 work                                   \n\
Subject: tb\n\nbody\n\n\
From dovecot Thu Jan  1 00:00:00 2026\n\
X-Keywords: $Junk\n project-x, \\Seen\n\nbody\n";
        let m = read(file);
        assert!(m[0].seen && m[0].flagged && !m[0].answered && !m[0].deleted);
        assert_eq!(m[0].keywords, vec!["$Forwarded", "$label1", "work"]);
        assert_eq!(m[0].internal_date, Some(JAN_1_2026));
        assert_eq!(m[1].keywords, vec!["$Junk", "project-x"]);
        assert!(!m[1].seen);
    }

    #[test]
    fn separator_dates() {
        let date = |line: &str| separator_date(line.as_bytes());
        assert_eq!(
            date("From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n"),
            Some(Some(JAN_1_2026))
        );
        assert_eq!(date("From Thu Jan  1 00:00:00 2026\n"), Some(Some(JAN_1_2026)));
        assert_eq!(
            date("From a@b Thu Jan 1 01:00:00 2026 +0100\r\n"),
            Some(Some(JAN_1_2026))
        );
        assert_eq!(date("From a@b Wed Dec 31 19:00:00 EST 2025\n"), Some(Some(JAN_1_2026)));
        assert_eq!(
            date("From a@b Thu, 1 Jan 2026 00:00:00 +0000\n"),
            Some(Some(JAN_1_2026))
        );
        assert_eq!(
            date("From a Thu Jan  1 00:00 2026 remote from uucphost\n"),
            Some(Some(JAN_1_2026))
        );
        // Date-shaped but not a real time: still a separator, no date.
        assert_eq!(date("From a Mon Feb 30 00:00:00 2026\n"), Some(None));
        assert_eq!(date("From a Thu Jan  1 25:00:00 2026\n"), Some(None));
        // Not separators.
        assert_eq!(date("From the desk of the editor\n"), None);
        assert_eq!(date("From a Thu Jan  1 2026\n"), None);
        assert_eq!(date("From a Thu Jan 00:00:00 2026\n"), None);
        assert_eq!(date("From a Thu Jan  1 00:00:00 2026 and more words\n"), None);
        assert_eq!(date("From a Thu Jan  1 00:00:00 2026 XYZ\n"), None);
        assert_eq!(date("Fromage\n"), None);
    }

    #[test]
    fn first_separator_with_unreadable_date_has_no_internal_date() {
        let m = read(b"From somebody sometime\nSubject: x\n\nbody\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].internal_date, None);
        assert_eq!(m[0].raw, b"Subject: x\n\nbody\n");
    }

    #[test]
    fn too_large_message_is_skipped_with_an_error() {
        let file = b"From a Thu Jan  1 00:00:00 2026\nSubject: big\n\n0123456789012345678901234567890123456789\n\n\
From b Thu Jan  1 00:00:00 2026\nS: ok\n\n";
        let results: Vec<_> = mbox(file).with_max_message_size(20).collect();
        assert_eq!(results.len(), 2);
        match &results[0] {
            Err(ExportError::TooLarge { location, size, limit }) => {
                assert_eq!(location, "mbox:test.mbox#1");
                assert_eq!((*size, *limit), (55, 20));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(results[1].as_ref().unwrap().raw, b"S: ok\n");
        // Exactly at the limit is fine, including the writer's blank line being stripped.
        let file = b"From a Thu Jan  1 00:00:00 2026\n0123456789\n\n";
        let results: Vec<_> = mbox(file).with_max_message_size(11).collect();
        assert_eq!(results[0].as_ref().unwrap().raw, b"0123456789\n");
    }

    #[test]
    fn long_lines_are_read_in_pieces_without_changing_them() {
        // With pieces of 40 bytes, a continuation piece that starts with ">From " or
        // "From " must not be unquoted or taken for a separator.
        let mut body = Vec::new();
        body.extend_from_slice(b"Subject: long\n\n");
        body.extend_from_slice(&[b'x'; 40]);
        body.extend_from_slice(b">From inside a long line\n");
        body.extend_from_slice(&[b'y'; 79]);
        body.extend_from_slice(b"\n");
        let mut file = b"From a Thu Jan  1 00:00:00 2026\n".to_vec();
        file.extend_from_slice(&body);
        file.extend_from_slice(b"\nFrom b Thu Jan  1 00:00:00 2026\nS: 2\n");
        let mut reader = mbox(&file);
        reader.chunk_limit = 40;
        let m: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].raw, body);
        assert_eq!(m[1].raw, b"S: 2\n");
    }

    #[test]
    fn progress_reaches_the_file_size() {
        let file = b"From a Thu Jan  1 00:00:00 2026\nS: 1\n\nFrom b Thu Jan  1 00:00:00 2026\nS: 2\n\n";
        let mut reader = mbox(file);
        assert_eq!(reader.len_bytes(), file.len() as u64);
        let mut seen = 0;
        while let Some(message) = reader.next() {
            message.unwrap();
            seen += 1;
            assert!(reader.bytes_read() <= reader.len_bytes());
        }
        assert_eq!(seen, 2);
        assert_eq!(reader.bytes_read(), file.len() as u64);
        assert!(reader.next().is_none());
    }

    #[test]
    fn open_reads_a_file_and_refuses_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("box");
        std::fs::write(&path, b"From a Thu Jan  1 00:00:00 2026\nS: 1\n\n").unwrap();
        let m: Vec<_> = Mbox::open(&path).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(m[0].raw, b"S: 1\n");
        assert_eq!(m[0].source, format!("mbox:{}#1", path.display()));
        assert!(matches!(
            Mbox::open(dir.path()),
            Err(ExportError::NotMbox { .. }) | Err(ExportError::Io { .. })
        ));
        assert!(matches!(
            Mbox::open(&dir.path().join("missing")),
            Err(ExportError::Io { .. })
        ));
    }
}

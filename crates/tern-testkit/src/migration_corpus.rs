//! A whole mailbox as an old provider holds it, for migration tests and benchmarks:
//! folders (INBOX first, the special-use ones, nested ones, names that need modified
//! UTF-7 or quoting on the wire), and in them messages with flags, keywords and an
//! INTERNALDATE, in the MIME shapes and header quirks a real mailbox has collected over
//! twenty years.
//!
//! Everything follows from [`CorpusSpec::seed`], so a failing migration test can be
//! replayed byte for byte. Each message draws from its own random stream (seed and
//! index), so one message does not change when another's shape does.
//!
//! Messages use CRLF line endings only and end with CRLF: Dovecot stores LF and serves
//! CRLF, so a bare LF would come back as CRLF and no byte-exact comparison could pass.
//!
//! ```
//! use tern_testkit::migration_corpus::{mailbox, CorpusSpec};
//! let folders = mailbox(&CorpusSpec::small());
//! assert_eq!(folders[0].name, "INBOX");
//! let total: usize = folders.iter().map(|f| f.messages.len()).sum();
//! assert_eq!(total, CorpusSpec::small().messages);
//! ```

use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::corpus::{NAMES, WORDS, sentence};

/// One message as the old provider holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusMessage {
    /// The message exactly as appended: CRLF line endings, ending with CRLF.
    pub raw: Vec<u8>,
    /// System flags (RFC 3501 §2.3.2): `\Seen`, `\Answered`, `\Flagged`, `\Deleted`,
    /// `\Draft`. Never `\Recent`, which a client cannot set.
    pub flags: Vec<String>,
    /// Keywords (RFC 3501 §2.3.2 flag-keyword), e.g. `$Forwarded`, `Work`, `project_x`.
    pub keywords: Vec<String>,
    /// INTERNALDATE as seconds since the Unix epoch.
    pub internal_date: i64,
    /// The zone the INTERNALDATE is written in when appended, minutes east of UTC
    /// (+0530 is 330). Servers may keep only the instant (Dovecot's maildir does).
    pub tz_offset_minutes: i32,
}

impl CorpusMessage {
    /// The INTERNALDATE in RFC 3501 §9 `date-time` form, "05-Mar-2019 14:03:22 +0530",
    /// as APPEND takes it (without the quotes).
    pub fn internal_date_imap(&self) -> String {
        imap_date_time(self.internal_date, self.tz_offset_minutes)
    }

    /// Flags then keywords, as one space-separated list for an APPEND or STORE
    /// (without the parentheses).
    pub fn flag_list(&self) -> String {
        self.flags
            .iter()
            .chain(&self.keywords)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One folder and its messages, in UID order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusFolder {
    /// UTF-8 name with `/` between hierarchy levels ("Archive/2019"). Parents come
    /// before their children in [`mailbox`]'s list. No name contains `.`, so the
    /// corpus also fits a server whose separator is `.`.
    pub name: String,
    /// The RFC 6154 special-use attribute the folder has at a provider that announces
    /// them (`\Sent`, `\Drafts`, `\Trash`, `\Junk`, `\Archive`).
    pub special_use: Option<&'static str>,
    pub messages: Vec<CorpusMessage>,
}

/// What to generate. The fields are public so a test can start from a preset and
/// change one thing (`CorpusSpec { seed: 7, ..CorpusSpec::small() }`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusSpec {
    pub seed: u64,
    /// Messages over all folders together.
    pub messages: usize,
    /// Folders including INBOX (at least one is made). The first 13 are fixed (see
    /// [`mailbox`]); more are "Archive/2020", "Archive/2021", …
    pub folders: usize,
    /// How many of the messages are large ones, sized by `large_size`.
    pub large_messages: usize,
    /// Bounds of an ordinary message's size in bytes. Sizes are log-uniform between
    /// them, so small messages are common and big ones rare, as in real mailboxes.
    pub message_size: (usize, usize),
    /// Bounds of the large messages' sizes in bytes, spread evenly from the first to
    /// the second (2 large messages with (1 MB, 3 MB) are 1 MB and 3 MB).
    pub large_size: (usize, usize),
}

impl CorpusSpec {
    /// About 120 messages (≈ 5 MB) in 10 folders, two of them large (≈ 1 MB and
    /// ≈ 3 MB): every shape and folder kind, small enough for a unit test.
    pub fn small() -> CorpusSpec {
        CorpusSpec {
            seed: 1,
            messages: 120,
            folders: 10,
            large_messages: 2,
            message_size: (1_000, 20_000),
            large_size: (1_000_000, 3_000_000),
        }
    }

    /// 10,000 messages in 13 folders, about 480 MB: mostly 5–100 KB, and 30 between 1
    /// and 10 MB. The size of a mid-sized company mailbox, for migration benchmarks.
    pub fn bench() -> CorpusSpec {
        CorpusSpec {
            seed: 2026,
            messages: 10_000,
            folders: 13,
            large_messages: 30,
            message_size: (5_000, 100_000),
            large_size: (1_000_000, 10_000_000),
        }
    }
}

/// The fixed folders: name, special use, and share of the messages (weights).
const FOLDERS: &[(&str, Option<&str>, usize)] = &[
    ("INBOX", None, 30),
    ("Sent", Some("\\Sent"), 14),
    ("Drafts", Some("\\Drafts"), 2),
    ("Trash", Some("\\Trash"), 6),
    ("Junk", Some("\\Junk"), 4),
    ("Archive", Some("\\Archive"), 8),
    ("Archive/2019", None, 8),
    // Quoted on the wire.
    ("Folder With Space", None, 5),
    // "&" is "&-" and "ä" a base64 run in modified UTF-7 (RFC 3501 §5.1.3).
    ("Käse & Brot", None, 3),
    ("Käse & Brot/Ünïcode", None, 4),
    // Outside the BMP: a UTF-16 surrogate pair in modified UTF-7.
    ("Receipts 🧾", None, 3),
    ("Projects", None, 3),
    ("Projects/Migration", None, 5),
];
/// The weight of each folder beyond [`FOLDERS`].
const EXTRA_FOLDER_WEIGHT: usize = 4;

/// Custom keywords: IANA-registered ones, client labels, and plain words.
const KEYWORDS: &[&str] = &[
    "$Forwarded",
    "$MDNSent",
    "$Label1",
    "$Label2",
    "$Label3",
    "Work",
    "Personal",
    "project_x",
];

/// Subjects for ISO-8859-1 Q-encoding: only Latin-1 characters.
const LATIN1_SUBJECTS: &[&str] = &[
    "Grüße aus Köln",
    "Réunion à 14h",
    "Smørrebrød zum Mittag",
    "Año nuevo, señor",
    "Café für das Büro",
];
/// Subjects for UTF-8 B-encoding (and raw 8-bit headers): beyond Latin-1.
const UTF8_SUBJECTS: &[&str] = &[
    "Привет из Москвы",
    "会议安排 next week",
    "Überweisung €500 erhalten",
    "🎉 Launch day",
    "Ελληνικά test",
];

/// Zones of INTERNALDATEs and Date headers, minutes east of UTC: +0100, -0500, +0530,
/// +0000, and -0330 (a negative zone with minutes).
const ZONES: &[i32] = &[60, -300, 330, 0, -210];

/// 2005-01-01T00:00:00Z and 2026-02-28T23:59:59Z: the span of INTERNALDATEs. It
/// ends in the past because Dovecot replaces an APPEND's INTERNALDATE that lies in the
/// future with the time of the APPEND, so later dates would not round-trip.
const FIRST_DATE: i64 = 1_104_537_600;
const LAST_DATE: i64 = 1_772_323_199;

/// Random streams drawn per message, so that each is independent of the others.
const STREAM_SIZE: u64 = 1;
const STREAM_MESSAGE: u64 = 2;

/// Generates the mailbox `spec` describes: INBOX first, parents before children, and
/// exactly `spec.messages` messages over all folders (each folder gets at least one
/// when there are enough). Among them:
///
/// - text/plain in UTF-8 (8bit) and US-ASCII (7bit), multipart/alternative with a
///   quoted-printable HTML part, multipart/mixed with base64 attachments (some with
///   RFC 2231 file names), a forwarded message/rfc822, and alternative nested in mixed;
/// - Subjects and From names RFC 2047-encoded as `=?UTF-8?B?…?=` and
///   `=?ISO-8859-1?Q?…?=`, and some raw UTF-8 headers (RFC 6532 style);
/// - every 23rd message without a Message-ID; every 37th reusing an earlier message's
///   Message-ID with a different body; every 53rd an exact copy (same bytes, flags,
///   keywords and date) of the message before it in the same folder;
/// - INTERNALDATEs from January 2005 to February 2026, rising within a folder, in
///   several zones.
pub fn mailbox(spec: &CorpusSpec) -> Vec<CorpusFolder> {
    let plan = plan(spec);
    let mut folders = Vec::with_capacity(plan.folders.len());
    let mut i = 0;
    for (name, special_use, count) in plan.folders {
        let mut messages: Vec<CorpusMessage> = Vec::with_capacity(count);
        for k in 0..count {
            let exact_copy = i % 53 == 20 && k > 0 && !plan.large[i] && !plan.large[i - 1];
            let message = match messages.last() {
                Some(previous) if exact_copy => previous.clone(),
                _ => {
                    let slot = Slot {
                        seed: spec.seed,
                        index: i,
                        position: (k, count),
                        special_use,
                        size: plan.sizes[i],
                        large: plan.large[i],
                    };
                    generate(&slot)
                }
            };
            messages.push(message);
            i += 1;
        }
        folders.push(CorpusFolder {
            name,
            special_use,
            messages,
        });
    }
    folders
}

/// Bytes of all messages together.
pub fn total_bytes(folders: &[CorpusFolder]) -> usize {
    folders.iter().flat_map(|f| &f.messages).map(|m| m.raw.len()).sum()
}

/// Folders with their message counts, and every message's target size and whether it
/// is a large one, by index over all folders in order. Cheap: sizes are known without
/// generating a byte, which lets a test check the bench preset's total quickly.
struct Plan {
    folders: Vec<(String, Option<&'static str>, usize)>,
    sizes: Vec<usize>,
    large: Vec<bool>,
}

fn plan(spec: &CorpusSpec) -> Plan {
    let n = spec.messages;
    let folder_count = spec.folders.max(1);
    let mut folders: Vec<(String, Option<&'static str>, usize)> = Vec::with_capacity(folder_count);
    let mut weights = Vec::with_capacity(folder_count);
    for f in 0..folder_count {
        match FOLDERS.get(f) {
            Some(&(name, special_use, weight)) => {
                folders.push((name.to_string(), special_use, 0));
                weights.push(weight);
            }
            None => {
                folders.push((format!("Archive/{}", 2020 + f - FOLDERS.len()), None, 0));
                weights.push(EXTRA_FOLDER_WEIGHT);
            }
        }
    }
    // Apportion by weight, rounding down; INBOX takes the remainder. Then every empty
    // folder takes one from the fullest, so each folder has mail when n allows.
    let total_weight: usize = weights.iter().sum();
    let mut counts: Vec<usize> = weights.iter().map(|w| n * w / total_weight).collect();
    counts[0] += n - counts.iter().sum::<usize>();
    for f in 0..folder_count {
        if counts[f] == 0 {
            let (fullest, &most) = counts.iter().enumerate().max_by_key(|&(_, c)| *c).unwrap_or((0, &0));
            if most > 1 {
                counts[fullest] -= 1;
                counts[f] += 1;
            }
        }
    }
    for (folder, count) in folders.iter_mut().zip(counts) {
        folder.2 = count;
    }

    // Large messages at evenly spaced indices (the middles of L equal runs), so they
    // fall into several folders; their sizes evenly spaced over `large_size`.
    let mut large = vec![false; n];
    let mut sizes = vec![0; n];
    let l = spec.large_messages.min(n);
    let (large_min, large_max) = spec.large_size;
    for k in 0..l {
        let index = (2 * k + 1) * n / (2 * l);
        large[index] = true;
        sizes[index] = if l == 1 {
            large_min
        } else {
            large_min + (large_max.saturating_sub(large_min)) * k / (l - 1)
        };
    }
    let (lo, hi) = spec.message_size;
    let (lo, hi) = (lo.max(1) as f64, hi.max(lo) as f64);
    for (index, size) in sizes.iter_mut().enumerate() {
        if !large[index] {
            let u: f64 = message_rng(spec.seed, index, STREAM_SIZE).random();
            *size = (lo * (hi / lo).powf(u)) as usize;
        }
    }
    Plan { folders, sizes, large }
}

/// The random stream of one message: SplitMix64 of seed, index and purpose, so
/// neighbouring indices get unrelated streams.
fn message_rng(seed: u64, index: usize, stream: u64) -> StdRng {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    StdRng::seed_from_u64(mix(seed ^ mix((index as u64) << 4 | stream)))
}

/// Where a message goes and what it should be like.
struct Slot {
    seed: u64,
    /// Index over all folders in order.
    index: usize,
    /// Position in its folder and the folder's message count.
    position: (usize, usize),
    special_use: Option<&'static str>,
    /// Target size in bytes; met within a line or so.
    size: usize,
    large: bool,
}

/// The MIME shapes, chosen round-robin by index so a small corpus has all of them.
#[derive(Clone, Copy)]
enum Shape {
    PlainUtf8,
    Alternative,
    Mixed,
    PlainAscii,
    Forward,
    Nested,
}

const SHAPES: [Shape; 6] = [
    Shape::PlainUtf8,
    Shape::Alternative,
    Shape::Mixed,
    Shape::PlainAscii,
    Shape::Forward,
    Shape::Nested,
];

/// The part of a message whose length is chosen to meet the target size.
enum Filler {
    /// Lines of words, CRLF-terminated; US-ASCII only or with UTF-8 words.
    Text { ascii: bool },
    /// Random bytes behind a file-type signature, base64 in 76-column lines.
    Base64 { magic: &'static [u8] },
}

fn generate(slot: &Slot) -> CorpusMessage {
    let mut rng = message_rng(slot.seed, slot.index, STREAM_MESSAGE);
    let i = slot.index;

    // Dates rise through a folder, with jitter inside each message's share of the
    // span, the way arrival order and UID order agree in a real mailbox.
    let (k, count) = slot.position;
    let span = (LAST_DATE - FIRST_DATE) as f64;
    let share = (k as f64 + rng.random::<f64>()) / count.max(1) as f64;
    let internal_date = FIRST_DATE + (span * share) as i64;
    let tz = ZONES[rng.random_range(0..ZONES.len())];

    let (flags, keywords) = flags_and_keywords(&mut rng, slot.special_use);

    let authored = matches!(slot.special_use, Some("\\Sent") | Some("\\Drafts"));
    let mut head = String::new();
    if !authored {
        // A real delivery leaves a trace (RFC 5321 §4.4); Sent and Drafts never
        // passed through the MX.
        let (_, to) = owner();
        let relay = rng.random_range(1..250);
        let id: u64 = rng.random();
        let _ = write!(
            head,
            "Return-Path: <{}>\r\nReceived: from mail.example.org (mail.example.org [192.0.2.{relay}])\r\n\tby mx.example.test (Postfix) with ESMTPS id {id:016X}\r\n\tfor <{to}>; {}\r\n",
            NAMES[i % NAMES.len()].1,
            rfc5322_date(internal_date, tz),
        );
    }
    let sent = internal_date - rng.random_range(5..900);
    let _ = write!(head, "Date: {}\r\n", rfc5322_date(sent, tz));
    let (from, to) = if authored {
        (
            mailbox_header(&mut rng, owner(), i),
            NAMES[rng.random_range(0..NAMES.len())].1,
        )
    } else {
        (mailbox_header(&mut rng, NAMES[i % NAMES.len()], i), owner().1)
    };
    let _ = write!(head, "From: {from}\r\nTo: {to}\r\n");
    if rng.random_bool(0.25) {
        let (name, address) = NAMES[rng.random_range(0..NAMES.len())];
        let _ = write!(head, "Cc: \"{name}\" <{address}>\r\n");
    }
    let _ = write!(head, "Subject: {}\r\n", subject(&mut rng, i));
    if let Some(id) = message_id_of(slot) {
        let _ = write!(head, "Message-ID: {id}\r\n");
    }
    if i % 5 == 2
        && i > 0
        && let Some(parent) = message_id(slot.seed, i - 1)
    {
        let _ = write!(head, "In-Reply-To: {parent}\r\nReferences: {parent}\r\n");
    }
    if slot.special_use == Some("\\Drafts") {
        head.push_str("X-Mozilla-Draft-Info: internal/draft; vcard=0; receipt=0\r\n");
    }
    head.push_str("MIME-Version: 1.0\r\n");

    let shape = if slot.large {
        Shape::Mixed
    } else {
        SHAPES[i % SHAPES.len()]
    };
    let (before, filler, after) = body(&mut rng, slot, shape, head);
    let room = slot.size.saturating_sub(before.len() + after.len());
    let mut raw = before.into_bytes();
    match filler {
        Filler::Text { ascii } => raw.extend_from_slice(text(&mut rng, room, ascii).as_bytes()),
        Filler::Base64 { magic } => {
            // 57 bytes make one 76-column line plus CRLF: 78 bytes on the wire.
            let mut data = vec![0u8; (room / 78 * 57).max(magic.len() + 16)];
            rng.fill_bytes(&mut data);
            data[..magic.len()].copy_from_slice(magic);
            base64_lines(&data, &mut raw);
        }
    }
    raw.extend_from_slice(after.as_bytes());
    CorpusMessage {
        raw,
        flags,
        keywords,
        internal_date,
        tz_offset_minutes: tz,
    }
}

/// The account the mailbox belongs to: recipient of INBOX mail, author of Sent.
fn owner() -> (&'static str, &'static str) {
    NAMES[0]
}

/// The Message-ID every message would have by its index, or none for every 23rd.
fn message_id(seed: u64, index: usize) -> Option<String> {
    (index % 23 != 7).then(|| format!("<{seed:x}.{index}@corpus.example.test>"))
}

/// A slot's Message-ID: its own, or for every 37th an earlier message's (a list copy,
/// a resend), so the same ID names two different messages.
fn message_id_of(slot: &Slot) -> Option<String> {
    let i = slot.index;
    if i % 37 == 5 {
        return message_id(slot.seed, i - 3).or_else(|| message_id(slot.seed, i - 4));
    }
    message_id(slot.seed, i)
}

/// Flags and keywords in the habits of each kind of folder; some messages get none.
fn flags_and_keywords(rng: &mut StdRng, special_use: Option<&str>) -> (Vec<String>, Vec<String>) {
    let mut flags = Vec::new();
    let mut keywords = Vec::new();
    let mut flag = |on: bool, name: &str| {
        if on {
            flags.push(name.to_string());
        }
    };
    match special_use {
        Some("\\Drafts") => {
            flag(rng.random_bool(0.5), "\\Seen");
            flag(true, "\\Draft");
        }
        Some("\\Sent") => {
            flag(true, "\\Seen");
            flag(rng.random_bool(0.15), "\\Flagged");
        }
        Some("\\Trash") => {
            flag(rng.random_bool(0.8), "\\Seen");
            flag(rng.random_bool(0.4), "\\Deleted");
        }
        Some("\\Junk") => {
            flag(rng.random_bool(0.3), "\\Seen");
            keywords.push("$Junk".to_string());
        }
        _ => {
            let seen = rng.random_bool(0.75);
            flag(seen, "\\Seen");
            flag(seen && rng.random_bool(0.25), "\\Answered");
            flag(rng.random_bool(0.08), "\\Flagged");
            flag(rng.random_bool(0.02), "\\Deleted");
        }
    }
    if rng.random_bool(0.3) {
        for _ in 0..rng.random_range(1..=3) {
            let keyword = KEYWORDS[rng.random_range(0..KEYWORDS.len())].to_string();
            if !keywords.contains(&keyword) {
                keywords.push(keyword);
            }
        }
    }
    (flags, keywords)
}

/// A From/To header value in one of the ways display names arrive: quoted ASCII,
/// RFC 2047 B (UTF-8) and Q (ISO-8859-1) encoded words, or raw UTF-8.
fn mailbox_header(rng: &mut StdRng, (name, address): (&str, &str), i: usize) -> String {
    match (i / 6 + rng.random_range(0..2)) % 4 {
        0 => format!("\"{name}\" <{address}>"),
        1 => format!("{} <{address}>", encoded_word_b(name)),
        2 if name.chars().all(|c| (c as u32) < 256) => format!("{} <{address}>", encoded_word_q(name)),
        3 => format!("{name} <{address}>"),
        _ => format!("<{address}>"),
    }
}

/// A Subject: plain words, a reply or forward prefix, RFC 2047-encoded non-ASCII, or
/// raw UTF-8 (which RFC 5322 forbids but mailboxes contain). Ends with the index so a
/// person reading a diff can tell messages apart.
fn subject(rng: &mut StdRng, i: usize) -> String {
    fn pick(list: &[&'static str], rng: &mut StdRng) -> &'static str {
        list[rng.random_range(0..list.len())]
    }
    match i % 7 {
        0 | 3 => format!("{} #{i}", sentence(rng, 4)),
        1 => format!("Re: {} #{i}", sentence(rng, 3)),
        2 => format!("{} #{i}", encoded_word_b(pick(UTF8_SUBJECTS, rng))),
        4 => format!("{} #{i}", encoded_word_q(pick(LATIN1_SUBJECTS, rng))),
        5 => format!("Fwd: {} #{i}", pick(UTF8_SUBJECTS, rng)),
        _ => format!("{} {} #{i}", pick(LATIN1_SUBJECTS, rng), sentence(rng, 2)),
    }
}

/// The message from the end of its header block: everything before the filler, what
/// fills, and everything after it.
fn body(rng: &mut StdRng, slot: &Slot, shape: Shape, mut head: String) -> (String, Filler, String) {
    let i = slot.index;
    let boundary = format!("=_corpus_{:x}_{i}", slot.seed);
    let greeting = format!("Hello,\r\n\r\n{}.\r\n\r\n", sentence(rng, 8));
    const PLAIN_UTF8: &str = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n";
    match shape {
        Shape::PlainUtf8 => {
            head.push_str(PLAIN_UTF8);
            head.push_str("\r\n");
            head.push_str(&greeting);
            // "-- " with its trailing space is the signature delimiter (RFC 3676 §4.3).
            (head, Filler::Text { ascii: false }, "-- \r\nAlice\r\n".into())
        }
        Shape::PlainAscii => {
            head.push_str("Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n");
            head.push_str("Hi,\r\n\r\n");
            (head, Filler::Text { ascii: true }, "\r\nThanks\r\n".into())
        }
        Shape::Alternative => {
            let _ = write!(
                head,
                "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\nThis is a multi-part message in MIME format.\r\n--{boundary}\r\n{PLAIN_UTF8}\r\n{greeting}"
            );
            let after = format!(
                "--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}--{boundary}--\r\n",
                quoted_printable(&html(rng))
            );
            (head, Filler::Text { ascii: false }, after)
        }
        Shape::Mixed => {
            let (content_type, name, magic): (&str, String, &'static [u8]) = if slot.large {
                ("application/zip", format!("Fotos März {i}.zip"), b"PK\x03\x04")
            } else {
                ("application/pdf", format!("Rechnung März {i}.pdf"), b"%PDF-1.4\n")
            };
            // Every other attachment has its UTF-8 file name in RFC 2231 §4 form, the
            // others an ASCII stand-in.
            let (disposition, name) = if (i / SHAPES.len()) % 2 == 1 {
                (
                    format!("attachment; filename*=UTF-8''{}", percent_encode(&name)),
                    name.replace('ä', "ae"),
                )
            } else {
                let name = name.replace('ä', "ae");
                (format!("attachment; filename=\"{name}\""), name)
            };
            let _ = write!(
                head,
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n{PLAIN_UTF8}\r\n{greeting}Please find the file attached.\r\n--{boundary}\r\nContent-Type: {content_type}; name=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: {disposition}\r\n\r\n"
            );
            (head, Filler::Base64 { magic }, format!("--{boundary}--\r\n"))
        }
        Shape::Forward => {
            // The forwarded message's own header; its body is the filler.
            let (name, address) = NAMES[rng.random_range(0..NAMES.len())];
            let _ = write!(
                head,
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n{PLAIN_UTF8}\r\nSee the message below.\r\n\r\n--{boundary}\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\nContent-Disposition: inline\r\n\r\nDate: {}\r\nFrom: {} <{address}>\r\nTo: {}\r\nSubject: {}\r\nMessage-ID: <fwd.{:x}.{i}@corpus.example.test>\r\nMIME-Version: 1.0\r\n{PLAIN_UTF8}\r\n",
                rfc5322_date(FIRST_DATE + rng.random_range(0..(LAST_DATE - FIRST_DATE)), 60),
                encoded_word_b(name),
                NAMES[1].1,
                sentence(rng, 3),
                slot.seed,
            );
            (head, Filler::Text { ascii: false }, format!("--{boundary}--\r\n"))
        }
        Shape::Nested => {
            let inner = format!("{boundary}_alt");
            let _ = write!(
                head,
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\nContent-Type: multipart/alternative; boundary=\"{inner}\"\r\n\r\n--{inner}\r\n{PLAIN_UTF8}\r\n{greeting}--{inner}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}--{inner}--\r\n\r\n--{boundary}\r\nContent-Type: image/png; name=\"chart.png\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: inline; filename=\"chart.png\"\r\nContent-ID: <chart.{i}@corpus.example.test>\r\n\r\n",
                quoted_printable(&html(rng)),
            );
            (
                head,
                Filler::Base64 {
                    magic: b"\x89PNG\r\n\x1a\n",
                },
                format!("--{boundary}--\r\n"),
            )
        }
    }
}

/// A short HTML body with UTF-8 words and attribute quotes (both need quoted-printable).
fn html(rng: &mut StdRng) -> String {
    let mut html = String::from(
        "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"></head>\n<body>\n",
    );
    for _ in 0..rng.random_range(2..5) {
        let words = rng.random_range(6..30);
        let _ = writeln!(html, "<p style=\"margin:0\">{}</p>", sentence(rng, words));
    }
    html.push_str("</body></html>\n");
    html
}

/// Lines of words, each CRLF-terminated and under 80 columns, as close to `room`
/// bytes as whole lines allow (at least one line).
///
/// The words of a message come from a pool of lines made for it, drawn in random
/// order: a 480 MB corpus is mostly this text, and tests run it unoptimised, where a
/// draw per line is far cheaper than a draw per word.
fn text(rng: &mut StdRng, room: usize, ascii: bool) -> String {
    const POOL: usize = 32;
    let pool: Vec<String> = (0..POOL)
        .map(|_| {
            let mut line = String::with_capacity(96);
            while line.len() < 64 {
                let word = WORDS[rng.random_range(0..WORDS.len())];
                if ascii && !word.is_ascii() {
                    continue;
                }
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(word);
            }
            line.push_str("\r\n");
            line
        })
        .collect();
    let mut out = String::with_capacity(room + 80);
    let (mut bits, mut left) = (0u64, 0);
    loop {
        if left == 0 {
            (bits, left) = (rng.next_u64(), 12);
        }
        let line = &pool[(bits & 31) as usize];
        (bits, left) = (bits >> 5, left - 1);
        if !out.is_empty() && out.len() + line.len() > room {
            return out;
        }
        out.push_str(line);
    }
}

/// The instant `unix` in the zone `offset_minutes` east of UTC.
fn zoned(unix: i64, offset_minutes: i32) -> chrono::DateTime<chrono::FixedOffset> {
    use chrono::TimeZone;
    let zone = chrono::FixedOffset::east_opt(offset_minutes * 60).expect("a zone within ±24 h");
    zone.timestamp_opt(unix, 0).single().expect("a representable instant")
}

/// RFC 5322 §3.3 date-time, "Tue, 05 Mar 2019 14:03:22 +0530".
fn rfc5322_date(unix: i64, offset_minutes: i32) -> String {
    zoned(unix, offset_minutes)
        .format("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

/// RFC 3501 §9 `date-time` without its quotes: "05-Mar-2019 14:03:22 +0530", the
/// instant `unix` shown in the zone `offset_minutes` east of UTC.
pub fn imap_date_time(unix: i64, offset_minutes: i32) -> String {
    zoned(unix, offset_minutes).format("%d-%b-%Y %H:%M:%S %z").to_string()
}

/// Reads an RFC 3501 `date-time` (quotes optional; the day may be one digit or
/// space-padded, as the grammar allows) into the instant and the zone it was written
/// in, minutes east of UTC. `None` when it is not one.
pub fn parse_imap_date_time(text: &str) -> Option<(i64, i32)> {
    let text = text.trim().trim_matches('"').trim();
    let parsed = chrono::DateTime::parse_from_str(text, "%d-%b-%Y %H:%M:%S %z").ok()?;
    Some((parsed.timestamp(), parsed.offset().local_minus_utc() / 60))
}

/// Standard base64 with padding (RFC 4648 §4), on one line.
pub(crate) fn base64(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    base64_into(bytes, &mut out);
    // The alphabet is ASCII.
    String::from_utf8(out).unwrap_or_default()
}

fn base64_into(bytes: &[u8], out: &mut Vec<u8>) {
    use base64::Engine;
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .expect("room for the padded encoding");
    out.truncate(start + written);
}

/// Base64 in lines of 76 characters, each ending CRLF (RFC 2045 §6.8).
fn base64_lines(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() / 57 * 78 + 80);
    for chunk in bytes.chunks(57) {
        base64_into(chunk, out);
        out.extend_from_slice(b"\r\n");
    }
}

/// RFC 2231 §4 extended-value characters: attribute-chars as they are, the rest %XX.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// An RFC 2047 §4.1 "B" encoded word in UTF-8.
fn encoded_word_b(text: &str) -> String {
    format!("=?UTF-8?B?{}?=", base64(text.as_bytes()))
}

/// An RFC 2047 §4.2 "Q" encoded word in ISO-8859-1. `text` must be Latin-1 only.
fn encoded_word_q(text: &str) -> String {
    let mut out = String::from("=?ISO-8859-1?Q?");
    for c in text.chars() {
        match c {
            ' ' => out.push('_'),
            c if c.is_ascii_alphanumeric() => out.push(c),
            // Latin-1 is the first 256 code points; callers pass nothing beyond.
            c => {
                let _ = write!(out, "={:02X}", u32::from(c) & 0xFF);
            }
        }
    }
    out.push_str("?=");
    out
}

/// Quoted-printable (RFC 2045 §6.7) of UTF-8 text with LF lines: lines end CRLF, soft
/// breaks keep encoded lines within 76 characters.
fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 5 / 4);
    for line in text.lines() {
        let mut column = 0;
        for &b in line.as_bytes() {
            let literal = (b' '..=b'~').contains(&b) && b != b'=';
            let width = if literal { 1 } else { 3 };
            if column + width > 75 {
                out.push_str("=\r\n");
                column = 0;
            }
            if literal {
                out.push(b as char);
            } else {
                let _ = write!(out, "={b:02X}");
            }
            column += width;
        }
        // A line never ends in a space here (sentence() joins words), so no trailing
        // white space needs encoding (RFC 2045 §6.7 rule 3).
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(raw: &'a [u8], name: &str) -> Option<&'a str> {
        let text = std::str::from_utf8(raw).ok()?;
        let head = text.split("\r\n\r\n").next()?;
        head.split("\r\n")
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
        let spec = CorpusSpec::small();
        let a = mailbox(&spec);
        assert_eq!(a, mailbox(&spec));
        let b = mailbox(&CorpusSpec { seed: 2, ..spec });
        assert_ne!(a, b);
        assert_eq!(a.len(), b.len());
    }

    #[test]
    fn counts_and_folders_follow_the_spec() {
        let spec = CorpusSpec::small();
        let folders = mailbox(&spec);
        assert_eq!(folders.len(), spec.folders);
        assert_eq!(folders[0].name, "INBOX");
        assert_eq!(folders.iter().map(|f| f.messages.len()).sum::<usize>(), spec.messages);
        assert!(folders.iter().all(|f| !f.messages.is_empty()), "every folder has mail");
        let names: Vec<&str> = folders.iter().map(|f| f.name.as_str()).collect();
        for special in ["\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"] {
            assert!(folders.iter().any(|f| f.special_use == Some(special)), "{special}");
        }
        assert!(names.iter().any(|n| n.contains('/')), "nested: {names:?}");
        assert!(names.iter().any(|n| !n.is_ascii()), "non-ASCII: {names:?}");
        assert!(names.iter().any(|n| n.contains(' ')), "space: {names:?}");
        // Parents precede children, and no name holds the other common separator.
        for (k, name) in names.iter().enumerate() {
            assert!(!name.contains('.'), "{name}");
            if let Some((parent, _)) = name.rsplit_once('/') {
                assert!(names[..k].contains(&parent), "{name} before {parent}");
            }
        }

        let large: Vec<usize> = folders
            .iter()
            .flat_map(|f| &f.messages)
            .map(|m| m.raw.len())
            .filter(|&len| len > 500_000)
            .collect();
        assert_eq!(large.len(), 2, "{large:?}");
        assert!(large.iter().any(|&l| (950_000..1_050_000).contains(&l)), "{large:?}");
        assert!(large.iter().any(|&l| (2_900_000..3_100_000).contains(&l)), "{large:?}");

        let many = CorpusSpec {
            folders: 16,
            messages: 300,
            ..CorpusSpec::small()
        };
        let folders = mailbox(&many);
        assert_eq!(folders.len(), 16);
        assert_eq!(folders[15].name, "Archive/2022");
        assert_eq!(folders.iter().map(|f| f.messages.len()).sum::<usize>(), 300);
        let few = CorpusSpec {
            folders: 3,
            messages: 2,
            large_messages: 0,
            ..CorpusSpec::small()
        };
        assert_eq!(mailbox(&few).iter().map(|f| f.messages.len()).sum::<usize>(), 2);
    }

    #[test]
    fn every_message_is_crlf_only_and_ends_with_crlf() {
        for folder in mailbox(&CorpusSpec::small()) {
            for (k, m) in folder.messages.iter().enumerate() {
                let raw = &m.raw;
                assert!(raw.ends_with(b"\r\n"), "{} #{k}", folder.name);
                for (at, &b) in raw.iter().enumerate() {
                    match b {
                        b'\n' => assert!(
                            at > 0 && raw[at - 1] == b'\r',
                            "bare LF in {} #{k} at {at}",
                            folder.name
                        ),
                        b'\r' => assert_eq!(raw.get(at + 1), Some(&b'\n'), "bare CR in {} #{k}", folder.name),
                        0 => panic!("NUL in {} #{k}", folder.name),
                        _ => {}
                    }
                }
                // RFC 5322 §2.1.1: no line over 998 characters.
                assert!(
                    raw.split(|&b| b == b'\n').all(|l| l.len() <= 1000),
                    "{} #{k}",
                    folder.name
                );
            }
        }
    }

    #[test]
    fn the_small_corpus_has_every_quirk() {
        let folders = mailbox(&CorpusSpec::small());
        let all: Vec<(&str, &CorpusMessage)> = folders
            .iter()
            .flat_map(|f| f.messages.iter().map(move |m| (f.name.as_str(), m)))
            .collect();
        let raw_has = |needle: &str| {
            all.iter()
                .filter(|(_, m)| m.raw.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .count()
        };
        for needle in [
            "multipart/alternative",
            "multipart/mixed",
            "message/rfc822",
            "Content-Transfer-Encoding: 8bit",
            "Content-Transfer-Encoding: base64",
            "quoted-printable",
            "=?UTF-8?B?",
            "=?ISO-8859-1?Q?",
            "filename*=UTF-8''",
            "Grüße",
        ] {
            assert!(raw_has(needle) > 0, "no message with {needle}");
        }
        assert!(
            all.iter().any(|(_, m)| header(&m.raw, "Message-ID").is_none()),
            "one without Message-ID"
        );

        // Duplicate Message-IDs with different bytes, and exact copies in one folder.
        let mut by_id: std::collections::HashMap<&str, Vec<&[u8]>> = Default::default();
        for (_, m) in &all {
            if let Some(id) = header(&m.raw, "Message-ID") {
                by_id.entry(id).or_default().push(&m.raw);
            }
        }
        assert!(by_id.values().any(|v| v.len() > 1 && v[0] != v[1]), "reused Message-ID");
        assert!(
            folders.iter().any(|f| f.messages.windows(2).any(|w| w[0] == w[1])),
            "exact duplicate"
        );

        // Flags: several kinds, some messages with none, never \Recent.
        let flags: std::collections::BTreeSet<&str> =
            all.iter().flat_map(|(_, m)| &m.flags).map(String::as_str).collect();
        for f in ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"] {
            assert!(flags.contains(f), "{f} in {flags:?}");
        }
        assert!(!flags.contains("\\Recent"));
        assert!(all.iter().any(|(_, m)| m.flags.is_empty() && m.keywords.is_empty()));
        assert!(all.iter().filter(|(_, m)| !m.keywords.is_empty()).count() > 10);

        // Dates: 2005–2026, in several zones, rising within each folder.
        let zones: std::collections::BTreeSet<i32> = all.iter().map(|(_, m)| m.tz_offset_minutes).collect();
        assert!(zones.len() >= 4, "{zones:?}");
        for (_, m) in &all {
            assert!((FIRST_DATE..=LAST_DATE).contains(&m.internal_date));
        }
        for f in &folders {
            assert!(
                f.messages.windows(2).all(|w| w[0].internal_date <= w[1].internal_date),
                "{}",
                f.name
            );
        }
    }

    #[test]
    fn the_bench_preset_is_about_480_mb() {
        // The plan's sizes are what generation aims at (checked on the small corpus
        // below); generating 480 MB in a debug test would take long.
        let planned: usize = plan(&CorpusSpec::bench()).sizes.iter().sum();
        assert!((432_000_000..528_000_000).contains(&planned), "{planned}");
        let spec = CorpusSpec::bench();
        let bench = plan(&spec);
        assert_eq!(bench.folders.len(), 13);
        assert_eq!(bench.folders.iter().map(|f| f.2).sum::<usize>(), 10_000);
        assert_eq!(bench.large.iter().filter(|&&l| l).count(), 30);

        let small = CorpusSpec::small();
        let sizes = plan(&small).sizes;
        let generated: Vec<usize> = mailbox(&small)
            .iter()
            .flat_map(|f| &f.messages)
            .map(|m| m.raw.len())
            .collect();
        for (index, (&want, &got)) in sizes.iter().zip(&generated).enumerate() {
            // Exact copies repeat the size before them; a message whose fixed parts
            // outgrow a small target may overshoot it.
            let copy = index > 0 && generated[index - 1] == got;
            assert!(
                copy || got.abs_diff(want) <= want / 10 + 2_500,
                "message {index}: wanted {want}, got {got}"
            );
        }
    }

    #[test]
    fn imap_dates_round_trip_in_every_zone() {
        assert_eq!(imap_date_time(0, 0), "01-Jan-1970 00:00:00 +0000");
        assert_eq!(imap_date_time(FIRST_DATE, 330), "01-Jan-2005 05:30:00 +0530");
        assert_eq!(imap_date_time(FIRST_DATE, -210), "31-Dec-2004 20:30:00 -0330");
        assert_eq!(rfc5322_date(FIRST_DATE, 0), "Sat, 01 Jan 2005 00:00:00 +0000");
        assert_eq!(rfc5322_date(LAST_DATE, 0), "Sat, 28 Feb 2026 23:59:59 +0000");
        assert_eq!(rfc5322_date(1_709_251_199, 0), "Thu, 29 Feb 2024 23:59:59 +0000");
        for &zone in ZONES {
            for t in [FIRST_DATE, 1_709_251_199, 1_709_251_200, LAST_DATE] {
                let text = imap_date_time(t, zone);
                assert_eq!(parse_imap_date_time(&text), Some((t, zone)), "{text}");
            }
        }
        assert_eq!(
            parse_imap_date_time("\" 5-Mar-2019 14:03:22 +0530\""),
            parse_imap_date_time("05-Mar-2019 14:03:22 +0530")
        );
        assert_eq!(parse_imap_date_time("05-Mar-2019 14:03:22"), None);
        assert_eq!(parse_imap_date_time("05-Foo-2019 14:03:22 +0000"), None);
    }

    #[test]
    fn encodings_match_their_rfcs() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(
            encoded_word_q("Grüße aus Köln"),
            "=?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?="
        );
        assert_eq!(encoded_word_b("é"), "=?UTF-8?B?w6k=?=");
        assert_eq!(quoted_printable("a=b é\n"), "a=3Db =C3=A9\r\n");
        assert_eq!(percent_encode("März 1.pdf"), "M%C3%A4rz%201.pdf");
        let long = "x".repeat(100);
        assert!(quoted_printable(&long).split("\r\n").all(|l| l.len() <= 76));
    }
}

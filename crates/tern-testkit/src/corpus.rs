//! Deterministic generated mail: realistic enough headers and MIME for parsing, search
//! and size-dependent paths, reproducible from a seed so a failure can be replayed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub(crate) const WORDS: &[&str] = &[
    "meeting",
    "budget",
    "report",
    "quarterly",
    "invoice",
    "project",
    "deadline",
    "review",
    "lunch",
    "schedule",
    "contract",
    "migration",
    "server",
    "mailbox",
    "holiday",
    "Grüße",
    "café",
    "naïve",
    "résumé",
    "update",
];
pub(crate) const NAMES: &[(&str, &str)] = &[
    ("Alice Example", "alice@example.test"),
    ("Bob Builder", "bob@example.org"),
    ("Carol Müller", "carol@example.net"),
    ("Dan O'Brien", "dan@example.com"),
];

/// `count` messages of roughly `size` bytes each, from `seed`. One in four is a
/// multipart with an attachment; bodies use CRLF line endings.
pub fn messages(seed: u64, count: usize, size: usize) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count).map(|i| message(&mut rng, seed, i, size)).collect()
}

pub(crate) fn sentence(rng: &mut StdRng, words: usize) -> String {
    (0..words)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

fn message(rng: &mut StdRng, seed: u64, i: usize, size: usize) -> Vec<u8> {
    let (from_name, from) = NAMES[rng.random_range(0..NAMES.len())];
    let (_, to) = NAMES[rng.random_range(0..NAMES.len())];
    let subject = sentence(rng, 4);
    let day = 1 + (i % 28);
    let mut m = format!(
        "From: \"{from_name}\" <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, {day} Nov 2026 10:{:02}:00 +0000\r\nMessage-ID: <{seed}.{i}@corpus.test>\r\nMIME-Version: 1.0\r\n",
        i % 60
    );
    let mut body = String::new();
    while body.len() + m.len() < size.saturating_sub(200) {
        body.push_str(&sentence(rng, 12));
        body.push_str("\r\n");
    }
    if i % 4 == 3 {
        m.push_str("Content-Type: multipart/mixed; boundary=\"=_corpus\"\r\n\r\n--=_corpus\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
        m.push_str(&body);
        m.push_str("--=_corpus\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\n\r\nAAECAwQFBgcICQ==\r\n--=_corpus--\r\n");
    } else {
        m.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
        m.push_str(&body);
    }
    m.into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn deterministic_and_sized() {
        let a = super::messages(1, 10, 10_000);
        assert_eq!(a, super::messages(1, 10, 10_000));
        assert_ne!(a, super::messages(2, 10, 10_000));
        for m in &a {
            assert!(m.len() > 9_000 && m.len() < 11_000, "{}", m.len());
        }
    }
}

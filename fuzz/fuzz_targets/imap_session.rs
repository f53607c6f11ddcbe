//! One whole IMAP session per input: the bytes are what a client sends, fed to
//! `tern_imap::fuzzing::Harness` over an in-memory connection from a loopback address.
//!
//! Login prefix: when the first input byte is even, the session is first fed
//! `a LOGIN fuzz@example.test fuzz\r\nb SELECT INBOX\r\n`, so half of all inputs start
//! in the selected state (RFC 9051 §3.3) and reach FETCH, STORE, SEARCH, COPY/MOVE,
//! EXPUNGE and IDLE without the fuzzer having to discover a valid login first. The
//! first byte is not consumed: it is the first byte of the session either way, so
//! every seed is a plain client transcript (seeds tagged `t…` — 't' is even — assume
//! the prefix; seeds tagged `a…` log in themselves).
//!
//! The harness (and its store) is created once per fuzzing process and shared by all
//! inputs, so mailboxes and messages created by one input are seen by later ones.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tern_imap::fuzzing::Harness;

/// Logs in as the harness's account and selects INBOX (two messages at start).
const LOGIN_AND_SELECT: &[u8] = b"a LOGIN fuzz@example.test fuzz\r\nb SELECT INBOX\r\n";

static HARNESS: OnceLock<Harness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let harness = HARNESS.get_or_init(Harness::new);
    match data.first() {
        Some(first) if first % 2 == 0 => {
            let mut input = Vec::with_capacity(LOGIN_AND_SELECT.len() + data.len());
            input.extend_from_slice(LOGIN_AND_SELECT);
            input.extend_from_slice(data);
            harness.run(&input);
        }
        _ => {
            harness.run(data);
        }
    }
});

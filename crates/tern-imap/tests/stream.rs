//! A whole session fed as one byte stream through the fuzzing harness: pipelined
//! commands, garbage between them, and end-of-stream in the middle of a literal.

#![cfg(feature = "fuzzing")]

use tern_imap::fuzzing::Harness;

#[test]
fn pipelined_session_with_garbage_keeps_going() {
    let harness = Harness::new();
    let out = harness.run(
        b"a LOGIN fuzz@example.test fuzz\r\n\x00\xff junk\r\nb SELECT INBOX\r\nc FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[1.MIME])\r\nd LOGOUT\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("a OK"), "{text}");
    assert!(text.contains("* BAD") || text.contains(" BAD "), "{text}");
    assert!(text.contains("b OK [READ-WRITE]"), "{text}");
    assert!(text.contains("c OK"), "{text}");
    assert!(text.contains("d OK"), "{text}");
    let cut = harness.run(b"a LOGIN fuzz@example.test fuzz\r\nb APPEND INBOX {100+}\r\nonly a little");
    assert!(String::from_utf8_lossy(&cut).contains("a OK"));
}

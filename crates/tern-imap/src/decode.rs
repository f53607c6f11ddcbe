//! Undoing content transfer encodings for BINARY (RFC 3516): base64 and
//! quoted-printable (RFC 2045 §6.8, §6.7). Mail in the wild is often slightly broken,
//! so both decoders are lenient: characters that cannot belong are skipped, never an
//! error.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// A part's body with its transfer encoding removed; `None` for an encoding Tern does
/// not know (BINARY answers `NO [UNKNOWN-CTE]`, RFC 3516 §4.3).
pub fn decode(encoding: &str, body: &[u8]) -> Option<Vec<u8>> {
    match encoding.to_ascii_uppercase().as_str() {
        "" | "7BIT" | "8BIT" | "BINARY" => Some(body.to_vec()),
        "BASE64" => Some(base64(body)),
        "QUOTED-PRINTABLE" => Some(quoted_printable(body)),
        _ => None,
    }
}

fn base64(body: &[u8]) -> Vec<u8> {
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .collect();
    // A dangling single character cannot encode anything (RFC 2045 §6.8).
    let usable = if clean.len() % 4 == 1 {
        clean.len() - 1
    } else {
        clean.len()
    };
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode(&clean[..usable]).unwrap_or_default()
}

fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b != b'=' {
            out.push(b);
            i += 1;
            continue;
        }
        // "=" CRLF (or LF) is a soft line break; "=XX" an octet; anything else is kept.
        match (body.get(i + 1), body.get(i + 2)) {
            (Some(b'\r'), Some(b'\n')) => i += 3,
            (Some(b'\n'), _) => i += 2,
            (Some(&h), Some(&l)) => match (hex(h), hex(l)) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            },
            _ => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_with_line_breaks_and_junk() {
        assert_eq!(
            decode("base64", b"SGVs\r\nbG8s\r\nIHdv\r\ncmxk\r\n").as_deref(),
            Some(&b"Hello, world"[..])
        );
        assert_eq!(decode("BASE64", b"AAEC/w==").as_deref(), Some(&[0u8, 1, 2, 255][..]));
        assert_eq!(decode("base64", b"SGk*").as_deref(), Some(&b"Hi"[..]));
    }

    #[test]
    fn quoted_printable_soft_breaks_and_bad_escapes() {
        assert_eq!(
            decode("quoted-printable", b"Gr=C3=BC=C3=9Fe, =\r\nWelt =XY=").as_deref(),
            Some("Grüße, Welt =XY=".as_bytes())
        );
        assert_eq!(decode("x-uuencode", b""), None);
        assert_eq!(decode("7bit", b"as is").as_deref(), Some(&b"as is"[..]));
    }
}

//! An independent DKIM implementation to check Tern's signatures against, and to sign
//! mail Tern must verify: dkimpy (Debian's `python3-dkim`) run by the system Python,
//! with key records handed over by the test instead of looked up in DNS.
//!
//! The system Python is called by path, `/usr/bin/python3`: a `python3` earlier on PATH
//! (pyenv, a virtualenv) usually lacks the `dkim` module.
//!
//! ```no_run
//! use tern_testkit::dkim_check::{dkimpy_verify, rsa_key_pair, dkimpy_sign};
//! let (private_pem, public_txt) = rsa_key_pair(2048).expect("key");
//! let message = b"From: a@example.test\r\nTo: b@remote.test\r\nSubject: hi\r\n\r\nHello.\r\n";
//! let signed = dkimpy_sign(message, "sel", "example.test", &private_pem).expect("signed");
//! let txt = [("sel._domainkey.example.test", public_txt.as_str())];
//! assert!(dkimpy_verify(&signed, &txt).expect("dkimpy"));
//! ```

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The system Python that has dkimpy.
const PYTHON: &str = "/usr/bin/python3";
/// opendkim-tools' key generator, to tell whether the package is there.
const OPENDKIM_GENKEY: &str = "/usr/sbin/opendkim-genkey";

/// What to tell someone whose machine lacks dkimpy.
const NOT_INSTALLED: &str = "dkimpy is not installed for /usr/bin/python3: install python3-dkim, \
     e.g. `apt-get install python3-dkim`; scripts/test.sh does this";

/// Verifies the first DKIM-Signature of a message read from stdin; the key records come
/// as a JSON list of [name, value] pairs in argv[1]. Prints a JSON verdict and dkimpy's
/// debug log (why it failed).
const VERIFY: &str = r#"
import io, json, logging, sys
import dkim

records = {}
for name, value in json.loads(sys.argv[1]):
    records.setdefault(name.lower().rstrip("."), []).append(value)
asked = []

def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    key = name.lower().rstrip(".")
    asked.append(key)
    values = records.get(key)
    return values[0].encode() if values else None

log = io.StringIO()
logger = logging.getLogger("dkim-check")
logger.addHandler(logging.StreamHandler(log))
logger.setLevel(logging.DEBUG)
message = sys.stdin.buffer.read()
try:
    verified = bool(dkim.verify(message, logger=logger, dnsfunc=dnsfunc))
except Exception as e:
    verified = False
    log.write("%s: %s\n" % (type(e).__name__, e))
print(json.dumps({"verified": verified, "asked": asked, "log": log.getvalue()}))
"#;

/// Signs a message read from stdin with `dkim.sign`; argv: selector, domain, private key
/// PEM, headers to sign (comma-separated, or "" for dkimpy's default). Prints the
/// signed message.
const SIGN: &str = r#"
import sys
import dkim

selector, domain, key, headers = sys.argv[1:5]
message = sys.stdin.buffer.read()
include = [h.strip().encode() for h in headers.split(",") if h.strip()] or None
signature = dkim.sign(message, selector.encode(), domain.encode(), key.encode(),
                      canonicalize=(b"relaxed", b"relaxed"), include_headers=include)
sys.stdout.buffer.write(signature + message)
"#;

/// The outcome of a verification, with dkimpy's reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the first DKIM-Signature verified.
    pub verified: bool,
    /// The key record names dkimpy asked for.
    pub asked: Vec<String>,
    /// dkimpy's debug log: why a signature failed.
    pub log: String,
}

/// Whether `/usr/bin/python3` can import dkimpy.
pub fn dkimpy_installed() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import dkim"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether opendkim-tools is installed.
pub fn opendkim_installed() -> bool {
    Path::new(OPENDKIM_GENKEY).exists()
}

/// For a test to skip without dkimpy: true (after printing why to stderr) when it is
/// missing.
pub fn skip_if_missing(test: &str) -> bool {
    if dkimpy_installed() {
        return false;
    }
    eprintln!("skipping {test}: {NOT_INSTALLED}");
    true
}

/// Whether dkimpy verifies the message's first DKIM-Signature, answering its key
/// lookups from `txt_records`: `(name, TXT value)` pairs such as
/// `("sel._domainkey.example.test", "v=DKIM1; k=rsa; p=MIIB...")`. A name without a
/// pair answers as if it did not exist. The message may have CRLF or LF line endings.
pub fn dkimpy_verify(message: &[u8], txt_records: &[(&str, &str)]) -> Result<bool, String> {
    dkimpy_check(message, txt_records).map(|v| v.verified)
}

/// [`dkimpy_verify`] with dkimpy's reasons, for assertion messages.
pub fn dkimpy_check(message: &[u8], txt_records: &[(&str, &str)]) -> Result<Verdict, String> {
    let pairs = serde_json::to_string(&txt_records).map_err(|e| format!("cannot encode the TXT records: {e}"))?;
    let output = run(VERIFY, &[&pairs], message)?;
    let value: serde_json::Value = serde_json::from_slice(&output)
        .map_err(|e| format!("dkimpy printed no verdict ({e}): {}", String::from_utf8_lossy(&output)))?;
    Ok(Verdict {
        verified: value["verified"].as_bool().unwrap_or(false),
        asked: value["asked"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        log: value["log"].as_str().unwrap_or_default().to_string(),
    })
}

/// Signs `message` with dkimpy (`rsa-sha256`, relaxed/relaxed, dkimpy's default header
/// list) as `selector._domainkey.domain`, and returns it with the DKIM-Signature
/// prepended. `private_key_pem` is an RSA key in PEM (PKCS#1 or PKCS#8).
pub fn dkimpy_sign(message: &[u8], selector: &str, domain: &str, private_key_pem: &str) -> Result<Vec<u8>, String> {
    run(SIGN, &[selector, domain, private_key_pem, ""], message)
}

/// A fresh RSA key of `bits` bits: its private key in PEM (PKCS#8, as `openssl
/// genpkey` writes it) and the DKIM key record to publish for it (`v=DKIM1; k=rsa;
/// p=<base64 SubjectPublicKeyInfo>`, RFC 6376 §3.6.1).
pub fn rsa_key_pair(bits: u32) -> Result<(String, String), String> {
    let private = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
        .arg(format!("rsa_keygen_bits:{bits}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if !private.status.success() {
        return Err(format!(
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&private.stderr)
        ));
    }
    let private_pem = String::from_utf8_lossy(&private.stdout).into_owned();
    let mut public = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    public
        .stdin
        .take()
        .ok_or("openssl's stdin is missing")?
        .write_all(private_pem.as_bytes())
        .map_err(|e| format!("cannot hand the key to openssl: {e}"))?;
    let public = public
        .wait_with_output()
        .map_err(|e| format!("cannot read openssl's output: {e}"))?;
    if !public.status.success() {
        return Err(format!(
            "openssl pkey -pubout failed: {}",
            String::from_utf8_lossy(&public.stderr)
        ));
    }
    use base64::Engine as _;
    let p = base64::engine::general_purpose::STANDARD.encode(&public.stdout);
    Ok((private_pem, format!("v=DKIM1; k=rsa; p={p}")))
}

/// Runs a Python script with `args`, `stdin` on its standard input, and returns what it
/// printed.
fn run(script: &str, args: &[&str], stdin: &[u8]) -> Result<Vec<u8>, String> {
    if !Path::new(PYTHON).exists() {
        return Err(NOT_INSTALLED.to_string());
    }
    let mut child = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {PYTHON}: {e}"))?;
    let mut input = child.stdin.take().ok_or("the Python's stdin is missing")?;
    // Written from a thread so a large message cannot deadlock against a full stdout.
    let message = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&message));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("cannot read {PYTHON}'s output: {e}"))?;
    let written = writer.join().map_err(|_| "the stdin writer panicked".to_string())?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No module named 'dkim'") {
            return Err(NOT_INSTALLED.to_string());
        }
        return Err(format!("dkimpy failed ({}): {stderr}", output.status));
    }
    written.map_err(|e| format!("cannot hand the message to {PYTHON}: {e}"))?;
    Ok(output.stdout)
}

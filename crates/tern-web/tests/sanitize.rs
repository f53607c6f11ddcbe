//! `tern_web::sanitize` against the hostile corpus in `tests/xss_corpus/` and targeted cases.
//!
//! Every corpus file is sanitised with remote content off and on; the output is tokenised
//! as a browser would (a small HTML tokenizer below: html5ever is not a dev-dependency of
//! this crate) and must contain no script, no handler, no script URL, no forbidden element,
//! no attribute outside the allow-list, and (remote off) nothing that fetches from the
//! corpus's tracker hosts. Sanitising the output again must give the same output.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::PathBuf;

use tern_web::sanitize::{Options, Sanitized, sanitize_html, text_to_html};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `cid:x` stays `cid:x`: keeps the output re-sanitisable for the idempotence check.
fn identity_cid(cid: &str) -> Option<String> {
    Some(format!("cid:{cid}"))
}

fn sanitize(html: &str, allow_remote: bool) -> Sanitized {
    sanitize_html(
        html,
        &Options {
            allow_remote,
            cid_url: &identity_cid,
        },
    )
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/xss_corpus")
}

fn corpus() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "html"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).expect("corpus file");
            (name, String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect();
    files.sort();
    files
}

fn corpus_file(name: &str) -> String {
    std::fs::read_to_string(corpus_dir().join(name)).expect("corpus file")
}

// ---------------------------------------------------------------------------------------
// A small HTML tokenizer (WHATWG tag and attribute states, character references)
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Tag {
    name: String,
    end: bool,
    attrs: Vec<(String, String)>,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn is_html_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

fn starts_at(chars: &[char], at: usize, s: &str) -> bool {
    s.chars()
        .enumerate()
        .all(|(k, c)| chars.get(at + k).is_some_and(|x| x.eq_ignore_ascii_case(&c)))
}

fn skip_past(chars: &[char], from: usize, s: &str) -> usize {
    let mut i = from;
    while i < chars.len() {
        if starts_at(chars, i, s) {
            return i + s.chars().count();
        }
        i += 1;
    }
    chars.len()
}

/// The tags of `html`, as the data state of an HTML tokenizer sees them. Raw-text elements
/// are not special-cased: any of them in sanitised output is a failure anyway.
fn tokenize(html: &str) -> Vec<Tag> {
    let chars: Vec<char> = html.chars().collect();
    let mut tags = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '<' {
            i += 1;
            continue;
        }
        if starts_at(&chars, i + 1, "!--") {
            let body = i + 4;
            i = if chars.get(body) == Some(&'>') {
                body + 1
            } else if starts_at(&chars, body, "->") {
                body + 2
            } else {
                let a = skip_past(&chars, body, "-->");
                let b = skip_past(&chars, body, "--!>");
                a.min(b)
            };
            continue;
        }
        if matches!(chars.get(i + 1), Some('!' | '?')) {
            i = skip_past(&chars, i + 1, ">");
            continue;
        }
        let end = chars.get(i + 1) == Some(&'/');
        let mut j = if end { i + 2 } else { i + 1 };
        if !chars.get(j).is_some_and(|c| c.is_ascii_alphabetic()) {
            i = if end { skip_past(&chars, j, ">") } else { i + 1 };
            continue;
        }
        let mut name = String::new();
        while let Some(&c) = chars.get(j) {
            if is_html_space(c) || c == '/' || c == '>' {
                break;
            }
            name.push(if c == '\0' { '\u{fffd}' } else { c.to_ascii_lowercase() });
            j += 1;
        }
        let mut attrs = Vec::new();
        loop {
            while chars.get(j).is_some_and(|&c| is_html_space(c) || c == '/') {
                j += 1;
            }
            match chars.get(j) {
                None => break,
                Some('>') => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            let mut attr_name = String::new();
            attr_name.push(chars[j].to_ascii_lowercase());
            j += 1;
            while let Some(&c) = chars.get(j) {
                if is_html_space(c) || matches!(c, '/' | '>' | '=') {
                    break;
                }
                attr_name.push(c.to_ascii_lowercase());
                j += 1;
            }
            while chars.get(j).is_some_and(|&c| is_html_space(c)) {
                j += 1;
            }
            let mut raw_value = String::new();
            if chars.get(j) == Some(&'=') {
                j += 1;
                while chars.get(j).is_some_and(|&c| is_html_space(c)) {
                    j += 1;
                }
                match chars.get(j) {
                    Some(&q @ ('"' | '\'')) => {
                        j += 1;
                        while let Some(&c) = chars.get(j) {
                            j += 1;
                            if c == q {
                                break;
                            }
                            raw_value.push(c);
                        }
                    }
                    Some('>') | None => {}
                    Some(_) => {
                        while let Some(&c) = chars.get(j) {
                            if is_html_space(c) || c == '>' {
                                break;
                            }
                            raw_value.push(c);
                            j += 1;
                        }
                    }
                }
            }
            attrs.push((attr_name, decode_references(&raw_value)));
        }
        tags.push(Tag { name, end, attrs });
        i = j;
    }
    tags
}

/// `html` with each tag's attributes sorted: equal for outputs that differ only in the order
/// ammonia happened to leave attributes in.
fn canonical(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('>').map_or(rest.len(), |e| start + e + 1);
        let mut tags = tokenize(&rest[start..end]);
        assert_eq!(tags.len(), 1, "one tag in {:?}", &rest[start..end]);
        let mut tag = tags.remove(0);
        tag.attrs.sort();
        out.push_str(&format!("<{}{}", if tag.end { "/" } else { "" }, tag.name));
        for (name, value) in &tag.attrs {
            out.push_str(&format!(" {name}={value:?}"));
        }
        out.push('>');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Decodes character references as in an attribute value (numeric ones and the named ones
/// that matter for smuggling schemes).
fn decode_references(s: &str) -> String {
    const NAMED: &[(&str, &str)] = &[
        ("amp", "&"),
        ("lt", "<"),
        ("gt", ">"),
        ("quot", "\""),
        ("apos", "'"),
        ("nbsp", "\u{a0}"),
        ("Tab", "\t"),
        ("NewLine", "\n"),
        ("colon", ":"),
        ("lpar", "("),
        ("rpar", ")"),
        ("sol", "/"),
        ("bsol", "\\"),
        ("semi", ";"),
        ("comma", ","),
        ("period", "."),
        ("excl", "!"),
        ("num", "#"),
        ("equals", "="),
        ("plus", "+"),
    ];
    const LEGACY: &[&str] = &["amp", "lt", "gt", "quot", "nbsp"];
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '&' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'#') {
            let hex = matches!(chars.get(i + 2), Some('x' | 'X'));
            let mut j = if hex { i + 3 } else { i + 2 };
            let mut digits = String::new();
            while let Some(&c) = chars.get(j) {
                if (hex && c.is_ascii_hexdigit()) || (!hex && c.is_ascii_digit()) {
                    digits.push(c);
                    j += 1;
                } else {
                    break;
                }
            }
            if digits.is_empty() {
                out.push('&');
                i += 1;
                continue;
            }
            if chars.get(j) == Some(&';') {
                j += 1;
            }
            let code = u32::from_str_radix(&digits, if hex { 16 } else { 10 }).unwrap_or(0x110000);
            out.push(match char::from_u32(code) {
                Some(c) if code != 0 => c,
                _ => '\u{fffd}',
            });
            i = j;
            continue;
        }
        let rest: String = chars[i + 1..].iter().take(16).collect();
        let found = NAMED.iter().find(|(name, _)| {
            if rest.starts_with(&format!("{name};")) {
                return true;
            }
            LEGACY.contains(name)
                && rest.starts_with(name)
                && !rest[name.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '=')
        });
        match found {
            Some((name, value)) => {
                out.push_str(value);
                i += 1 + name.len();
                if chars.get(i) == Some(&';') {
                    i += 1;
                }
            }
            None => {
                out.push('&');
                i += 1;
            }
        }
    }
    out
}

/// Lower-cased, without whitespace and control characters: how a browser sees a scheme.
fn squeeze(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control() && *c != '\u{feff}')
        .flat_map(char::to_lowercase)
        .collect()
}

// ---------------------------------------------------------------------------------------
// The safety properties
// ---------------------------------------------------------------------------------------

#[rustfmt::skip]
const ALLOWED_TAGS: &[&str] = &[
    "a", "abbr", "acronym", "address", "article", "aside", "b", "bdi", "bdo", "big", "blockquote",
    "br", "caption", "center", "cite", "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl",
    "dt", "em", "figcaption", "figure", "font", "footer", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hgroup", "hr", "i", "img", "ins", "kbd", "li", "mark", "nav", "nobr", "ol", "p",
    "pre", "q", "rp", "rt", "ruby", "s", "samp", "section", "small", "span", "strike", "strong",
    "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul",
    "var", "wbr",
];

#[rustfmt::skip]
const ALLOWED_ATTRIBUTES: &[&str] = &[
    "align", "bgcolor", "border", "color", "dir", "height", "lang", "style", "title", "valign",
    "width", "href", "target", "rel", "src", "alt", "hspace", "vspace", "face", "size",
    "cellpadding", "cellspacing", "background", "summary", "frame", "rules", "colspan", "rowspan",
    "nowrap", "abbr", "scope", "span", "start", "type", "reversed", "value", "noshade", "datetime",
];

#[rustfmt::skip]
const FORBIDDEN_RAW: &[&str] = &[
    "<script", "<iframe", "<object", "<embed", "<form", "<svg", "<meta", "<base", "<style",
    "<math", "<link", "<template", "<noscript", "<applet", "<frame", "<input", "<button",
    "<textarea", "<select", "<xmp", "<plaintext", "<noembed", "<noframes", "<title", "<portal",
    "<isindex", "<!--", "<![cdata[", "<?",
];

const DATA_IMAGES: &[&str] = &["data:image/png", "data:image/gif", "data:image/jpeg", "data:image/webp"];

fn is_allowed_image_url(value: &str, allow_remote: bool) -> bool {
    let v = squeeze(value);
    v.starts_with("cid:")
        || DATA_IMAGES.iter().any(|d| v.starts_with(d))
        || (allow_remote && (v.starts_with("http://") || v.starts_with("https://")))
}

/// Asserts every safety property of one sanitised output; `what` names the input.
fn assert_safe(what: &str, html: &str, allow_remote: bool) {
    let lower = html.to_lowercase();
    for bad in FORBIDDEN_RAW {
        assert!(!lower.contains(bad), "{what}: output contains {bad}:\n{html}");
    }
    for tag in tokenize(html) {
        assert!(
            ALLOWED_TAGS.contains(&tag.name.as_str()),
            "{what}: element <{}> is not allowed:\n{html}",
            tag.name
        );
        if tag.end {
            assert!(tag.attrs.is_empty(), "{what}: end tag with attributes:\n{html}");
            continue;
        }
        for (name, value) in &tag.attrs {
            assert!(!name.starts_with("on"), "{what}: handler {name}=:\n{html}");
            assert!(
                ALLOWED_ATTRIBUTES.contains(&name.as_str()),
                "{what}: attribute {name} on <{}> is not allowed:\n{html}",
                tag.name
            );
            let squeezed = squeeze(value);
            for scheme in ["javascript:", "vbscript:", "livescript:"] {
                assert!(
                    !squeezed.contains(scheme),
                    "{what}: {name}={value:?} mentions {scheme}\n{html}"
                );
            }
            if !allow_remote && name != "href" {
                for host in ["tracker.example", "phish.example"] {
                    assert!(
                        !squeezed.contains(host),
                        "{what}: {name}={value:?} loads from {host} with remote off\n{html}"
                    );
                }
            }
            match name.as_str() {
                "href" => {
                    assert_eq!(tag.name, "a", "{what}: href on <{}>", tag.name);
                    assert!(
                        ["http://", "https://", "mailto:"]
                            .iter()
                            .any(|s| squeezed.starts_with(s)),
                        "{what}: link {value:?}\n{html}"
                    );
                }
                "src" | "background" => assert!(
                    is_allowed_image_url(value, allow_remote),
                    "{what}: image {name}={value:?}\n{html}"
                ),
                "style" => assert_safe_css(what, value, allow_remote, html),
                _ => {}
            }
        }
        if tag.name == "a" {
            assert_eq!(tag.attr("target"), Some("_blank"), "{what}: <a> target\n{html}");
            assert_eq!(tag.attr("rel"), Some("noopener noreferrer"), "{what}: <a> rel\n{html}");
        }
    }
}

fn assert_safe_css(what: &str, css: &str, allow_remote: bool, html: &str) {
    let squeezed = squeeze(css).replace('\\', "");
    for bad in [
        "expression(",
        "-moz-binding",
        "behavior",
        "@import",
        "position",
        "image-set(",
        "image(",
        "cross-fade(",
        "element(",
        "\\",
    ] {
        assert!(!squeezed.contains(bad), "{what}: style {css:?} has {bad}\n{html}");
    }
    for (index, _) in squeezed.match_indices("url(") {
        let argument = squeezed[index + 4..].trim_start_matches(['"', '\'']);
        assert!(
            is_allowed_image_url(argument, allow_remote),
            "{what}: style {css:?} loads {argument:?}\n{html}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------

#[test]
fn corpus_is_big_enough() {
    let files = corpus();
    let hostile = files
        .iter()
        .filter(|(name, _)| !name.starts_with("newsletter-") && !name.starts_with("reply-"))
        .count();
    assert!(hostile >= 40, "only {hostile} hostile corpus files");
    for (name, content) in &files {
        assert!(
            content.starts_with("<!-- vector:") || content.starts_with("<!-- harmless"),
            "{name} must start with a comment naming its vector"
        );
    }
}

#[test]
fn corpus_output_is_safe() {
    for (name, html) in corpus() {
        for allow_remote in [false, true] {
            let out = sanitize(&html, allow_remote);
            assert_safe(&format!("{name} (remote {allow_remote})"), &out.html, allow_remote);
            if allow_remote {
                assert_eq!(out.blocked_remote, 0, "{name}: nothing is blocked with remote on");
            }
        }
    }
}

#[test]
fn corpus_output_is_stable_when_sanitised_again() {
    for (name, html) in corpus() {
        for allow_remote in [false, true] {
            let once = sanitize(&html, allow_remote).html;
            let twice = sanitize(&once, allow_remote);
            // ammonia may list a tag's attributes in another order after dropping one
            // (`swap_remove`); anything else is a change of meaning.
            assert_eq!(
                canonical(&once),
                canonical(&twice.html),
                "{name} (remote {allow_remote}): sanitising again changed the output"
            );
            assert_eq!(twice.blocked_remote, 0, "{name}: nothing left to block");
        }
    }
}

#[test]
fn the_checker_catches_what_it_should() {
    // The tokenizer and checks themselves, against unsanitised vectors.
    let caught = |html: &str| std::panic::catch_unwind(|| assert_safe("probe", html, false)).is_err();
    assert!(caught("<img src=x onerror=alert(1)>"));
    assert!(caught(
        "<a href=\"jav&#x09;ascript:alert(1)\" target=_blank rel=\"noopener noreferrer\">x</a>"
    ));
    assert!(caught(
        "<a href=\"&#0000106avascript:x\" target=_blank rel=\"noopener noreferrer\">x</a>"
    ));
    assert!(caught("<p style=\"background:url(https://tracker.example/x)\">x</p>"));
    assert!(caught("<p title=\"x\"/onclick=alert(1)>x</p>"));
    assert!(caught("<SCRIPT>alert(1)</SCRIPT>"));
    assert!(caught("<p id=x>x</p>"));
    assert!(caught("<a href=\"https://ok.example/\">no target</a>"));
    assert!(!caught("<p title=\"&lt;script&gt;\">&lt;script&gt;</p>"));
}

// ---------------------------------------------------------------------------------------
// Targeted cases
// ---------------------------------------------------------------------------------------

#[test]
fn remote_images_are_blocked_and_counted() {
    let html = corpus_file("newsletter-remote-images.html");
    let out = sanitize(&html, false);
    // hero background (CSS), logo, two article images, footer background attribute, pixel
    assert_eq!(out.blocked_remote, 6, "{}", out.html);
    assert!(!out.html.contains("tracker.example"), "{}", out.html);
    // The CSS background loses its image, not its colour; blocked images keep their alt.
    assert!(out.html.contains("background:#003366 none no-repeat"), "{}", out.html);
    assert!(out.html.contains("alt=\"Weekly Digest\""), "{}", out.html);
    assert!(
        out.html.contains("href=\"https://news.example.com/a/1\""),
        "{}",
        out.html
    );

    let out = sanitize(&html, true);
    assert_eq!(out.blocked_remote, 0);
    assert!(
        out.html.contains("src=\"https://tracker.example/logo.png\""),
        "{}",
        out.html
    );
    assert!(
        out.html.contains("src=\"http://tracker.example/article1.jpg\""),
        "{}",
        out.html
    );
    assert!(
        out.html
            .contains("url(&quot;https://tracker.example/hero-bg.jpg&quot;)"),
        "{}",
        out.html
    );
    assert!(
        out.html
            .contains("background=\"https://tracker.example/footer-bg.png\""),
        "{}",
        out.html
    );
}

#[test]
fn protocol_relative_and_css_tricks_count_as_remote() {
    let html = corpus_file("css-remote-fetch-tricks.html");
    let out = sanitize(&html, false);
    assert!(!out.html.contains("tracker.example"), "{}", out.html);
    // url(//...) in CSS and the two protocol-relative <img>s
    assert!(out.blocked_remote >= 3, "{} blocked: {}", out.blocked_remote, out.html);

    let out = sanitize("<img src=\"//cdn.example/a.png\">", true);
    assert_eq!(out.html, "<img src=\"https://cdn.example/a.png\">");
    let out = sanitize("<img src=\"//cdn.example/a.png\">", false);
    assert_eq!((out.html.as_str(), out.blocked_remote), ("<img>", 1));
}

#[test]
fn relative_urls_into_tern_are_dropped() {
    let out = sanitize(
        "<img src=\"/logout\"><img src=\"part/2\"><a href=\"/settings\">s</a>\
         <table background=\"../x.gif\"><tr><td>x</td></tr></table>",
        false,
    );
    assert!(!out.html.contains("src="), "{}", out.html);
    assert!(!out.html.contains("href="), "{}", out.html);
    assert!(!out.html.contains("background="), "{}", out.html);
    assert_eq!(out.blocked_remote, 0);
}

#[test]
fn cid_references_are_rewritten() {
    let calls = RefCell::new(Vec::<String>::new());
    let cid_url = |cid: &str| {
        calls.borrow_mut().push(cid.to_owned());
        (!cid.starts_with("not-in-this-message")).then(|| format!("/message/7/part?cid={cid}"))
    };
    let html = corpus_file("newsletter-cid-images.html");
    let out = sanitize_html(
        &html,
        &Options {
            allow_remote: false,
            cid_url: &cid_url,
        },
    );
    let html = &out.html;
    assert_eq!(out.blocked_remote, 0);
    assert!(html.contains("src=\"/message/7/part?cid=logo@example.com\""), "{html}");
    assert!(
        html.contains("src=\"/message/7/part?cid=image001.jpg@01D9A1B2.C3D4E5F0\""),
        "{html}"
    );
    // As written: the caller decides how to match percent-encoding and case.
    assert!(
        html.contains("src=\"/message/7/part?cid=chart%20q1@example.com\""),
        "{html}"
    );
    assert!(
        html.contains("background=\"/message/7/part?cid=pattern@example.com\""),
        "{html}"
    );
    assert!(
        html.contains("url(&quot;/message/7/part?cid=header-bg@example.com&quot;)"),
        "{html}"
    );
    // A part the message does not have: the image loses its source, keeps its alt text.
    assert!(html.contains("<img alt=\"missing part\">"), "{html}");
    assert!(!html.contains("cid:"), "{html}");
    // Each distinct reference is looked up once.
    let calls = calls.into_inner();
    let distinct: BTreeSet<_> = calls.iter().collect();
    assert_eq!(calls.len(), distinct.len(), "{calls:?}");
    assert_eq!(calls.len(), 6, "{calls:?}");
}

#[test]
fn cid_url_answers_are_checked() {
    let cid_url = |cid: &str| match cid {
        "js" => Some("javascript:alert(1)".to_owned()),
        "html" => Some("data:text/html,<script>alert(1)</script>".to_owned()),
        "ok" => Some("https://mail.example/part/ok".to_owned()),
        _ => None,
    };
    let out = sanitize_html(
        "<img src=cid:js><img src=cid:html><img src=cid:ok><img src=cid:none>",
        &Options {
            allow_remote: false,
            cid_url: &cid_url,
        },
    );
    assert_eq!(out.html, "<img><img><img src=\"https://mail.example/part/ok\"><img>");
    assert_eq!(out.blocked_remote, 0, "our own part URLs are not remote content");
}

#[test]
fn data_images_are_kept_other_data_is_not() {
    let png = "data:image/png;base64,iVBORw0KGgo=";
    let out = sanitize(&format!("<img src=\"{png}\" alt=a>"), false);
    assert_eq!(out.html, format!("<img src=\"{png}\" alt=\"a\">"));
    for kind in ["image/gif", "image/jpeg", "image/webp", "IMAGE/PNG"] {
        let out = sanitize(&format!("<img src=\"data:{kind};base64,AAAA\">"), false);
        assert!(out.html.contains("src="), "{kind}: {}", out.html);
    }
    for bad in [
        "data:image/svg+xml,<svg onload=alert(1)>",
        "data:text/html,<script>alert(1)</script>",
        "data:,hello",
        "data:image/png",
    ] {
        let out = sanitize(&format!("<img src=\"{bad}\">"), true);
        assert_eq!(out.html, "<img>", "{bad}");
    }
    let out = sanitize(&format!("<a href=\"{png}\">x</a>"), true);
    assert!(!out.html.contains("href"), "no data: links: {}", out.html);
    let out = sanitize(&format!("<p style=\"background-image:url({png})\">x</p>"), false);
    assert!(out.html.contains(&format!("url(&quot;{png}&quot;)")), "{}", out.html);
}

#[test]
fn links_open_in_a_new_context_without_opener() {
    let out = sanitize(&corpus_file("a-target-ping-download.html"), false);
    let tags = tokenize(&out.html);
    let links: Vec<&Tag> = tags.iter().filter(|t| t.name == "a" && !t.end).collect();
    assert_eq!(links.len(), 6);
    for link in &links {
        assert_eq!(link.attr("target"), Some("_blank"));
        assert_eq!(link.attr("rel"), Some("noopener noreferrer"));
        for gone in ["ping", "download", "referrerpolicy"] {
            assert_eq!(link.attr(gone), None, "{gone}: {}", out.html);
        }
    }
    assert_eq!(links[4].attr("href"), Some("mailto:someone@example.com?subject=hi"));
    assert_eq!(links[0].attr("href"), Some("https://ok.example/"));
}

#[test]
fn script_schemes_never_survive_in_links() {
    let vectors = [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "jav&#x09;ascript:alert(1)",
        "jav&#9;ascript:alert(1)",
        "jav&Tab;ascript:alert(1)",
        "java&#x0A;script:alert(1)",
        "java&#13;script:alert(1)",
        "&#x01;javascript:alert(1)",
        "&#x00;javascript:alert(1)",
        "&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)",
        "&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058alert(1)",
        "javascript&colon;alert(1)",
        "vbscript:msgbox(1)",
        "VbScRiPt:msgbox(1)",
        "data:text/html,<script>alert(1)</script>",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "livescript:alert(1)",
        "file:///etc/passwd",
        "ftp://example.com/x",
        "tel:+123",
        "//evil.example/",
        "#top",
        "/relative",
    ];
    for vector in vectors {
        for element in [
            "<a href=\"{}\">x</a>",
            "<img src=\"{}\">",
            "<table background=\"{}\"><tr><td>x</td></tr></table>",
        ] {
            let html = element.replace("{}", vector);
            let out = sanitize(&html, true);
            if vector == "//evil.example/" && !element.starts_with("<a") {
                continue; // protocol-relative images are remote images: allowed here
            }
            for attr in ["href=", "src=", "background="] {
                assert!(!out.html.contains(attr), "{html} -> {}", out.html);
            }
        }
    }
    for good in [
        "https://ok.example/",
        " https://ok.example/ ",
        "HTTP://OK.EXAMPLE/",
        "mailto:a@b.example",
    ] {
        let out = sanitize(&format!("<a href=\"{good}\">x</a>"), false);
        assert!(out.html.contains("href="), "{good}: {}", out.html);
    }
}

#[test]
fn style_declarations_are_filtered() {
    let out = sanitize(
        "<div style=\"color: red; position: fixed; top: 0; z-index: 99; \
         width: expression(alert(1)); font-family: 'Helvetica Neue', Arial; \
         -moz-binding: url(x.xml); behavior: url(x.htc); background-image: image-set('x.png' 1x); \
         margin: 0 auto; COLOR: blue\">x</div>",
        false,
    );
    assert_eq!(
        out.html,
        "<div style=\"color:red;font-family:&quot;Helvetica Neue&quot; , Arial;margin:0 auto;color:blue\">x</div>"
    );
    // No escape, comment or case trick brings position back.
    for trick in [
        "pos\\ition: fixed",
        "POSITION:FIXED",
        "posi/**/tion: fixed",
        "position/**/:fixed",
    ] {
        let out = sanitize(&format!("<p style=\"{trick}\">x</p>"), false);
        assert_eq!(out.html, "<p>x</p>", "{trick}");
    }
    // A remote background image is counted and becomes `none`; the colour stays.
    let out = sanitize(
        "<table><tr><td style=\"background: #fff url('https://tracker.example/a.gif') repeat-x\">x</td></tr></table>",
        false,
    );
    assert_eq!(out.blocked_remote, 1);
    assert!(!out.html.contains("tracker"), "{}", out.html);
    assert!(
        out.html.contains("style=\"background:#fff none repeat-x\""),
        "{}",
        out.html
    );
    // url() anywhere but background/background-image goes, remote or not.
    let out = sanitize("<ul style=\"list-style-image: url(cid:x)\"><li>x</li></ul>", false);
    assert_eq!(out.html, "<ul><li>x</li></ul>");
}

#[test]
fn harmless_newsletter_formatting_survives() {
    let out = sanitize(&corpus_file("newsletter-tables-inline-styles.html"), false);
    let html = &out.html;
    assert_eq!(out.blocked_remote, 0);
    for expected in [
        "bgcolor=\"#f4f4f4\"",
        "bgcolor=\"#ffffff\"",
        "cellpadding=\"0\"",
        "cellspacing=\"0\"",
        "width=\"600\"",
        "valign=\"top\"",
        "style=\"border-collapse:collapse;border:1px solid #dddddd\"",
        "<h1 style=\"margin:0;font-size:28px;line-height:34px;color:#333333;font-weight:bold\">Spring is here</h1>",
        "<b>spring collection</b>",
        "<i>new colours</i>",
        "<u>new sizes</u>",
        "<li>Linen shirts</li>",
        "face=\"Verdana\"",
        "size=\"2\"",
        "color=\"#888888\"",
        "href=\"https://shop.example.com/spring?utm_source=newsletter&amp;utm_medium=email\"",
        "href=\"mailto:help@shop.example.com\"",
        "border-radius:4px",
        "display:none",
        "Our spring collection is here",
    ] {
        assert!(html.contains(expected), "missing {expected}:\n{html}");
    }
    // The head goes: title text and style sheet are not shown as text.
    assert!(!html.contains("Spring news"), "{html}");
    assert!(!html.contains("@media"), "{html}");
    assert!(!html.contains("class="), "{html}");

    let out = sanitize(&corpus_file("reply-thread-quoting.html"), false);
    let html = &out.html;
    for expected in [
        "<blockquote style=\"margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204, 204, 204);padding-left:1ex\">",
        "<ol start=\"2\" type=\"a\">",
        "<pre style=\"font-family:monospace\">  indented   code\n    block</pre>",
        "<hr size=\"1\" width=\"50%\" align=\"left\" noshade=\"\">",
        "<center><font color=\"#999999\" size=\"1\">Sent from my phone</font></center>",
        "<p dir=\"rtl\" align=\"right\">שלום</p>",
        "<dl><dt>Term</dt><dd>Definition</dd></dl>",
        "<caption>Numbers</caption>",
        "<th scope=\"col\" colspan=\"2\">Head</th>",
        "<td rowspan=\"1\" nowrap=\"\">1</td>",
        "<abbr title=\"abbreviation\">abbr</abbr>",
        "<b>From:</b> Jo Bloggs &lt;jo@example.com&gt;",
        "<strike>strike</strike>",
        "<sub>2</sub>",
    ] {
        assert!(html.contains(expected), "missing {expected}:\n{html}");
    }
    assert!(!html.contains("o:p"), "{html}");
    assert!(!html.contains("OfficeDocumentSettings"), "{html}");
}

#[test]
fn hostile_corpus_keeps_its_harmless_text() {
    let out = sanitize(&corpus_file("form-action-formaction.html"), false);
    assert!(out.html.contains("text after the forms"), "{}", out.html);
    let out = sanitize(&corpus_file("encoded-markup-stays-text.html"), false);
    assert!(
        out.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        out.html
    );
    let out = sanitize(&corpus_file("css-position-overlay.html"), false);
    assert!(out.html.contains("Your session has expired"), "{}", out.html);
    assert!(!out.html.contains("position"), "{}", out.html);
}

#[test]
fn empty_and_plain_inputs() {
    assert_eq!(sanitize("", false).html, "");
    assert_eq!(sanitize("just text & more", false).html, "just text &amp; more");
    assert_eq!(sanitize("<html><body></body></html>", false).html, "");
}

// ---------------------------------------------------------------------------------------
// text_to_html
// ---------------------------------------------------------------------------------------

#[test]
fn text_is_escaped() {
    assert_eq!(
        text_to_html("<script>alert(\"x\") & 'y'</script>"),
        "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
    );
    let html = text_to_html("<img src=x onerror=alert(1)> javascript:alert(1) \"><svg onload=x>");
    assert_safe("text_to_html", &html, false);
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("<a"), "javascript: is not linked: {html}");
}

#[test]
fn text_keeps_line_breaks_and_spacing() {
    assert_eq!(text_to_html("a\nb\r\nc"), "a<br>\nb<br>\nc");
    assert_eq!(text_to_html("a\n\nb"), "a<br>\n<br>\nb");
    assert_eq!(text_to_html("  two   spaces"), "&nbsp; two &nbsp; spaces");
    assert_eq!(text_to_html(""), "");
    assert_eq!(text_to_html("end\n"), "end<br>\n");
}

#[test]
fn text_links_urls() {
    let link =
        |url: &str, shown: &str| format!("<a href=\"{url}\" target=\"_blank\" rel=\"noopener noreferrer\">{shown}</a>");
    assert_eq!(
        text_to_html("see https://example.com/a?b=1&c=2."),
        format!(
            "see {}.",
            link("https://example.com/a?b=1&amp;c=2", "https://example.com/a?b=1&amp;c=2")
        )
    );
    assert_eq!(
        text_to_html("(http://example.com/x)"),
        format!("({})", link("http://example.com/x", "http://example.com/x"))
    );
    assert_eq!(
        text_to_html("https://en.wikipedia.org/wiki/Tern_(bird), ok"),
        format!(
            "{}, ok",
            link(
                "https://en.wikipedia.org/wiki/Tern_(bird)",
                "https://en.wikipedia.org/wiki/Tern_(bird)"
            )
        )
    );
    assert_eq!(
        text_to_html("<https://example.com/>"),
        format!("&lt;{}&gt;", link("https://example.com/", "https://example.com/"))
    );
    assert_eq!(
        text_to_html("mail MAILTO:jo@example.com!"),
        format!("mail {}!", link("MAILTO:jo@example.com", "MAILTO:jo@example.com"))
    );
    assert_eq!(
        text_to_html("https://x.example/\"onmouseover=alert(1)"),
        format!(
            "{}&quot;onmouseover=alert(1)",
            link("https://x.example/", "https://x.example/")
        )
    );
    // Not links: other schemes, no host, inside a word.
    for text in [
        "javascript:alert(1)",
        "ftp://example.com/",
        "http://",
        "https:// spaced",
        "xhttps://example.com/",
        "data:text/html,x",
    ] {
        assert!(!text_to_html(text).contains("<a"), "{text}: {}", text_to_html(text));
    }
    let html = text_to_html("Links: https://a.example/1 and https://b.example/2\nnext line http://c.example");
    assert_eq!(html.matches("<a href=").count(), 3, "{html}");
    assert_safe("text_to_html links", &html, false);
}

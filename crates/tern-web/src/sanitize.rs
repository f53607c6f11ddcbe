//! Email HTML made safe to show in webmail.
//!
//! The webmail page shows a message's HTML inside
//! `<iframe sandbox="allow-popups allow-popups-to-escape-sandbox" srcdoc=...>` (no scripts, an
//! opaque origin) under a strict Content-Security-Policy. This module is the first of those
//! layers and is meant to hold on its own: its output contains no script, no event handler,
//! no URL that runs code, no element that loads a document or plug-in, and — unless the
//! reader asked for it — nothing that fetches from the network when rendered.
//!
//! The work is done by [ammonia] (an html5ever parse, an allow-list of elements and
//! attributes, a URL-scheme allow-list, an html5ever serialisation), configured here, plus an
//! attribute filter of our own that classifies every URL-bearing attribute (`href`, `src`,
//! `background`), rewrites `cid:` references, blocks remote images and filters `style`
//! declarations before ammonia's own CSS filter re-parses and re-serialises them.
//!
//! What is kept:
//! - the formatting elements mail uses: `a abbr acronym address article aside b bdi bdo big
//!   blockquote br caption center cite code col colgroup dd del dfn div dl dt em figcaption
//!   figure font footer h1–h6 header hgroup hr i img ins kbd li mark nav nobr ol p pre q rp rt
//!   ruby s samp section small span strike strong sub sup table tbody td tfoot th thead time tr
//!   tt u ul var wbr`;
//! - presentational attributes (`align bgcolor border cellpadding cellspacing color dir face
//!   height hspace lang nowrap size title valign vspace width`, `colspan rowspan`, list
//!   `start type value`, `alt`), a filtered `style`, `href` on `a`, `src` on `img`, and a
//!   filtered `background` on tables and their cells and rows;
//! - `a` elements, each given `target="_blank" rel="noopener noreferrer"`.
//!
//! What goes, element and content: `script style title textarea select option optgroup
//! datalist button iframe frame frameset object embed applet svg math template noscript
//! noembed noframes head`. `noscript` goes with its content on purpose: html5ever parses it
//! with scripting on (its content is raw text), the sandboxed iframe with scripting off (its
//! content is markup), and that disagreement is the classic mutation-XSS vector; its content
//! is a fallback for script-less readers and cannot be sanitised as text.
//!
//! What goes, keeping the content: every other element (`form`, `label`, `marquee`, `details`,
//! `video`, `audio`, `picture`, `xmp`, custom elements, `html`/`body`, ...); void elements
//! such as `meta link base input source` thereby vanish entirely. The `<body>`'s own
//! attributes (`bgcolor`, `style`) are lost: the fragment parser ignores `<body>`.
//!
//! What goes, attributes: everything not listed above, in particular every `on*` handler,
//! `id`, `class` and `name` (they could clobber the page's own names), `srcset`, `action`,
//! `formaction`, `xlink:href`, `srcdoc`, `poster`, `ping`, `cite`, `usemap`, `data-*`, and any
//! attribute whose value, with whitespace and control characters removed, mentions
//! `javascript:`, `vbscript:` or `livescript:`.
//!
//! URLs:
//! - links (`a href`): absolute `http`, `https` or `mailto` only. Relative links are dropped
//!   (they would point into Tern itself).
//! - images (`img src`, `background`, CSS `url()`): `cid:` is rewritten through
//!   [`Options::cid_url`] (dropped if the message has no such part); `http`/`https` and
//!   protocol-relative URLs are kept only with [`Options::allow_remote`], otherwise removed and
//!   counted in [`Sanitized::blocked_remote`]; `data:image/png|gif|jpeg|webp` is kept; anything
//!   else (other `data:` types such as `image/svg+xml` or `text/html`, relative URLs into
//!   Tern, other schemes) is dropped. ammonia cannot remove an element because of an
//!   attribute's value, so a blocked image loses its `src` and stays as an empty `<img>` that
//!   shows its `alt` text.
//! - scheme checks use the WHATWG URL parser (the `url` crate, as a browser parses), after
//!   html5ever has decoded character references, so `jav&#x09;ascript:`, `JaVaScRiPt:` and
//!   leading control characters are recognised for what they are; ammonia's own scheme
//!   allow-list (`http https mailto cid data`) is a second, independent check.
//!
//! CSS in `style` attributes (declaration by declaration, after decoding CSS escapes and
//! removing comments for the checks):
//! - only an allow-list of presentational properties is kept (colours, fonts, text, box
//!   model, borders, tables, backgrounds, `display`, `float`, `overflow`, `visibility`, ...);
//!   `position`, `z-index`, `transform`, `behavior`, `-moz-binding`, `content`, `cursor`,
//!   custom properties and the rest are dropped, so mail cannot lay itself over anything;
//! - a declaration mentioning `expression(`, `javascript:`, `vbscript:`, `behavior`,
//!   `-moz-binding`, `@import`, `attr(`, or an image function other than `url()`
//!   (`image-set()`, `image()`, `cross-fade()`, `element()`, `paint()`, `src()`) is dropped;
//! - `url()` is allowed in `background` and `background-image` only, with the image rules
//!   above; a blocked or unresolvable `url()` becomes `none`, so the rest of the declaration
//!   (a background colour) survives;
//! - ammonia then re-parses what is left with cssparser, re-serialises it, drops what does not
//!   parse and checks `url()` schemes again.
//!
//! Comments, `<!DOCTYPE>` and processing instructions are removed. The output is a fragment:
//! the caller wraps it in a document with its own `<meta charset>` and base styles.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use ammonia::url::ParseError;
use ammonia::{Builder, Url, UrlRelative};

/// How to treat a message's references to other content.
pub struct Options<'a> {
    /// Load remote (http/https) images and CSS backgrounds. Off by default: a remote image is a read receipt for the sender.
    pub allow_remote: bool,
    /// Maps a `cid:` reference (without the `cid:` prefix, as written) to the URL serving that inline part, or None if the message has no such part.
    pub cid_url: &'a dyn Fn(&str) -> Option<String>,
}

/// The result of [`sanitize_html`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sanitized {
    /// The safe HTML fragment.
    pub html: String,
    /// remote images/backgrounds removed because allow_remote was false
    pub blocked_remote: usize,
}

/// Makes the HTML of an email safe to display (see the module documentation for what is kept
/// and what is dropped). Never fails: whatever the input, the output is a well-formed, safe
/// fragment, possibly empty.
pub fn sanitize_html(html: &str, options: &Options) -> Sanitized {
    // ammonia's attribute filter must be `'static + Send + Sync`, which `cid_url` is not. So
    // the first pass collects the `cid:` references; only if there are any, they are resolved
    // here and a second, identical pass over the same input rewrites them. (The passes parse
    // the same input with the same policy, so they see the same references.)
    let first = clean(html, options.allow_remote, None);
    if first.cids.is_empty() {
        return Sanitized {
            html: first.html,
            blocked_remote: first.blocked_remote,
        };
    }
    let mut resolved = HashMap::with_capacity(first.cids.len());
    for cid in first.cids {
        resolved
            .entry(cid)
            .or_insert_with_key(|cid| (options.cid_url)(cid).filter(|url| is_acceptable_part_url(url)));
    }
    let second = clean(html, options.allow_remote, Some(Arc::new(resolved)));
    Sanitized {
        html: second.html,
        blocked_remote: second.blocked_remote,
    }
}

/// Plain text (text/plain part) to safe HTML: escaped, line breaks kept, URLs made into links (http, https, mailto only), format=flowed NOT needed.
///
/// Each line break becomes `<br>`; runs of spaces are kept with `&nbsp;` so that indented
/// and aligned text stays so; `http://`, `https://` and `mailto:` URLs become
/// `<a href=... target="_blank" rel="noopener noreferrer">` (trailing punctuation and an
/// unbalanced closing bracket are left outside the link).
pub fn text_to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8 + 16);
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        text_line_to_html(line, &mut out);
        if lines.peek().is_some() {
            out.push_str("<br>\n");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The ammonia policy
// ---------------------------------------------------------------------------------------

/// Elements kept (their disallowed attributes removed).
#[rustfmt::skip]
const TAGS: &[&str] = &[
    "a", "abbr", "acronym", "address", "article", "aside", "b", "bdi", "bdo", "big",
    "blockquote", "br", "caption", "center", "cite", "code", "col", "colgroup", "dd", "del",
    "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "font", "footer", "h1", "h2", "h3",
    "h4", "h5", "h6", "header", "hgroup", "hr", "i", "img", "ins", "kbd", "li", "mark", "nav",
    "nobr", "ol", "p", "pre", "q", "rp", "rt", "ruby", "s", "samp", "section", "small", "span",
    "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time",
    "tr", "tt", "u", "ul", "var", "wbr",
];

/// Elements removed together with everything inside them.
#[rustfmt::skip]
const REMOVED_WITH_CONTENT: &[&str] = &[
    "script", "style", "title", "textarea", "select", "option", "optgroup", "datalist", "button",
    "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math", "template",
    "noscript", "noembed", "noframes", "head",
];

/// Attributes allowed on every kept element.
#[rustfmt::skip]
const GENERIC_ATTRIBUTES: &[&str] = &[
    "align", "bgcolor", "border", "color", "dir", "height", "lang", "style", "title", "valign",
    "width",
];

/// Attributes allowed on particular elements, on top of [`GENERIC_ATTRIBUTES`].
const TAG_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("a", &["href"]),
    ("img", &["src", "alt", "hspace", "vspace"]),
    ("font", &["face", "size"]),
    (
        "table",
        &["cellpadding", "cellspacing", "background", "summary", "frame", "rules"],
    ),
    ("td", &["colspan", "rowspan", "nowrap", "background", "abbr"]),
    ("th", &["colspan", "rowspan", "nowrap", "background", "abbr", "scope"]),
    ("tr", &["background"]),
    ("tbody", &["background"]),
    ("thead", &["background"]),
    ("tfoot", &["background"]),
    ("col", &["span"]),
    ("colgroup", &["span"]),
    ("ol", &["start", "type", "reversed"]),
    ("ul", &["type"]),
    ("li", &["value", "type"]),
    ("hr", &["size", "noshade"]),
    ("ins", &["datetime"]),
    ("del", &["datetime"]),
    ("time", &["datetime"]),
];

/// ammonia's scheme allow-list for URL attributes and CSS `url()`. Our own filter is stricter
/// per attribute (`mailto` for links only, `cid` and `data:image/...` for images only).
const URL_SCHEMES: &[&str] = &["http", "https", "mailto", "cid", "data"];

/// CSS properties kept in `style` attributes.
#[rustfmt::skip]
const CSS_PROPERTIES: &[&str] = &[
    "background", "background-color", "background-image", "background-position",
    "background-repeat", "background-size", "background-clip", "background-origin",
    "border", "border-top", "border-right", "border-bottom", "border-left",
    "border-color", "border-style", "border-width",
    "border-top-color", "border-top-style", "border-top-width",
    "border-right-color", "border-right-style", "border-right-width",
    "border-bottom-color", "border-bottom-style", "border-bottom-width",
    "border-left-color", "border-left-style", "border-left-width",
    "border-collapse", "border-spacing", "border-radius",
    "border-top-left-radius", "border-top-right-radius",
    "border-bottom-left-radius", "border-bottom-right-radius",
    "box-sizing", "caption-side", "clear", "color", "direction", "display", "empty-cells",
    "float", "font", "font-family", "font-size", "font-stretch", "font-style", "font-variant",
    "font-weight", "height", "letter-spacing", "line-height",
    "list-style", "list-style-position", "list-style-type",
    "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "max-height", "max-width", "min-height", "min-width", "opacity", "outline",
    "outline-color", "outline-style", "outline-width",
    "overflow", "overflow-x", "overflow-y", "overflow-wrap",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
    "table-layout", "text-align", "text-decoration", "text-decoration-color",
    "text-decoration-line", "text-decoration-style", "text-indent", "text-overflow",
    "text-transform", "unicode-bidi", "vertical-align", "visibility", "white-space", "width",
    "word-break", "word-spacing", "word-wrap",
];

/// CSS properties where `url()` may appear.
const CSS_URL_PROPERTIES: &[&str] = &["background", "background-image"];

/// Substrings (of a declaration's decoded, lower-cased, whitespace-free value) that drop it.
const CSS_FORBIDDEN: &[&str] = &[
    "expression(",
    "javascript:",
    "vbscript:",
    "livescript:",
    "behavior",
    "-moz-binding",
    "@import",
    "attr(",
    // image functions that take a URL or a plain string: only url() is handled
    "image(",
    "image-set(",
    "cross-fade(",
    "element(",
    "paint(",
    "src(",
];

/// `data:` media types allowed for images.
const DATA_IMAGE_TYPES: &[&str] = &["image/png", "image/gif", "image/jpeg", "image/webp"];

/// Schemes that run code; an attribute whose normalised value mentions one is dropped.
const SCRIPT_SCHEMES: &[&str] = &["javascript:", "vbscript:", "livescript:"];

/// What one pass of ammonia produced.
struct Pass {
    html: String,
    blocked_remote: usize,
    cids: Vec<String>,
}

/// What the attribute filter notes while ammonia runs.
#[derive(Default)]
struct Tally {
    blocked_remote: usize,
    cids: Vec<String>,
}

/// The attribute filter's view of the options (`'static`, as ammonia requires).
struct Policy {
    allow_remote: bool,
    /// `None` in the first pass (collect the references), the resolved parts in the second.
    cids: Option<Arc<HashMap<String, Option<String>>>>,
    tally: Arc<Mutex<Tally>>,
}

impl Policy {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The URL to use for a `cid:` reference, or `None` to drop it.
    fn cid(&self, cid: &str) -> Option<String> {
        match &self.cids {
            None => {
                self.tally().cids.push(cid.to_owned());
                // Placeholder: the first pass's output is discarded when it saw a cid.
                Some(format!("cid:{cid}"))
            }
            Some(resolved) => resolved.get(cid).cloned().flatten(),
        }
    }

    /// The URL to use for a remote image, or `None` (counted) to drop it.
    fn remote(&self, url: String) -> Option<String> {
        if self.allow_remote {
            Some(url)
        } else {
            self.tally().blocked_remote += 1;
            None
        }
    }

    /// The value to use for an image URL (`img src`, `background`, CSS `url()`), or `None`.
    fn image(&self, value: &str) -> Option<String> {
        match classify_image_url(value) {
            ImageUrl::Data => Some(value.trim_matches(is_c0_or_space).to_owned()),
            ImageUrl::Cid(cid) => self.cid(&cid),
            ImageUrl::Remote(url) => self.remote(url),
            ImageUrl::Drop => None,
        }
    }
}

fn clean(html: &str, allow_remote: bool, cids: Option<Arc<HashMap<String, Option<String>>>>) -> Pass {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let policy = Policy {
        allow_remote,
        cids,
        tally: Arc::clone(&tally),
    };
    let tag_attributes: HashMap<&str, HashSet<&str>> = TAG_ATTRIBUTES
        .iter()
        .map(|(tag, attrs)| (*tag, attrs.iter().copied().collect()))
        .collect();
    let html = Builder::default()
        .tags(TAGS.iter().copied().collect())
        .clean_content_tags(REMOVED_WITH_CONTENT.iter().copied().collect())
        .generic_attributes(GENERIC_ATTRIBUTES.iter().copied().collect())
        .tag_attributes(tag_attributes)
        .url_schemes(URL_SCHEMES.iter().copied().collect())
        // Relative URLs get past ammonia so that a `cid_url` answer such as "/part/3" can be
        // used; the attribute filter drops every relative URL that came from the message.
        .url_relative(UrlRelative::PassThrough)
        .link_rel(Some("noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        .strip_comments(true)
        .filter_style_properties(CSS_PROPERTIES.iter().copied().collect())
        .attribute_filter(move |element, attribute, value| filter_attribute(&policy, element, attribute, value))
        .clean(html)
        .to_string();
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(PoisonError::into_inner));
    Pass {
        html,
        blocked_remote: tally.blocked_remote,
        cids: tally.cids,
    }
}

/// Our filter, run by ammonia on every attribute that passed its allow-lists (values already
/// decoded by the HTML parser). `None` removes the attribute.
fn filter_attribute<'u>(policy: &Policy, element: &str, attribute: &str, value: &'u str) -> Option<Cow<'u, str>> {
    if attribute.starts_with("on") || mentions_script_scheme(value) {
        return None;
    }
    match attribute {
        "href" => (element == "a" && is_allowed_link(value)).then_some(Cow::Borrowed(value)),
        "src" if element == "img" => policy.image(value).map(Cow::Owned),
        "background" => policy.image(value).map(Cow::Owned),
        "style" => filter_style(policy, value).map(Cow::Owned),
        // Defence in depth: URL-bearing attributes are not on the allow-list anyway.
        "src" | "srcset" | "srcdoc" | "action" | "formaction" | "xlink:href" | "poster" | "ping" | "cite"
        | "longdesc" | "usemap" | "lowsrc" | "dynsrc" | "data" | "code" | "codebase" | "id" | "class" | "name" => None,
        _ => Some(Cow::Borrowed(value)),
    }
}

/// The attribute value, without whitespace and control characters and lower-cased, mentions
/// a scheme that runs code.
fn mentions_script_scheme(value: &str) -> bool {
    let squeezed: String = value
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SCRIPT_SCHEMES.iter().any(|s| squeezed.contains(s))
}

/// Leading and trailing characters the URL parser strips.
fn is_c0_or_space(c: char) -> bool {
    c <= ' '
}

/// An absolute `http`, `https` or `mailto` URL.
fn is_allowed_link(value: &str) -> bool {
    Url::parse(value).is_ok_and(|url| matches!(url.scheme(), "http" | "https" | "mailto"))
}

/// The URL a `cid_url` answer may be: our own (relative or absolute http/https) URL, a `cid:`
/// or an allowed `data:image`. Anything else is treated as "no such part".
fn is_acceptable_part_url(url: &str) -> bool {
    if mentions_script_scheme(url) || url.chars().any(|c| c.is_control()) {
        return false;
    }
    match Url::parse(url) {
        Ok(parsed) => match parsed.scheme() {
            "http" | "https" | "cid" => true,
            "data" => is_allowed_data_image(url),
            _ => false,
        },
        Err(ParseError::RelativeUrlWithoutBase) => true,
        Err(_) => false,
    }
}

enum ImageUrl {
    /// An allowed `data:image/...` URL.
    Data,
    /// A `cid:` reference, without the prefix.
    Cid(String),
    /// An absolute http/https URL (protocol-relative ones made absolute).
    Remote(String),
    Drop,
}

/// Base for telling relative URLs into Tern from protocol-relative ones.
const LOCAL_BASE: &str = "https://tern.invalid/";

fn classify_image_url(value: &str) -> ImageUrl {
    match Url::parse(value) {
        Ok(url) => match url.scheme() {
            "http" | "https" => ImageUrl::Remote(url.into()),
            "cid" => {
                // As the URL parser does: strip leading/trailing C0 and space, remove tab/newline.
                let written: String = value
                    .trim_matches(is_c0_or_space)
                    .chars()
                    .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
                    .collect();
                match written.get(..4) {
                    Some(prefix) if prefix.eq_ignore_ascii_case("cid:") && written.len() > 4 => {
                        ImageUrl::Cid(written[4..].to_owned())
                    }
                    _ => ImageUrl::Drop,
                }
            }
            "data" if is_allowed_data_image(value) => ImageUrl::Data,
            _ => ImageUrl::Drop,
        },
        Err(ParseError::RelativeUrlWithoutBase) => {
            // "//host/x" (and its backslash variants) leave the page's host: remote.
            // Anything else points into Tern itself, which mail has no business doing.
            let base = Url::parse(LOCAL_BASE).expect("constant URL");
            match base.join(value) {
                Ok(url) if url.host_str() != base.host_str() => ImageUrl::Remote(url.into()),
                _ => ImageUrl::Drop,
            }
        }
        Err(_) => ImageUrl::Drop,
    }
}

/// `data:` URL with one of [`DATA_IMAGE_TYPES`] (media type parameters allowed).
fn is_allowed_data_image(value: &str) -> bool {
    let value: String = value
        .trim_matches(is_c0_or_space)
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let Some(prefix) = value.get(..5) else {
        return false;
    };
    if !prefix.eq_ignore_ascii_case("data:") {
        return false;
    }
    let Some((media, _data)) = value[5..].split_once(',') else {
        return false;
    };
    let essence = media
        .split(';')
        .next()
        .unwrap_or("")
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .to_ascii_lowercase();
    DATA_IMAGE_TYPES.contains(&essence.as_str())
}

// ---------------------------------------------------------------------------------------
// CSS in style attributes
// ---------------------------------------------------------------------------------------

/// Filters a `style` attribute declaration by declaration; `None` if nothing is left.
fn filter_style(policy: &Policy, css: &str) -> Option<String> {
    let mut out = String::with_capacity(css.len());
    for declaration in split_declarations(css) {
        if let Some(kept) = filter_declaration(policy, &declaration) {
            if !out.is_empty() {
                out.push(';');
            }
            out.push_str(&kept);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Splits a declaration list at top-level semicolons (not in strings, brackets or after a
/// backslash), removing comments.
fn split_declarations(css: &str) -> Vec<String> {
    let mut declarations = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut chars = css.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            current.push(c);
            if c == '\\' {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            } else if c == q || c == '\n' {
                quote = None;
            }
            continue;
        }
        match c {
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = '\0';
                for c in chars.by_ref() {
                    if previous == '*' && c == '/' {
                        break;
                    }
                    previous = c;
                }
            }
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '"' | '\'' => {
                quote = Some(c);
                current.push(c);
            }
            '(' | '[' | '{' => {
                depth += 1;
                current.push(c);
            }
            ')' | ']' | '}' => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            ';' if depth == 0 => declarations.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    declarations.push(current);
    declarations.retain(|d| !d.trim().is_empty());
    declarations
}

/// Decodes CSS escapes, lower-cases, and removes whitespace and control characters: the form
/// the checks look at.
fn normalize_css(css: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut chars = css.chars().peekable();
    while let Some(c) = chars.next() {
        let decoded = if c == '\\' {
            let mut hex = String::new();
            while hex.len() < 6 {
                match chars.peek() {
                    Some(h) if h.is_ascii_hexdigit() => {
                        hex.push(*h);
                        chars.next();
                    }
                    _ => break,
                }
            }
            if !hex.is_empty() {
                if chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
                let code = u32::from_str_radix(&hex, 16).unwrap_or(0);
                match char::from_u32(code) {
                    Some(ch) if code != 0 => ch,
                    _ => char::REPLACEMENT_CHARACTER,
                }
            } else {
                match chars.next() {
                    Some('\n' | '\r' | '\x0c') => continue,
                    Some(next) => next,
                    None => char::REPLACEMENT_CHARACTER,
                }
            }
        } else {
            c
        };
        if !decoded.is_whitespace() && !decoded.is_control() {
            out.extend(decoded.to_lowercase());
        }
    }
    out
}

/// One declaration (comments already removed): `name:value` to keep, or `None`.
fn filter_declaration(policy: &Policy, raw: &str) -> Option<String> {
    if raw.contains(['{', '}']) {
        return None;
    }
    let (raw_name, raw_value) = raw.split_once(':')?;
    let name = normalize_css(raw_name);
    if !CSS_PROPERTIES.contains(&name.as_str()) {
        return None;
    }
    let value = normalize_css(raw_value);
    if value.is_empty() || CSS_FORBIDDEN.iter().any(|bad| value.contains(bad)) {
        return None;
    }
    let raw_value = raw_value.trim();
    if !value.contains("url(") {
        return Some(format!("{name}:{raw_value}"));
    }
    // url() only where images belong, and only written plainly (no escapes to decode).
    if !CSS_URL_PROPERTIES.contains(&name.as_str()) || raw_value.contains('\\') {
        return None;
    }
    let (rewritten, urls) = rewrite_css_urls(policy, raw_value)?;
    // Every url( the browser will see must be one we wrote.
    if normalize_css(&rewritten).matches("url(").count() != urls {
        return None;
    }
    Some(format!("{name}:{rewritten}"))
}

/// Rewrites each `url(...)` of an escape-free value through the image rules: kept URLs as
/// `url("...")`, the others as `none`. Returns the new value and how many `url(` it contains;
/// `None` if a `url(` is malformed.
fn rewrite_css_urls(policy: &Policy, value: &str) -> Option<(String, usize)> {
    let lower = value.to_ascii_lowercase();
    let mut out = String::with_capacity(value.len());
    let mut urls = 0;
    let mut position = 0;
    while let Some(found) = lower[position..].find("url(") {
        let start = position + found;
        // "url" must be the whole function name, not the end of another one.
        if value[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_' || !c.is_ascii())
        {
            return None;
        }
        out.push_str(&value[position..start]);
        let (url, end) = parse_css_url_argument(value, start + 4)?;
        match policy.image(url) {
            Some(kept) => {
                out.push_str("url(\"");
                push_css_string_content(&kept, &mut out);
                out.push_str("\")");
                urls += 1;
            }
            None => out.push_str("none"),
        }
        position = end;
    }
    out.push_str(&value[position..]);
    Some((out, urls))
}

/// Parses the argument of `url(` starting at `from`: the URL and the index after `)`.
fn parse_css_url_argument(value: &str, from: usize) -> Option<(&str, usize)> {
    let rest = &value[from..];
    let trimmed = rest.trim_start();
    let offset = from + rest.len() - trimmed.len();
    match trimmed.chars().next()? {
        quote @ ('"' | '\'') => {
            let inner_start = offset + 1;
            let inner_len = value[inner_start..].find(quote)?;
            let url = &value[inner_start..inner_start + inner_len];
            if url.contains(['\n', '\r', '\x0c']) {
                return None;
            }
            let after = inner_start + inner_len + 1;
            let tail = &value[after..];
            let close = tail.len() - tail.trim_start().len();
            tail[close..].starts_with(')').then_some((url, after + close + 1))
        }
        _ => {
            let close = value[offset..].find(')')?;
            let url = value[offset..offset + close].trim_end();
            if url.is_empty()
                || url
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '('))
            {
                return None;
            }
            Some((url, offset + close + 1))
        }
    }
}

/// Appends `s` escaped for a double-quoted CSS string.
fn push_css_string_content(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\{:x} ", u32::from(c))),
            c => out.push(c),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Plain text
// ---------------------------------------------------------------------------------------

const LINK_SCHEMES: &[&str] = &["https://", "http://", "mailto:"];

fn text_line_to_html(line: &str, out: &mut String) {
    let mut previous_was_space = true; // a space at the start of a line must not collapse
    let mut index = 0;
    while index < line.len() {
        if let Some(end) = link_at(line, index) {
            let url = &line[index..end];
            out.push_str("<a href=\"");
            push_html_escaped(url, out);
            out.push_str("\" target=\"_blank\" rel=\"noopener noreferrer\">");
            push_html_escaped(url, out);
            out.push_str("</a>");
            previous_was_space = false;
            index = end;
            continue;
        }
        let c = line[index..].chars().next().expect("index is on a char boundary");
        if c == ' ' {
            if previous_was_space {
                out.push_str("&nbsp;");
                previous_was_space = false;
            } else {
                out.push(' ');
                previous_was_space = true;
            }
        } else {
            push_html_escaped_char(c, out);
            previous_was_space = false;
        }
        index += c.len_utf8();
    }
}

/// If a linkable URL starts at `start` (at a word boundary), the index where it ends.
fn link_at(line: &str, start: usize) -> Option<usize> {
    let rest = &line[start..];
    let scheme = LINK_SCHEMES.iter().find(|scheme| {
        rest.get(..scheme.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme))
    })?;
    if line[..start]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '@' | ':'))
    {
        return None;
    }
    let mut end = rest
        .char_indices()
        .find(|&(_, c)| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '`' | '\u{a0}'))
        .map_or(rest.len(), |(i, _)| i);
    // Trailing punctuation belongs to the sentence; a closing bracket only if unbalanced.
    loop {
        let candidate = &rest[..end];
        let Some(last) = candidate.chars().next_back() else {
            break;
        };
        let trim = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' => true,
            ')' => candidate.matches('(').count() < candidate.matches(')').count(),
            ']' => candidate.matches('[').count() < candidate.matches(']').count(),
            '}' => candidate.matches('{').count() < candidate.matches('}').count(),
            _ => false,
        };
        if !trim {
            break;
        }
        end -= last.len_utf8();
    }
    if end <= scheme.len() {
        return None;
    }
    let url = Url::parse(&rest[..end]).ok()?;
    let valid = match url.scheme() {
        "http" | "https" => url.host_str().is_some_and(|host| !host.is_empty()),
        "mailto" => !url.path().is_empty(),
        _ => false,
    };
    valid.then_some(start + end)
}

fn push_html_escaped(s: &str, out: &mut String) {
    for c in s.chars() {
        push_html_escaped_char(c, out);
    }
}

fn push_html_escaped_char(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        '\0' => out.push('\u{fffd}'),
        c => out.push(c),
    }
}

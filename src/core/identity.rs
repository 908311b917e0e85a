//! IMS identities: syntax checks for the IMPI (NAI) and IMPUs (SIP/tel URIs),
//! pool patterns, and URI comparison for the `To` check (REQ 4).
//!
//! Everything here is strict on purpose: a value that passes
//! [`check_impi`] or [`parse_impu`] is safe to put inside a quoted SIP header
//! parameter (no CR, LF, NUL, quote, backslash, space or non-ASCII byte).

/// Longest identity accepted, in bytes.
pub const MAX_IDENTITY_LEN: usize = 256;

/// A 256-entry class table: alphanumerics and the bytes of `extra`.
const fn class(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

static NAI_USER: [bool; 256] = class(b"!#$%&'*+-/=?^_`{|}~.");
static URI_USER: [bool; 256] = class(b"-_.!~*'()%&=+$;/");
static PARAM: [bool; 256] = class(b"-_.!~*'()%[]/:&+$=;");
#[cfg(test)]
static HOST: [bool; 256] = class(b"-.");

/// Bytes allowed anywhere in an IMPU or `To` URI: graphic ASCII except
/// `"`, `\\`, `<`, `>`, `,` and `?`.
const fn uri_chars() -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'<' | b'>' | b',' | b'?');
        c += 1;
    }
    t
}

static URI_CHAR: [bool; 256] = uri_chars();

/// Every byte of `s` in `table`: no early exit, so that the loop has no
/// branch per byte (identities are short, and almost always valid).
#[inline]
fn all_in(s: &[u8], table: &[bool; 256]) -> bool {
    s.iter().fold(true, |ok, &c| ok & table[c as usize])
}

#[cfg(test)]
fn is_nai_user_char(c: u8) -> bool {
    NAI_USER[c as usize]
}

#[cfg(test)]
fn is_host_char(c: u8) -> bool {
    HOST[c as usize]
}

/// Kinds of host bytes for [`check_hostname`]: 0 letter or digit, 1 '.',
/// 2 '-', 3 anything else.
const fn host_kinds() -> [u8; 256] {
    let mut t = [3u8; 256];
    let mut c = 0;
    while c < 256 {
        if (c as u8).is_ascii_alphanumeric() {
            t[c] = 0;
        }
        c += 1;
    }
    t[b'.' as usize] = 1;
    t[b'-' as usize] = 2;
    t
}

static HOST_KIND: [u8; 256] = host_kinds();

/// Bad pairs (kind before, kind) as bits `before * 4 + kind`: anything
/// after or being a bad byte, "..", "-.", ".-" (a '.' before the first
/// byte makes a leading '.' or '-' bad too).
const HOST_BAD: u16 = 1 << 3 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 9 | 1 << 11 | 0xf000;

fn check_hostname(host: &str) -> bool {
    let b = host.as_bytes();
    if b.is_empty() || b.len() > 253 {
        return false;
    }
    if b[0] == b'[' {
        // IPv6 reference.
        return match host[1..].strip_suffix(']') {
            Some(v6) => {
                !v6.is_empty()
                    && v6
                        .bytes()
                        .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            }
            None => false,
        };
    }
    // Host characters only; labels neither empty (a trailing dot is
    // tolerated, after at least one label) nor starting or ending with
    // '-'. One pass over pairs of byte kinds, without a branch per byte.
    let mut before = 1u8;
    let mut bad = 0u16;
    for &c in b {
        let k = HOST_KIND[c as usize];
        bad |= HOST_BAD >> (before << 2 | k);
        before = k;
    }
    bad & 1 == 0 && before != 2
}

/// Check that `impi` is a NAI `user@realm` (RFC 7542 subset) and safe in a
/// header. Returns a short description of the problem otherwise.
pub fn check_impi(impi: &str) -> Result<(), &'static str> {
    if impi.is_empty() || impi.len() > MAX_IDENTITY_LEN {
        return Err("empty or too long");
    }
    let b = impi.as_bytes();
    let Some(at) = b.iter().position(|&c| c == b'@') else {
        return Err("no '@'");
    };
    let (user, realm) = (&b[..at], &impi[at + 1..]);
    // One pass: NAI characters, and no dot first, last or doubled.
    let mut chars = !user.is_empty();
    let mut prev_dot = true;
    let mut dots = false;
    for &c in user {
        chars &= NAI_USER[c as usize];
        let dot = c == b'.';
        dots |= dot & prev_dot;
        prev_dot = dot;
    }
    if !chars {
        return Err("user part has characters outside the NAI set");
    }
    if dots || prev_dot {
        return Err("user part has a misplaced dot");
    }
    // check_hostname refuses '@' and, here, an IPv6 reference.
    if realm.starts_with('[') || !check_hostname(realm) {
        return Err("realm is not a domain name");
    }
    Ok(())
}

/// The previous [`check_impi`], to test the new one against.
#[cfg(test)]
fn check_impi_old(impi: &str) -> Result<(), &'static str> {
    if impi.is_empty() || impi.len() > MAX_IDENTITY_LEN {
        return Err("empty or too long");
    }
    let (user, realm) = match impi.split_once('@') {
        Some(p) => p,
        None => return Err("no '@'"),
    };
    if user.is_empty() || !all_in(user.as_bytes(), &NAI_USER) {
        return Err("user part has characters outside the NAI set");
    }
    let u = user.as_bytes();
    if u[0] == b'.'
        || u[u.len() - 1] == b'.'
        || memchr::memchr_iter(b'.', u).any(|i| u.get(i + 1) == Some(&b'.'))
    {
        return Err("user part has a misplaced dot");
    }
    if realm.contains('@') || !check_hostname(realm) || realm.starts_with('[') {
        return Err("realm is not a domain name");
    }
    Ok(())
}

/// URI scheme of an IMPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:`
    Tel,
}

/// A parsed IMPU or `To` URI: what takes part in comparisons, held as its
/// canonical form (one string: pool patterns are matched against it) with
/// the positions of its parts. Two URIs name the same identity exactly
/// when their canonical forms (and so the values) are equal: RFC 3261
/// 19.1.4 for SIP (scheme and host case-insensitive, user part
/// case-sensitive after decoding the %-escapes of unreserved characters),
/// telephone numbers without their visual separators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    /// Scheme.
    pub scheme: Scheme,
    /// Port, if given.
    pub port: Option<u16>,
    /// `sip:user@host[:port]` or `tel:+123`: scheme and host lower-cased,
    /// the user part as [`normalize_user`] writes it.
    text: String,
    user: (usize, usize),
    host: (usize, usize),
}

impl Uri {
    /// Canonical form without parameters: `sip:user@host[:port]`, `tel:+123`.
    /// Pool patterns are matched against this form.
    pub fn canonical(&self) -> &str {
        &self.text
    }

    /// User part (SIP; its case kept, %-escapes normalized) or number
    /// (tel, lower-cased, visual separators removed).
    pub fn user(&self) -> &str {
        &self.text[self.user.0..self.user.1]
    }

    /// Host, lower-cased (empty for tel).
    pub fn host(&self) -> &str {
        &self.text[self.host.0..self.host.1]
    }

    /// The same URI, borrowed.
    pub fn view(&self) -> UriView<'_> {
        UriView {
            scheme: self.scheme,
            port: self.port,
            text: &self.text,
            user: self.user,
            host: self.host,
        }
    }
}

/// A canonical URI held elsewhere (a verified token keeps its IMPUs' in
/// its one buffer): what a [`Uri`] gives, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriView<'a> {
    /// Scheme.
    pub scheme: Scheme,
    /// Port, if given.
    pub port: Option<u16>,
    text: &'a str,
    user: (usize, usize),
    host: (usize, usize),
}

impl<'a> UriView<'a> {
    /// `text`'s parts at the positions [`UriRef::write_canonical`] gave
    /// (relative to `text`).
    pub(crate) fn new(
        scheme: Scheme,
        port: Option<u16>,
        text: &'a str,
        user: (usize, usize),
        host: (usize, usize),
    ) -> UriView<'a> {
        UriView {
            scheme,
            port,
            text,
            user,
            host,
        }
    }

    /// Canonical form (see [`Uri::canonical`]).
    pub fn canonical(&self) -> &'a str {
        self.text
    }

    /// User part or number (see [`Uri::user`]).
    pub fn user(&self) -> &'a str {
        self.text.get(self.user.0..self.user.1).unwrap_or("")
    }

    /// Host, lower-cased (empty for tel).
    pub fn host(&self) -> &'a str {
        self.text.get(self.host.0..self.host.1).unwrap_or("")
    }
}

#[cfg(test)]
fn is_uri_user_char(c: u8) -> bool {
    // RFC 3261 unreserved / escaped / user-unreserved, without ',' and '?'.
    URI_USER[c as usize]
}

#[cfg(test)]
fn is_param_char(c: u8) -> bool {
    PARAM[c as usize]
}

/// A URI parsed in place: what [`Uri`] holds, borrowed and not yet
/// lower-cased (for the `To` check, which needs no copy).
#[derive(Clone, Copy, Debug)]
pub struct UriRef<'a> {
    /// Scheme.
    pub scheme: Scheme,
    /// User part (SIP) as written; for tel, the number as written (visual
    /// separators still in).
    pub user: &'a str,
    /// Host as written (empty for tel).
    pub host: &'a str,
    /// Port, if given.
    pub port: Option<u16>,
}

fn is_visual_separator(c: u8) -> bool {
    matches!(c, b'-' | b'.' | b'(' | b')')
}

/// RFC 3261 `unreserved` (alphanum / mark): the characters whose %-escape
/// is the same as the character itself (19.1.4).
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The bytes of a SIP user part in its normal form (RFC 3261 19.1.4, RFC
/// 3986 6.2.2): an escape of an unreserved character is that character;
/// every other escape stays an escape, its hex digits upper-case; the rest
/// as written, case kept. Two user parts are the same exactly when their
/// normal forms are equal. (A '%' not followed by two hex digits, which
/// [`parse_impu_ref`] refuses, is kept as it is.)
struct NormalUser<'a> {
    rest: &'a [u8],
    /// Bytes of an escape still to give, in reverse order.
    pending: [u8; 2],
    npending: usize,
}

impl Iterator for NormalUser<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        if self.npending > 0 {
            self.npending -= 1;
            return Some(self.pending[self.npending]);
        }
        let (&c, rest) = self.rest.split_first()?;
        self.rest = rest;
        if c != b'%' {
            return Some(c);
        }
        let (Some(h), Some(l)) = (
            rest.first().copied().and_then(hex_value),
            rest.get(1).copied().and_then(hex_value),
        ) else {
            return Some(c);
        };
        self.rest = &rest[2..];
        let decoded = h << 4 | l;
        if is_unreserved(decoded) {
            return Some(decoded);
        }
        let upper = |d: u8| if d < 10 { b'0' + d } else { b'A' + d - 10 };
        self.pending = [upper(l), upper(h)];
        self.npending = 2;
        Some(b'%')
    }
}

/// The normal form of a SIP user part (see [`NormalUser`]), byte by byte.
fn normal_user(user: &str) -> NormalUser<'_> {
    NormalUser {
        rest: user.as_bytes(),
        pending: [0; 2],
        npending: 0,
    }
}

/// Append the normal form of the SIP user part `user` to `out`: escapes of
/// unreserved characters decoded, the other escapes with upper-case hex,
/// case kept (RFC 3261 19.1.4). What the canonical form of a SIP URI holds.
pub fn normalize_user(user: &str, out: &mut String) {
    if memchr::memchr(b'%', user.as_bytes()).is_none() {
        out.push_str(user);
    } else {
        // Only ASCII comes out (the user part passed the URI character
        // check, and decoded bytes are unreserved ASCII).
        out.extend(normal_user(user).map(char::from));
    }
}

impl UriRef<'_> {
    /// The owned, canonical form (scheme and host lower-cased, SIP user
    /// part normalized, tel number lower-cased without separators).
    pub fn to_uri(&self) -> Uri {
        let mut text = String::with_capacity(self.user.len() + self.host.len() + 12);
        let (user, host) = self.write_canonical(&mut text);
        Uri {
            scheme: self.scheme,
            port: self.canonical_port(),
            text,
            user,
            host,
        }
    }

    /// The port the canonical form keeps (none for tel).
    pub fn canonical_port(&self) -> Option<u16> {
        if self.scheme == Scheme::Tel {
            None
        } else {
            self.port
        }
    }

    /// Append the canonical form (what [`to_uri`](Self::to_uri) holds) to
    /// `out`, touching only what it appends; returns where the user part
    /// and the host are, relative to the start of what it appended.
    pub fn write_canonical(&self, out: &mut String) -> ((usize, usize), (usize, usize)) {
        let start = out.len();
        match self.scheme {
            Scheme::Tel => {
                out.push_str("tel:");
                out.extend(
                    self.user
                        .bytes()
                        .filter(|&c| !is_visual_separator(c))
                        .map(|c| c.to_ascii_lowercase() as char),
                );
                let end = out.len() - start;
                ((4, end), (end, end))
            }
            Scheme::Sip | Scheme::Sips => {
                out.push_str(if self.scheme == Scheme::Sip {
                    "sip:"
                } else {
                    "sips:"
                });
                let u0 = out.len() - start;
                normalize_user(self.user, out);
                let u1 = out.len() - start;
                if !self.user.is_empty() {
                    out.push('@');
                }
                let h0 = out.len() - start;
                out.push_str(self.host);
                let h1 = out.len() - start;
                // The user part keeps its case (RFC 3261 19.1.4).
                out[start + h0..].make_ascii_lowercase();
                if let Some(p) = self.port {
                    use std::fmt::Write;
                    // Writing to a String cannot fail.
                    let _ = write!(out, ":{p}");
                }
                ((u0, u1), (h0, h1))
            }
        }
    }

    /// Same identity as `u` (what [`same_identity`] says of `self.to_uri()`
    /// and `u`), without building it.
    pub fn same_as(&self, u: &Uri) -> bool {
        self.same_as_view(u.view())
    }

    /// [`same_as`](Self::same_as) for a borrowed canonical URI.
    pub fn same_as_view(&self, u: UriView<'_>) -> bool {
        if self.scheme != u.scheme
            || self.port != u.port
            || !self.host.eq_ignore_ascii_case(u.host())
        {
            return false;
        }
        match self.scheme {
            Scheme::Tel => self
                .user
                .bytes()
                .filter(|&c| !is_visual_separator(c))
                .map(|c| c.to_ascii_lowercase())
                .eq(u.user().bytes()),
            // Case-sensitive, escapes of unreserved characters decoded
            // (RFC 3261 19.1.4); `u` holds its user part normalized.
            Scheme::Sip | Scheme::Sips => {
                if memchr::memchr(b'%', self.user.as_bytes()).is_none() {
                    self.user == u.user()
                } else {
                    normal_user(self.user).eq(u.user().bytes())
                }
            }
        }
    }
}

/// Parse an IMPU (`sip:`, `sips:` or `tel:` URI) strictly.
pub fn parse_impu(s: &str) -> Result<Uri, &'static str> {
    parse_impu_ref(s).map(|u| u.to_uri())
}

/// [`parse_impu`] without copying: the same checks, the parts borrowed.
pub fn parse_impu_ref(s: &str) -> Result<UriRef<'_>, &'static str> {
    parse_impu_ref_known(s, None)
}

/// [`parse_impu_ref`], where `known_host` (if any) is a host name that has
/// already passed the host name check (such as the realm of an IMPI that
/// [`check_impi`] accepted): a host equal to it is not checked again.
pub fn parse_impu_ref_known<'a>(
    s: &'a str,
    known_host: Option<&str>,
) -> Result<UriRef<'a>, &'static str> {
    if s.is_empty() || s.len() > MAX_IDENTITY_LEN {
        return Err("empty or too long");
    }
    if !all_in(s.as_bytes(), &URI_CHAR) {
        return Err("characters not allowed in a URI");
    }
    let (scheme, rest) = match split_byte(s, b':') {
        Some((sc, rest)) => {
            let scheme = if sc.eq_ignore_ascii_case("sip") {
                Scheme::Sip
            } else if sc.eq_ignore_ascii_case("sips") {
                Scheme::Sips
            } else if sc.eq_ignore_ascii_case("tel") {
                Scheme::Tel
            } else {
                return Err("scheme is not sip, sips or tel");
            };
            (scheme, rest)
        }
        None => return Err("no scheme"),
    };
    let (main, params) = match split_byte(rest, b';') {
        Some((m, p)) => (m, Some(p)),
        None => (rest, None),
    };
    if let Some(p) = params {
        if !all_in(p.as_bytes(), &PARAM) {
            return Err("bad URI parameters");
        }
    }
    match scheme {
        Scheme::Tel => {
            let mut number = main.bytes().filter(|&c| !is_visual_separator(c)).peekable();
            if number.peek() == Some(&b'+') {
                number.next();
            }
            let mut any = false;
            for c in number {
                if !(c.is_ascii_digit() || c == b'*' || c == b'#') {
                    return Err("tel number has characters outside the phone-number set");
                }
                any = true;
            }
            if !any {
                return Err("tel number has characters outside the phone-number set");
            }
            Ok(UriRef {
                scheme,
                user: main,
                host: "",
                port: None,
            })
        }
        Scheme::Sip | Scheme::Sips => {
            let (user, hostport) = match memchr::memrchr(b'@', main.as_bytes()) {
                Some(i) => (&main[..i], &main[i + 1..]),
                None => ("", main),
            };
            if hostport.len() != main.len() && user.is_empty() {
                return Err("empty user part");
            }
            if !all_in(user.as_bytes(), &URI_USER) {
                // ('@' and ':' are not user characters.)
                if user.bytes().any(|c| c == b'@' || c == b':') {
                    return Err("user part has '@' or a password");
                }
                return Err("user part has characters not allowed");
            }
            // RFC 3261 `escaped`: '%' and two hex digits, nothing else (the
            // user part is compared with its escapes decoded).
            let mut rest = user.as_bytes();
            while let Some(i) = memchr::memchr(b'%', rest) {
                match (rest.get(i + 1), rest.get(i + 2)) {
                    (Some(&h), Some(&l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                        rest = &rest[i + 3..]
                    }
                    _ => return Err("user part has a '%' not followed by two hex digits"),
                }
            }
            let (host, port) = split_host_port(hostport)?;
            if known_host != Some(host) && !check_hostname(host) {
                return Err("host is not a domain name or IP address");
            }
            Ok(UriRef {
                scheme,
                user,
                host,
                port,
            })
        }
    }
}

/// `s.split_once(c)` for an ASCII byte, without the generic searcher
/// (identities are short).
fn split_byte(s: &str, c: u8) -> Option<(&str, &str)> {
    let i = memchr::memchr(c, s.as_bytes())?;
    Some((&s[..i], &s[i + 1..]))
}

fn split_host_port(hp: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if hp.starts_with('[') {
        match hp.find(']') {
            Some(i) => {
                let (h, rest) = hp.split_at(i + 1);
                match rest.strip_prefix(':') {
                    Some(p) => (h, Some(p)),
                    None if rest.is_empty() => (h, None),
                    None => return Err("garbage after IPv6 host"),
                }
            }
            None => return Err("unterminated IPv6 host"),
        }
    } else {
        match split_byte(hp, b':') {
            Some((h, p)) => (h, Some(p)),
            None => (hp, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| "bad port")?),
        None => None,
    };
    Ok((host, port))
}

/// Take the URI out of a `To` value: either a bare URI or a name-addr
/// (`"Alice" <sip:alice@x>;tag=1`). Header parameters are dropped.
pub fn parse_to_uri(to: &str) -> Result<Uri, &'static str> {
    parse_to_uri_ref(to).map(|u| u.to_uri())
}

/// [`parse_to_uri`] without copying.
pub fn parse_to_uri_ref(to: &str) -> Result<UriRef<'_>, &'static str> {
    parse_impu_ref(to_uri_text(to)?)
}

/// The URI of a `To` value as text: what [`parse_to_uri_ref`] parses.
pub fn to_uri_text(to: &str) -> Result<&str, &'static str> {
    let to = to.trim_matches(|c| c == ' ' || c == '\t');
    let uri = if let Some(start) = memchr::memrchr(b'<', to.as_bytes()) {
        let rest = &to[start + 1..];
        match memchr::memchr(b'>', rest.as_bytes()) {
            Some(end) => &rest[..end],
            None => return Err("unterminated '<'"),
        }
    } else {
        // addr-spec without brackets: everything after ';' is a header parameter.
        split_byte(to, b';').map_or(to, |(uri, _)| uri)
    };
    Ok(trim(uri))
}

/// `s.trim()`, without the Unicode tables when the ends are plain ASCII.
fn trim(s: &str) -> &str {
    let t = s.trim_ascii();
    match (t.as_bytes().first(), t.as_bytes().last()) {
        // trim_ascii leaves U+000B and non-ASCII white space in place.
        (Some(&f), Some(&l)) if f >= 0x80 || l >= 0x80 || f == 0x0b || l == 0x0b => s.trim(),
        _ => t,
    }
}

/// Compare two URIs as doc/protocol.md ("Identities") says: scheme, user, host and port,
/// parameters ignored; scheme and host case-insensitive, the SIP user part
/// case-sensitive with its unreserved escapes decoded (RFC 3261 19.1.4):
/// the canonical forms are equal.
pub fn same_identity(a: &Uri, b: &Uri) -> bool {
    a == b
}

/// A pool pattern: `*` matches any run of characters except `@`; everything
/// else matches itself, ASCII case-insensitively. The whole value must match.
#[derive(Clone, Debug)]
pub struct Pattern {
    parts: Vec<String>,
    text: String,
}

impl Pattern {
    /// Compile a pattern. Fails on characters that never occur in an identity.
    pub fn new(text: &str) -> Result<Pattern, &'static str> {
        if text.is_empty() {
            return Err("empty pattern");
        }
        if !text.bytes().all(|c| c.is_ascii_graphic()) || text.contains(['"', '\\']) {
            return Err("pattern has characters that never occur in an identity");
        }
        Ok(Pattern {
            parts: text
                .to_ascii_lowercase()
                .split('*')
                .map(str::to_owned)
                .collect(),
            text: text.to_owned(),
        })
    }

    /// The pattern as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does `value` match (ASCII case-insensitively)?
    pub fn matches(&self, value: &str) -> bool {
        // Compared in place, ASCII case-insensitively (the parts are
        // lower-cased already): no lower-cased copy of `value`.
        let v = value.as_bytes();
        let eq = |a: &[u8], b: &str| a.eq_ignore_ascii_case(b.as_bytes());
        let n = self.parts.len();
        if n == 1 {
            return eq(v, &self.parts[0]);
        }
        let first = self.parts[0].as_bytes();
        let last = self.parts[n - 1].as_bytes();
        if v.len() < first.len() + last.len()
            || !v[..first.len()].eq_ignore_ascii_case(first)
            || !v[v.len() - last.len()..].eq_ignore_ascii_case(last)
        {
            return false;
        }
        let mut pos = first.len();
        let end = v.len() - last.len();
        // Greedy-free left-to-right search of the middle parts; a wildcard
        // run may not contain '@'.
        for part in &self.parts[1..n - 1] {
            let p = part.as_bytes();
            let found = if p.is_empty() {
                Some(0)
            } else {
                v[pos..end]
                    .windows(p.len())
                    .position(|w| w.eq_ignore_ascii_case(p))
            };
            match found {
                Some(i) => {
                    if v[pos..pos + i].contains(&b'@') {
                        return false;
                    }
                    pos += i + p.len();
                }
                None => return false,
            }
        }
        !v[pos..end].contains(&b'@')
    }

    /// The matching rule as first written (a lower-cased copy and `str`
    /// searches), kept to test [`Pattern::matches`] against.
    #[cfg(test)]
    fn matches_by_copy(&self, value: &str) -> bool {
        let v = value.to_ascii_lowercase();
        let n = self.parts.len();
        if n == 1 {
            return v == self.parts[0];
        }
        let first = &self.parts[0];
        let last = &self.parts[n - 1];
        if !v.starts_with(first.as_str())
            || v.len() < first.len() + last.len()
            || !v.ends_with(last.as_str())
        {
            return false;
        }
        let mut pos = first.len();
        let end = v.len() - last.len();
        for part in &self.parts[1..n - 1] {
            match v[pos..end].find(part.as_str()) {
                Some(i) => {
                    if v[pos..pos + i].contains('@') {
                        return false;
                    }
                    pos += i + part.len();
                }
                None => return false,
            }
        }
        !v[pos..end].contains('@')
    }
}

/// Does any pattern of `pool` match `value`? An empty pool matches nothing.
pub fn in_pool(pool: &[Pattern], value: &str) -> bool {
    pool.iter().any(|p| p.matches(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impi_syntax() {
        assert!(check_impi("alice@socialnet.ims.example.net").is_ok());
        for bad in [
            "",
            "alice",
            "@x.net",
            "a@",
            "a b@x.net",
            "a\"@x.net",
            "a\\@x.net",
            "a\r@x.net",
            "a\n@x.net",
            "a\0@x.net",
            "al\u{e9}@x.net",
            "a@b@x.net",
            "a@x..net",
            "a@-x.net",
            ".a@x.net",
        ] {
            assert!(check_impi(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn impu_syntax_and_compare() {
        let a = parse_impu("sip:Alice@SocialNet.example;transport=ws").unwrap();
        let b = parse_to_uri("\"Al\" <SIP:Alice@socialnet.example>;tag=x").unwrap();
        assert!(same_identity(&a, &b));
        assert_eq!(a.canonical(), "sip:Alice@socialnet.example");
        let t = parse_impu("tel:+1-555-0100").unwrap();
        assert_eq!(t.canonical(), "tel:+15550100");
        assert!(!same_identity(
            &a,
            &parse_impu("sips:Alice@socialnet.example").unwrap()
        ));
        for bad in [
            "",
            "alice@x",
            "http://x",
            "sip:a b@x",
            "sip:a\"@x",
            "sip:a@x\r\n",
            "sip:a:pw@x",
            "sip:@x",
            "sip:a@",
            "sip:a@x:99999",
            "tel:abc",
            "sip:a@x>",
            "sip:a%@x",
            "sip:a%4@x",
            "sip:a%zz@x",
            "sip:%g1@x",
        ] {
            assert!(parse_impu(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// RFC 3261 19.1.4: the user part is case-sensitive, with the escapes
    /// of unreserved characters decoded; scheme and host are not; the
    /// escape of a reserved character is not that character.
    #[test]
    fn sip_uri_comparison_is_rfc_3261() {
        let same = [
            ("sip:alice@x.net", "sip:%61lice@x.net"),
            ("sip:alice@x.net", "sip:%61%6C%69%63%65@x.net"),
            ("sip:alice@x.net", "sip:%61%6c%69%63%65@x.net"),
            ("sip:Alice@x.net", "sip:%41lice@x.net"),
            ("sip:alice@x.net", "sip:alice@X.NET"),
            ("sip:alice@x.net", "SIP:alice@x.net"),
            ("sips:alice@x.net", "SiPs:alice@x.Net"),
            ("sip:a%3Bb@x.net", "sip:a%3bb@x.net"),
            ("sip:a%40b@x.net", "sip:a%40b@x.net"),
            ("sip:a.b_c~d@x.net", "sip:a%2Eb%5Fc%7Ed@x.net"),
            ("sip:alice@x.net;transport=ws", "sip:alice@x.net"),
        ];
        let differ = [
            ("sip:alice@x.net", "sip:Alice@x.net"),
            ("sip:alice@x.net", "sip:ALICE@x.net"),
            ("sip:alice@x.net", "sip:%41lice@x.net"),
            // '&' is reserved: its escape is another user part.
            ("sip:a&b@x.net", "sip:a%26b@x.net"),
            ("sip:alice@x.net", "sips:alice@x.net"),
            ("sip:alice@x.net", "sip:alice@x.net:5060"),
            ("sip:alice@x.net", "sip:alice@y.net"),
        ];
        for (x, y) in same.iter().chain(differ.iter()) {
            let want = same.contains(&(x, y));
            let (ux, uy) = (parse_impu(x).unwrap(), parse_impu(y).unwrap());
            assert_eq!(same_identity(&ux, &uy), want, "{x} vs {y}");
            assert_eq!(same_identity(&uy, &ux), want, "{y} vs {x}");
            // The borrowed check (the To check) says the same, both ways.
            assert_eq!(
                parse_impu_ref(y).unwrap().same_as(&ux),
                want,
                "{y} as To, {x} in the token"
            );
            assert_eq!(
                parse_impu_ref(x).unwrap().same_as(&uy),
                want,
                "{x} as To, {y} in the token"
            );
        }
        assert_eq!(
            parse_impu("SIP:%61lice%3b@X.Net:5070").unwrap().canonical(),
            "sip:alice%3B@x.net:5070"
        );
        // tel: numbers as before (no case, separators ignored).
        assert!(same_identity(
            &parse_impu("tel:+1-555-0100").unwrap(),
            &parse_impu("TEL:+1.555.0100").unwrap()
        ));
    }

    /// Every string of `len` letters of `alphabet`.
    fn words(alphabet: &[u8], len: u32) -> impl Iterator<Item = String> + '_ {
        let a = alphabet.len();
        (0..a.pow(len)).map(move |n| {
            let mut k = n;
            (0..len)
                .map(|_| {
                    let c = alphabet[k % a];
                    k /= a;
                    c as char
                })
                .collect()
        })
    }

    #[test]
    fn pattern_in_place_agrees() {
        let pats = [
            "*@socialnet.com",
            "sip:*@x.net",
            "tel:+1555*",
            "a*b*c",
            "**",
            "*",
            "x",
            "*@*",
            "sip:a*@*.net",
            "A*B",
        ];
        let alphabet = [b'a', b'B', b'@', b'c', b'.', b'*'];
        for p in pats {
            let pat = Pattern::new(p).unwrap();
            for s in (0..=5).flat_map(|len| words(&alphabet, len)) {
                for v in [
                    s.clone(),
                    format!("sip:{s}@x.net"),
                    format!("{s}@socialnet.com"),
                    format!("tel:+1555{s}"),
                ] {
                    assert_eq!(pat.matches(&v), pat.matches_by_copy(&v), "{p} {v}");
                }
            }
        }
    }

    #[test]
    fn class_tables_agree() {
        for c in 0..=255u8 {
            assert_eq!(
                is_nai_user_char(c),
                c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&c)
            );
            assert_eq!(
                is_uri_user_char(c),
                c.is_ascii_alphanumeric() || b"-_.!~*'()%&=+$;/".contains(&c)
            );
            assert_eq!(
                is_param_char(c),
                c.is_ascii_alphanumeric() || b"-_.!~*'()%[]/:&+$=;".contains(&c)
            );
        }
    }

    #[test]
    fn impi_one_pass_agrees() {
        let alphabet = [b'a', b'.', b'@', b'-', b'1', b'_', b'[', b'\''];
        for s in (0..=7).flat_map(|len| words(&alphabet, len)) {
            assert_eq!(check_impi(&s), check_impi_old(&s), "{s:?}");
        }
        for s in [
            "alice@socialnet.ims.example.net",
            "a.b@x.y",
            "a@[::1]",
            "a@x@y",
            "\u{e9}@x.net",
            "a\u{0}@x",
        ] {
            assert_eq!(check_impi(s), check_impi_old(s), "{s:?}");
        }
    }

    #[test]
    fn write_canonical_appends_what_to_uri_holds() {
        for s in [
            "sip:Alice@SocialNet.example;transport=ws",
            "SIPS:Bob@Example.NET:5061",
            "tel:+1-555-0100",
            "tel:+1.(555).0100;phone-context=x",
            "sip:host.example",
            "sip:a@[::1]:5060",
        ] {
            let r = parse_impu_ref(s).unwrap();
            let u = r.to_uri();
            let mut out = String::from("Keep-Case\0");
            let (user, host) = r.write_canonical(&mut out);
            assert_eq!(
                &out[..10],
                "Keep-Case\0",
                "{s}: what was there is untouched"
            );
            let v = UriView::new(u.scheme, u.port, &out[10..], user, host);
            assert_eq!(
                (v.canonical(), v.user(), v.host()),
                (u.canonical(), u.user(), u.host()),
                "{s}"
            );
            assert_eq!(
                u.view(),
                UriView::new(u.scheme, u.port, u.canonical(), user, host),
                "{s}"
            );
            assert!(r.same_as_view(v) && r.same_as(&u), "{s}");
        }
    }

    #[test]
    fn known_host_changes_nothing() {
        // Hosts good and bad, as written in an IMPU; realms that passed the
        // check (the only ones the caller passes): the result is that of
        // parse_impu, whether or not the host equals the realm.
        let alphabet = [b'a', b'-', b'.', b'1', b'_'];
        let hosts: Vec<String> = (1..=4)
            .flat_map(|len| words(&alphabet, len))
            .chain(["[::1]".to_string(), "x.net:5060".to_string()])
            .collect();
        let realms: Vec<&String> = hosts
            .iter()
            .filter(|h| check_hostname(h) && !h.starts_with('['))
            .collect();
        for h in &hosts {
            for user in ["alice@", ""] {
                let s = format!("sip:{user}{h}");
                let want = parse_impu(&s).map(|u| u.canonical().to_string());
                for r in realms
                    .iter()
                    .take(40)
                    .map(|r| r.as_str())
                    .chain([h.as_str()].into_iter().filter(|h| check_hostname(h)))
                {
                    assert_eq!(
                        parse_impu_ref_known(&s, Some(r))
                            .map(|u| u.to_uri().canonical().to_string()),
                        want,
                        "{s:?} realm {r:?}"
                    );
                }
                assert_eq!(
                    parse_impu_ref_known(&s, None).map(|u| u.to_uri().canonical().to_string()),
                    want,
                    "{s:?}"
                );
            }
        }
    }

    #[test]
    fn hostname_one_pass_agrees() {
        fn old(host: &str) -> bool {
            host.bytes().all(is_host_char)
                && host.split('.').enumerate().all(|(i, label)| {
                    (!label.is_empty() || i == host.split('.').count() - 1 && i > 0)
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                })
        }
        let alphabet = [b'a', b'-', b'.', b'1', b'_'];
        for s in (1..=6).flat_map(|len| words(&alphabet, len)) {
            assert_eq!(check_hostname(&s), old(&s), "{s:?}");
        }
    }

    #[test]
    fn borrowed_to_check_agrees() {
        let impus = [
            "sip:alice@socialnet.example",
            "sip:Alice@X.net:5060",
            "tel:+1-555-0100",
            "sips:a@b",
            "sip:x.net",
            "tel:*12#",
        ];
        let tos = [
            "<sip:ALICE@SocialNet.example>;tag=1",
            "sip:alice@socialnet.example;transport=ws",
            "tel:+1(555)0100",
            "tel:+15550100",
            "\"A\" <sips:A@B>",
            "sip:alice@x.net:5060",
            "sip:alice@x.net",
            "sip:X.NET",
            "tel:*12#",
            "tel:+",
            "sip:a@",
            "<sip:a@b",
        ];
        for i in impus {
            let u = parse_impu(i).unwrap();
            for t in tos {
                let old = parse_to_uri(t).map(|x| same_identity(&u, &x));
                let new = parse_to_uri_ref(t).map(|x| x.same_as(&u));
                assert_eq!(old, new, "{i} vs {t}");
            }
        }
    }

    /// The `To` check's shortcut (src/context.rs): a `To` URI written
    /// exactly as an IMPU that parsed names that IMPU.
    #[test]
    fn same_text_same_identity() {
        let alphabet = [
            b'a', b'A', b'.', b'-', b'@', b':', b';', b'1', b'+', b'(', b'=',
        ];
        for w in (0..=4).flat_map(|len| words(&alphabet, len)) {
            for s in [
                format!("sip:{w}@x.net"),
                format!("sips:a{w}@x.net"),
                format!("tel:+1{w}"),
                format!("sip:{w}"),
            ] {
                if let Ok(u) = parse_impu(&s) {
                    // (with parameters, the To's URI text is shorter: no shortcut)
                    if to_uri_text(&s) == Ok(s.as_str()) {
                        assert!(parse_impu_ref(&s).unwrap().same_as(&u), "{s:?}");
                    }
                    assert!(parse_to_uri_ref(&s).unwrap().same_as(&u), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn patterns() {
        let p = Pattern::new("*@socialnet.com").unwrap();
        assert!(p.matches("alice@socialnet.com"));
        assert!(p.matches("Alice@SocialNet.COM"));
        assert!(!p.matches("alice@evil.socialnet.com"));
        assert!(!p.matches("a@b@socialnet.com"));
        assert!(!p.matches("alice@socialnet.com.evil"));
        let s = Pattern::new("sip:*@socialnet.com").unwrap();
        assert!(s.matches("sip:bob@socialnet.com"));
        assert!(!s.matches("sip:bob@evil.com;x=@socialnet.com"));
        let t = Pattern::new("tel:+1555*").unwrap();
        assert!(t.matches("tel:+15550100"));
        assert!(!t.matches("tel:+4455501"));
        let exact = Pattern::new("sip:svc@x.net").unwrap();
        assert!(exact.matches("sip:SVC@x.net") && !exact.matches("sip:svc@x.net2"));
        assert!(!in_pool(&[], "anything"));
    }
}

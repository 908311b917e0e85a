//! Verification of a self-contained access token (JWT, RFC 7519 / RFC 9068)
//! against the configuration: JOSE header, issuer and key selection,
//! signature, lifetime, audience, scope and the identities.

use crate::config::{ClaimNames, Config, Issuer};
use crate::identity::{self, Scheme, UriView};
use crate::keys::{Alg, Key, KeySet};
use crate::reason::Reason;
use serde_json::Value;
use std::borrow::Cow;
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::sync::Arc;

/// Most keys tried for a token without `kid`.
pub const MAX_KEYS_WITHOUT_KID: usize = 4;
/// Most IMPUs in one token.
pub const MAX_IMPUS: usize = 32;

/// Members kept on the stack; an object with more spills to the heap.
const INLINE_MEMBERS: usize = 16;

/// One member of a [`StrictObject`]: its name as written between the
/// quotes and its value as raw, validated JSON text. `Copy`, with nothing
/// to drop: a name with escapes is decoded only when compared.
#[derive(Clone, Copy, Default)]
struct Member<'a> {
    name: &'a str,
    raw: &'a str,
    /// The name has a backslash.
    name_escaped: bool,
    /// The value's text has a backslash somewhere.
    escaped: bool,
}

/// A JSON object whose member names are unique (a duplicate is an error,
/// unlike `serde_json::Map`, which keeps the last one). Values stay as
/// borrowed raw JSON text, validated but not decoded: only the members the
/// checks need are decoded, once, and plain strings and integers without
/// copying.
///
/// Parsed in one pass by a scanner that accepts exactly what
/// `serde_json::from_slice` into a map of `RawValue`s accepts (RFC 8259:
/// whitespace, literals, numbers without leading zeros, strings without
/// control characters and with valid escapes, any nesting depth inside a
/// member value, nothing but whitespace after the object). Escaped names
/// and values are decoded by serde_json itself.
pub struct StrictObject<'a> {
    inline: [Member<'a>; INLINE_MEMBERS],
    /// [`short_key`] of each member's name, in order (inline, then more).
    keys: [u64; INLINE_MEMBERS],
    n: usize,
    more: Vec<Member<'a>>,
    more_keys: Vec<u64>,
    /// Some member name has escapes: lookups compare decoded text.
    escaped_names: bool,
}

/// [`short_key`] of a name longer than 7 bytes or with escapes.
const LONG: u64 = u64::MAX;

/// A member name of at most 7 bytes as one number (its bytes and its
/// length), so that a lookup compares each member in one instruction;
/// [`LONG`] for a longer name.
#[inline]
fn short_key(b: &[u8]) -> u64 {
    if b.len() > 7 {
        return LONG;
    }
    let mut k = (b.len() as u64) << 56;
    for (i, &c) in b.iter().enumerate() {
        k |= (c as u64) << (8 * i);
    }
    k
}

/// The [`short_key`]s of the configured claim names ([`ClaimNames`]),
/// made once with the configuration, so that a claim lookup does not
/// compute its name's key again on every request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimKeys {
    iss: u64,
    aud: u64,
    exp: u64,
    nbf: u64,
    iat: u64,
    scope: u64,
    impi: u64,
    impu: u64,
    sub: u64,
    jti: u64,
}

impl ClaimKeys {
    /// The keys of `names`.
    pub fn of(names: &ClaimNames) -> ClaimKeys {
        let k = |n: &String| short_key(n.as_bytes());
        ClaimKeys {
            iss: k(&names.iss),
            aud: k(&names.aud),
            exp: k(&names.exp),
            nbf: k(&names.nbf),
            iat: k(&names.iat),
            scope: k(&names.scope),
            impi: k(&names.impi),
            impu: k(&names.impu),
            sub: k(&names.sub),
            jti: k(&names.jti),
        }
    }
}

/// A member value, decoded as the checks need it.
enum Val<'a> {
    /// A string (borrowed when it had no escapes).
    Str(Cow<'a, str>),
    /// An integer that fits `i64`, written without fraction or exponent.
    Int(i64),
    /// An array without any backslash in its text (so every string in it
    /// is plain), raw.
    Arr(&'a str),
    /// Anything else, decoded by serde_json (`Null` when that fails, as
    /// before).
    Other(Value),
}

/// Position of the first byte that ends a run of plain string content:
/// `"`, `\\` or a control character. Sixteen bytes at a time on x86-64,
/// then (and elsewhere) as [`first_special_swar`].
fn first_special(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        // Sixteen bytes at a time with SSE2 (part of x86-64 itself: no
        // detection needed): a quote, a backslash, or a byte <= 0x1f
        // (unsigned: max(b, 0x1f) == 0x1f).
        use std::arch::x86_64::*;
        while i + 16 <= s.len() {
            // SAFETY: SSE2 is in every x86-64 CPU; the unaligned load reads
            // s[i..i + 16], inside `s` (checked by the loop condition).
            let m = unsafe {
                let v = _mm_loadu_si128(s.as_ptr().add(i) as *const __m128i);
                let q = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let b = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                let c = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(q, b), c)) as u32
            };
            if m != 0 {
                return Some(i + m.trailing_zeros() as usize);
            }
            i += 16;
        }
    }
    first_special_swar(s, i)
}

/// [`first_special`] from `i` on, eight bytes at a time (SWAR), then byte
/// by byte: the portable way, and the tail after the vector steps.
fn first_special_swar(s: &[u8], mut i: usize) -> Option<usize> {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    while let Some(w) = s.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
        let v = u64::from_le_bytes(w);
        let q = v ^ (L * b'"' as u64);
        let b = v ^ (L * b'\\' as u64);
        let m = ((q.wrapping_sub(L) & !q) | (b.wrapping_sub(L) & !b) | (v.wrapping_sub(L * 0x20) & !v)) & H;
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..].iter().position(|&c| matches!(c, b'"' | b'\\' | 0..=0x1f)).map(|p| i + p)
}

struct Scan<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    /// A string with an escape was seen.
    escapes: bool,
}

impl<'a> Scan<'a> {
    fn new(s: &'a str) -> Scan<'a> {
        Scan { s, b: s.as_bytes(), i: 0, escapes: false }
    }

    fn ws(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
                self.i += 1;
            } else {
                return Some(c);
            }
        }
        None
    }

    /// A string starting at the opening quote; returns whether it had
    /// escapes. Leaves `i` after the closing quote.
    #[inline(always)]
    fn string(&mut self) -> Result<bool, ()> {
        self.i += 1;
        let mut escaped = false;
        loop {
            let rest = self.b.get(self.i..).ok_or(())?;
            let stop = first_special(rest).ok_or(())?;
            if rest[stop] < 0x20 {
                return Err(());
            }
            self.i += stop + 1;
            if rest[stop] == b'"' {
                return Ok(escaped);
            }
            escaped = true;
            self.escapes = true;
            match *self.b.get(self.i).ok_or(())? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                b'u' => {
                    let hex = self.b.get(self.i + 1..self.i + 5).ok_or(())?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(());
                    }
                    self.i += 5;
                }
                _ => return Err(()),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<(), ()> {
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => {
                self.i += 1;
                if matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
                    return Err(());
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(()),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(());
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(());
            }
        }
        Ok(())
    }

    fn literal(&mut self, lit: &[u8]) -> Result<(), ()> {
        if self.b.get(self.i..self.i + lit.len()) == Some(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(())
        }
    }

    /// One value of any depth (after whitespace); returns its raw text.
    /// Nesting is followed with a stack of open brackets (heap only when
    /// nested deeper than 64), like serde_json's, with no depth limit.
    #[inline(always)]
    fn value(&mut self) -> Result<&'a str, ()> {
        self.ws();
        let start = self.i;
        // Scalars (most members) without the bracket machinery.
        match self.b.get(self.i) {
            Some(b'"') => {
                self.string()?;
                Ok(&self.s[start..self.i])
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Ok(&self.s[start..self.i])
            }
            _ => self.nested(start),
        }
    }

    /// [`value`](Self::value) for anything but a string or a number,
    /// starting at `start`.
    #[inline(never)]
    fn nested(&mut self, start: usize) -> Result<&'a str, ()> {
        let mut stack: u64 = 0; // bit set: '{' (else '[') at that depth
        let mut depth: usize = 0;
        let mut deep: Vec<bool> = Vec::new();
        loop {
            // A value.
            let c = self.ws().ok_or(())?;
            let opened = match c {
                b'n' => self.literal(b"null").map(|_| None)?,
                b't' => self.literal(b"true").map(|_| None)?,
                b'f' => self.literal(b"false").map(|_| None)?,
                b'-' | b'0'..=b'9' => self.number().map(|_| None)?,
                b'"' => self.string().map(|_| None)?,
                b'[' | b'{' => {
                    self.i += 1;
                    Some(c == b'{')
                }
                _ => return Err(()),
            };
            // What follows it: close brackets, a comma, or (after an
            // opening bracket) a member name or the first element.
            let mut after_open = opened.is_some();
            if let Some(obj) = opened {
                if depth < 64 {
                    if obj {
                        stack |= 1 << depth;
                    } else {
                        stack &= !(1 << depth);
                    }
                } else {
                    deep.push(obj);
                }
                depth += 1;
            }
            loop {
                if depth == 0 {
                    return Ok(&self.s[start..self.i]);
                }
                let obj = if depth <= 64 { stack & (1 << (depth - 1)) != 0 } else { deep.last().copied().unwrap_or(false) };
                let c = self.ws().ok_or(())?;
                if (c == b'}' && obj) || (c == b']' && !obj) {
                    self.i += 1;
                    if depth > 64 {
                        deep.pop();
                    }
                    depth -= 1;
                    after_open = false;
                    continue;
                }
                if after_open {
                    break;
                }
                if c != b',' {
                    return Err(());
                }
                self.i += 1;
                break;
            }
            let obj = if depth <= 64 { stack & (1 << (depth - 1)) != 0 } else { deep.last().copied().unwrap_or(false) };
            if obj {
                if self.ws() != Some(b'"') {
                    return Err(());
                }
                self.string()?;
                if self.ws() != Some(b':') {
                    return Err(());
                }
                self.i += 1;
            }
        }
    }
}

/// Decode a JSON string with escapes (its raw text, quotes included).
fn unescape(raw: &str) -> Result<String, ()> {
    serde_json::from_str::<String>(raw).map_err(|_| ())
}

impl<'a> StrictObject<'a> {
    /// Parse `json`, which must be one object with unique member names.
    /// (The one failure is "not a strict JSON object": callers answer it
    /// with their own reason.)
    #[allow(clippy::result_unit_err)]
    pub fn parse(json: &'a [u8]) -> Result<StrictObject<'a>, ()> {
        let mut o = StrictObject::empty();
        o.fill(json)?;
        Ok(o)
    }

    /// An object with no members, to [`fill`](Self::fill) in place (the
    /// inline members make it a large value: the hot path does not move it).
    pub fn empty() -> StrictObject<'a> {
        StrictObject {
            inline: [Member::default(); INLINE_MEMBERS],
            keys: [0; INLINE_MEMBERS],
            n: 0,
            more: Vec::new(),
            more_keys: Vec::new(),
            escaped_names: false,
        }
    }

    /// [`parse`](Self::parse) into `self`, which must be empty.
    #[allow(clippy::result_unit_err)]
    pub fn fill(&mut self, json: &'a [u8]) -> Result<(), ()> {
        let o = self;
        let s = std::str::from_utf8(json).map_err(|_| ())?;
        let mut sc = Scan::new(s);
        if sc.ws() != Some(b'{') {
            return Err(());
        }
        sc.i += 1;
        let mut first = true;
        loop {
            match sc.ws() {
                Some(b'}') if first => {
                    sc.i += 1;
                    break;
                }
                Some(b'"') => {}
                _ => return Err(()),
            }
            let ns = sc.i + 1;
            let name_escaped = sc.string()?;
            let name = &s[ns..sc.i - 1];
            if sc.ws() != Some(b':') {
                return Err(());
            }
            sc.i += 1;
            sc.escapes = false;
            let raw = sc.value()?;
            let m = Member { name, raw, name_escaped, escaped: sc.escapes };
            // Unique names, compared decoded.
            let (key, dup) = if name_escaped {
                (LONG, o.member(&unescape(&s[ns - 1..ns + name.len() + 1])?).is_some())
            } else {
                let key = short_key(name.as_bytes());
                (key, o.member_keyed(name, key).is_some())
            };
            if dup {
                return Err(());
            }
            o.escaped_names |= name_escaped;
            if o.n < INLINE_MEMBERS {
                o.inline[o.n] = m;
                o.keys[o.n] = key;
                o.n += 1;
            } else {
                o.more.push(m);
                o.more_keys.push(key);
            }
            first = false;
            match sc.ws() {
                Some(b',') => sc.i += 1,
                Some(b'}') => {
                    sc.i += 1;
                    break;
                }
                _ => return Err(()),
            }
        }
        if sc.ws().is_some() {
            return Err(());
        }
        Ok(())
    }

    fn all(&self) -> impl Iterator<Item = &Member<'a>> {
        self.inline[..self.n].iter().chain(self.more.iter())
    }

    /// Is `m`'s name `name` (decoded)?
    #[inline]
    fn name_is(m: &Member<'_>, name: &str) -> bool {
        if !m.name_escaped {
            // Names are short: an inline byte comparison, not a memcmp call.
            return m.name.len() == name.len() && m.name.bytes().zip(name.bytes()).all(|(a, b)| a == b);
        }
        Self::escaped_name_is(m, name)
    }

    #[cold]
    fn escaped_name_is(m: &Member<'_>, name: &str) -> bool {
        unescape(&format!("\"{}\"", m.name)).is_ok_and(|d| d == name)
    }

    /// Is any of `names` a member?
    fn has_any(&self, names: &[&str]) -> bool {
        self.all().any(|m| names.iter().any(|n| Self::name_is(m, n)))
    }

    /// Members as (decoded name, raw value).
    #[cfg(test)]
    fn members(&self) -> Vec<(String, &'a str)> {
        self.all().map(|m| (unescape(&format!("\"{}\"", m.name)).unwrap_or_default(), m.raw)).collect()
    }

    /// Member `name` decoded by serde_json (for cold paths).
    pub fn json(&self, name: &str) -> Option<Value> {
        self.raw(name).and_then(|r| serde_json::from_str(r).ok())
    }

    /// The raw JSON text of member `name`.
    pub fn raw(&self, name: &str) -> Option<&'a str> {
        self.member(name).map(|m| m.raw)
    }

    fn member(&self, name: &str) -> Option<&Member<'a>> {
        self.member_keyed(name, short_key(name.as_bytes()))
    }

    /// [`member`](Self::member); `key` is `short_key(name)`.
    #[inline(always)]
    fn member_keyed(&self, name: &str, key: u64) -> Option<&Member<'a>> {
        if key != LONG && !self.escaped_names {
            // A short name and no escaped one: one comparison per member.
            return match self.keys[..self.n].iter().position(|&k| k == key) {
                Some(i) => Some(&self.inline[i]),
                None if self.more_keys.is_empty() => None,
                None => self.more_keys.iter().position(|&k| k == key).map(|i| &self.more[i]),
            };
        }
        self.member_by_name(name)
    }

    /// [`member_keyed`](Self::member_keyed) for a long name, or when some
    /// name has escapes: names compared as text.
    #[inline(never)]
    fn member_by_name(&self, name: &str) -> Option<&Member<'a>> {
        let find = |list: &'_ [Member<'a>]| list.iter().position(|m| Self::name_is(m, name));
        match find(&self.inline[..self.n]) {
            Some(i) => Some(&self.inline[i]),
            None => find(&self.more).map(|i| &self.more[i]),
        }
    }

    /// The value of `name`, decoded as far as the checks need. Arrays stay
    /// raw ([`Val::Arr`]) only when `array` is set and they have no
    /// backslash; otherwise serde_json decodes them (and a failure, such as
    /// nesting deeper than its limit, gives `Null`, as it always did).
    fn get(&self, name: &str) -> Option<Val<'a>> {
        self.get_as(name, false)
    }

    fn get_as(&self, name: &str, array: bool) -> Option<Val<'a>> {
        self.get_keyed(name, short_key(name.as_bytes()), array)
    }

    /// [`get_as`](Self::get_as); `key` is `short_key(name)`.
    #[inline(always)]
    fn get_keyed(&self, name: &str, key: u64, array: bool) -> Option<Val<'a>> {
        let m = self.member_keyed(name, key)?;
        let raw = m.raw;
        let escaped = m.escaped;
        match raw.as_bytes().first() {
            Some(b'"') if !escaped => return Some(Val::Str(Cow::Borrowed(&raw[1..raw.len() - 1]))),
            // An integer: `parse` refuses fractions and exponents, which
            // serde_json decodes as floats (and so `-0`).
            Some(b'-' | b'0'..=b'9') if raw != "-0" => {
                if let Ok(i) = raw.parse::<i64>() {
                    return Some(Val::Int(i));
                }
            }
            Some(b'[') if array && !escaped => return Some(Val::Arr(raw)),
            _ => {}
        }
        Some(Self::decoded(raw))
    }

    /// A value that is not a plain string, integer or array, decoded by
    /// serde_json.
    #[inline(never)]
    fn decoded(raw: &str) -> Val<'a> {
        match serde_json::from_str::<Value>(raw).unwrap_or(Value::Null) {
            Value::String(s) => Val::Str(Cow::Owned(s)),
            v => Val::Other(v),
        }
    }

    /// The value of `name` when it is a JSON string without escapes
    /// (borrowed); `Err` when present but not a plain string.
    fn plain_str(&self, name: &str) -> Option<Result<&'a str, ()>> {
        let r = self.raw(name)?;
        let b = r.as_bytes();
        if b.len() >= 2 && b[0] == b'"' && b[b.len() - 1] == b'"' && !r[1..r.len() - 1].contains('\\') {
            Some(Ok(&r[1..r.len() - 1]))
        } else {
            Some(Err(()))
        }
    }
}

/// The strings of an array value: `Err(())` when an element is not a
/// string. Calls `f` for each, in order, stopping at the first `Err`
/// element.
fn for_each_str<'a>(v: &Val<'a>, mut f: impl FnMut(Cow<'a, str>)) -> Result<usize, ()> {
    match v {
        Val::Arr(raw) => {
            // Validated text without backslashes: elements are plain strings
            // or something else.
            let mut sc = Scan::new(raw);
            sc.i = 1;
            let mut n = 0;
            let mut bad = false;
            loop {
                match sc.ws() {
                    Some(b']') => break,
                    Some(b',') => sc.i += 1,
                    Some(_) => {}
                    None => return Err(()),
                }
                let el = sc.value()?;
                n += 1;
                if !bad && el.len() >= 2 && el.as_bytes()[0] == b'"' {
                    f(Cow::Borrowed(&el[1..el.len() - 1]));
                } else {
                    bad = true;
                }
            }
            if bad { Err(()) } else { Ok(n) }
        }
        Val::Other(Value::Array(list)) => {
            for x in list {
                match x {
                    Value::String(s) => f(Cow::Owned(s.clone())),
                    _ => return Err(()),
                }
            }
            Ok(list.len())
        }
        _ => Err(()),
    }
}

/// What a valid token says, after every check.
#[derive(Clone, Debug)]
pub struct Verified {
    /// `iss`.
    pub iss: Arc<str>,
    /// `exp`.
    pub exp: i64,
    /// The earliest time at which the lifetime checks pass (`nbf` and `iat`
    /// with leeway, and without `iat` the maximum lifetime counted back from
    /// `exp`): a cached verification is used only from then on.
    pub valid_from: i64,
    /// Algorithm of the key that verified it (`None`: a reference token,
    /// vouched for by introspection).
    pub alg: Option<Alg>,
    /// Position of the issuer in the configuration that verified it (a
    /// hint: check `iss` before relying on it).
    pub issuer_index: usize,
    /// The IMPI, `scope`, each IMPU as written and in its canonical form,
    /// `sub` and `jti`, each followed by a NUL byte, in one allocation (none
    /// of them can hold a NUL: the IMPI passed the NAI check, scope, `sub`
    /// and `jti` are printable, IMPUs parsed as URIs). The C ABI hands the
    /// pieces out as they are.
    text: String,
    /// Where the IMPUs are in `text`: the first one here (no allocation for
    /// the usual single IMPU), the others in `more_impus`.
    first_impu: Option<ImpuAt>,
    more_impus: Vec<ImpuAt>,
    /// Where the IMPI is in `text` (without its NUL).
    impi_at: (usize, usize),
    /// Where `scope` is in `text` (without its NUL).
    scope_at: (usize, usize),
    sub_at: Option<(usize, usize)>,
    jti_at: Option<(usize, usize)>,
}

impl Verified {
    /// The IMPI.
    pub fn impi(&self) -> &str {
        &self.text[self.impi_at.0..self.impi_at.1]
    }

    /// `scope`.
    pub fn scope(&self) -> &str {
        &self.text[self.scope_at.0..self.scope_at.1]
    }

    /// `sub`, if any.
    pub fn sub(&self) -> Option<&str> {
        self.sub_at.map(|(a, b)| &self.text[a..b])
    }

    /// `jti`, if any.
    pub fn jti(&self) -> Option<&str> {
        self.jti_at.map(|(a, b)| &self.text[a..b])
    }

    fn impu_at(&self, i: usize) -> Option<&ImpuAt> {
        match i {
            0 => self.first_impu.as_ref(),
            _ => self.more_impus.get(i - 1),
        }
    }

    /// The IMPUs as the token gives them, in its order.
    pub fn impus(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.impu_count()).filter_map(|i| self.impu(i))
    }

    /// The IMPUs parsed, in the token's order (canonical: scheme and host
    /// lower-cased, SIP user parts normalized (RFC 3261 19.1.4), without
    /// parameters; pool patterns are matched against this form).
    pub fn impu_uris(&self) -> impl Iterator<Item = UriView<'_>> + '_ {
        (0..self.impu_count()).filter_map(|i| self.impu_uri(i))
    }

    /// IMPU number `i` (from 0), parsed.
    pub fn impu_uri(&self, i: usize) -> Option<UriView<'_>> {
        let at = self.impu_at(i)?;
        let text = self.text.get(at.canonical.0..at.canonical.1)?;
        Some(UriView::new(at.scheme, at.port, text, at.user, at.host))
    }

    /// How many IMPUs.
    pub fn impu_count(&self) -> usize {
        usize::from(self.first_impu.is_some()) + self.more_impus.len()
    }

    /// Is `text` exactly one of the IMPUs as the token gives them?
    pub fn has_impu_text(&self, text: &str) -> bool {
        self.impus().any(|i| i == text)
    }

    /// IMPU number `i` (from 0) as the token gives it.
    pub fn impu(&self, i: usize) -> Option<&str> {
        let at = self.impu_at(i)?;
        self.text.get(at.written.0..at.written.1)
    }

    /// The IMPI, `scope`, `sub` (empty when absent) and IMPU number `i`,
    /// each with its NUL byte (for the C ABI).
    pub(crate) fn impi_z(&self) -> &[u8] {
        &self.text.as_bytes()[self.impi_at.0..=self.impi_at.1]
    }

    pub(crate) fn scope_z(&self) -> &[u8] {
        &self.text.as_bytes()[self.scope_at.0..=self.scope_at.1]
    }

    pub(crate) fn sub_z(&self) -> &[u8] {
        self.sub_at.map_or(b"\0", |(a, b)| &self.text.as_bytes()[a..=b])
    }

    pub(crate) fn impu_z(&self, i: usize) -> Option<&[u8]> {
        let at = self.impu_at(i)?;
        // The IMPU and the NUL after it.
        self.text.as_bytes().get(at.written.0..=at.written.1)
    }
}

/// Where one IMPU of a [`Verified`] is in its text: as written, and
/// canonical with the positions of its user part and host (relative to the
/// canonical form, as [`UriView`] takes them).
#[derive(Clone, Copy, Debug)]
struct ImpuAt {
    written: (usize, usize),
    canonical: (usize, usize),
    user: (usize, usize),
    host: (usize, usize),
    scheme: Scheme,
    port: Option<u16>,
}

/// A failure, with the issuer when it was known (for the counters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Why.
    pub reason: Reason,
    /// The configured issuer the token named, if it named one.
    pub iss: Option<Arc<str>>,
}

fn fail(reason: Reason) -> Failure {
    Failure { reason, iss: None }
}

/// Base64url-decode `s` (no padding, canonical: unused bits zero) into
/// `stack` when it fits, else into `heap`. SIMD (base64-simd); the
/// `tests` module holds it to what the `base64` crate's `URL_SAFE_NO_PAD`
/// accepts.
fn b64<'b>(s: &str, stack: &'b mut [MaybeUninit<u8>], heap: &'b mut Vec<u8>) -> Result<&'b [u8], Failure> {
    b64_decode(s.as_bytes(), stack, heap).ok_or_else(|| fail(Reason::MalformedToken))
}

fn b64_decode<'b>(s: &[u8], stack: &'b mut [MaybeUninit<u8>], heap: &'b mut Vec<u8>) -> Option<&'b [u8]> {
    use base64_simd::URL_SAFE_NO_PAD as B64;
    // No padding, and (like the `base64` crate) no non-zero unused bits in
    // the last character: one encoding per byte string (tested below).
    let n = B64.decoded_length(s).ok()?;
    if n <= stack.len() {
        // The stack buffer is not cleared first: base64-simd writes it
        // through `Out` and hands back only what it wrote.
        B64.decode(s, base64_simd::Out::from_uninit_slice(&mut stack[..n])).ok().map(|d| &*d)
    } else {
        *heap = B64.decode_to_vec(s).ok()?;
        Some(heap)
    }
}

fn numeric_date(v: Option<Val<'_>>, required: bool) -> Result<Option<i64>, Reason> {
    match v {
        None | Some(Val::Other(Value::Null)) if !required => Ok(None),
        None | Some(Val::Other(Value::Null)) => Err(Reason::MissingClaim),
        Some(Val::Int(i)) => Ok(Some(i)),
        Some(Val::Other(Value::Number(n))) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64() {
                if f.is_finite() && f.abs() < 1e15 {
                    Ok(Some(f.floor() as i64))
                } else {
                    Err(Reason::InvalidClaim)
                }
            } else {
                Err(Reason::InvalidClaim)
            }
        }
        Some(_) => Err(Reason::InvalidClaim),
    }
}

fn printable(s: &str) -> bool {
    // Printable ASCII (the usual case) without decoding characters; else
    // no control character (C0, DEL, C1) anywhere.
    s.len() <= 1024 && (s.bytes().fold(true, |ok, c| ok & (0x20..0x7f).contains(&c)) || !s.chars().any(|c| c.is_control()))
}

/// An optional printable string claim (`sub`, `jti`): absent or `null` is
/// `None`.
fn optional_printable(v: Option<Val<'_>>) -> Result<Option<Cow<'_, str>>, Reason> {
    match v {
        None | Some(Val::Other(Value::Null)) => Ok(None),
        Some(Val::Str(s)) if printable(&s) => Ok(Some(s)),
        Some(_) => Err(Reason::InvalidClaim),
    }
}

/// Split a compact JWS into its three parts (`None` unless exactly three).
fn split3(token: &str) -> Option<(&str, &str, &str)> {
    let b = token.as_bytes();
    let d1 = memchr::memchr(b'.', b)?;
    let d2 = d1 + 1 + memchr::memchr(b'.', &b[d1 + 1..])?;
    if memchr::memchr(b'.', &b[d2 + 1..]).is_some() {
        return None;
    }
    Some((&token[..d1], &token[d1 + 1..d2], &token[d2 + 1..]))
}

/// The JOSE header's `typ`, classified.
#[derive(Clone, Copy)]
enum Typ {
    Absent,
    /// `at+jwt` or `application/at+jwt` (RFC 9068), any case.
    At,
    /// `JWT`, any case.
    Jwt,
    /// Anything else, or not a string.
    Other,
}

/// What the checks take from a JOSE header: a function of its text alone
/// (the configuration is applied by the caller), so it can be remembered.
#[derive(Clone)]
struct JoseHeader {
    alg: Alg,
    typ: Typ,
    /// `Err`: a `kid` that is not a string of at most 256 bytes.
    kid: Result<Option<Rc<str>>, ()>,
}

/// Headers remembered per thread (a proxy process has one): tokens of one
/// issuer and key share their header, byte for byte.
const HEADER_CACHE: usize = 4;
/// Longest header part remembered, in characters.
const HEADER_CACHE_MAX: usize = 512;

/// The per-thread header cache: the next slot to replace, and up to
/// [`HEADER_CACHE`] headers by their exact base64url text.
type HeaderCache = (usize, [Option<(Box<str>, JoseHeader)>; HEADER_CACHE]);

thread_local! {
    static HEADERS: RefCell<HeaderCache> = const { RefCell::new((0, [const { None }; HEADER_CACHE])) };
}

/// The JOSE header of base64url text `h64`: decoded and checked, or taken
/// from the per-thread cache of headers that passed (failures are not
/// kept). Errors in the order of the checks: malformed, algorithm,
/// unsupported member.
fn jose_header(h64: &str) -> Result<JoseHeader, Reason> {
    let hit = HEADERS
        .try_with(|c| {
            let c = c.try_borrow().ok()?;
            c.1.iter().flatten().find(|(k, _)| **k == *h64).map(|(_, h)| h.clone())
        })
        .ok()
        .flatten();
    if let Some(h) = hit {
        return Ok(h);
    }
    let h = parse_jose_header(h64)?;
    if h64.len() <= HEADER_CACHE_MAX {
        let _ = HEADERS.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                let at = c.0 % HEADER_CACHE;
                c.1[at] = Some((h64.into(), h.clone()));
                c.0 = at + 1;
            }
        });
    }
    Ok(h)
}

fn parse_jose_header(h64: &str) -> Result<JoseHeader, Reason> {
    let mut header_buf = [MaybeUninit::uninit(); 256];
    let mut header_heap = Vec::new();
    let header_json = b64(h64, &mut header_buf, &mut header_heap).map_err(|f| f.reason)?;
    let mut header = StrictObject::empty();
    if header.fill(header_json).is_err() {
        return Err(Reason::MalformedToken);
    }
    let alg_name = match header.plain_str("alg") {
        Some(Ok(s)) => s,
        Some(Err(())) | None => return Err(Reason::UnsupportedAlgorithm),
    };
    let alg = Alg::from_name(alg_name).ok_or(Reason::UnsupportedAlgorithm)?;
    // One pass over the (few) header members rather than a lookup per name.
    if header.has_any(&["crit", "jku", "x5u", "jwk", "x5c", "b64", "zip", "enc"]) {
        return Err(Reason::UnsupportedHeader);
    }
    let typ = match header.get("typ") {
        None => Typ::Absent,
        Some(Val::Str(t)) if t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt") => Typ::At,
        Some(Val::Str(t)) if t.eq_ignore_ascii_case("jwt") => Typ::Jwt,
        Some(_) => Typ::Other,
    };
    let kid = match header.get("kid") {
        None => Ok(None),
        Some(Val::Str(k)) if k.len() <= 256 => Ok(Some(Rc::from(&*k))),
        Some(_) => Err(()),
    };
    Ok(JoseHeader { alg, typ, kid })
}

/// The key set fetched from an issuer's `jwks_url`, as this process has it.
pub enum RemoteKeys {
    /// The issuer has no `jwks_url`.
    None,
    /// The current key set.
    Set(Arc<KeySet>),
    /// Configured but not available (never fetched, or too stale).
    Unavailable,
}

/// Verify `token` (the token alone, out of the header) at time `now`.
/// `barred` tells whether an issuer is barred right now. Only the issuers'
/// configured keys are used (see [`verify_with`]).
pub fn verify(cfg: &Config, token: &str, now: i64, barred: &dyn Fn(&Issuer) -> bool) -> Result<Verified, Failure> {
    verify_with(cfg, token, now, barred, &|_| RemoteKeys::None)
}

/// [`verify`], with `remote` giving an issuer's fetched key set; it is asked
/// only for an issuer with a `jwks_url`, and only when the configured keys
/// do not already decide.
pub fn verify_with(
    cfg: &Config,
    token: &str,
    now: i64,
    barred: &dyn Fn(&Issuer) -> bool,
    remote: &dyn Fn(&Issuer) -> RemoteKeys,
) -> Result<Verified, Failure> {
    if token.len() > cfg.max_token_size {
        return Err(fail(Reason::TokenTooLarge));
    }
    let Some((h64, p64, s64)) = split3(token) else {
        return Err(fail(Reason::MalformedToken));
    };
    if h64.is_empty() || p64.is_empty() || s64.is_empty() {
        return Err(fail(Reason::MalformedToken));
    }
    // JOSE header: alg from the key's configuration, never trusted alone.
    let header = jose_header(h64).map_err(fail)?;
    let typ_ok = match header.typ {
        Typ::Absent | Typ::Jwt => !cfg.require_at_jwt,
        Typ::At => true,
        Typ::Other => false,
    };
    if !typ_ok {
        return Err(fail(Reason::WrongTokenType));
    }
    let kid = match &header.kid {
        Ok(k) => k.as_deref(),
        Err(()) => return Err(fail(Reason::UnknownKey)),
    };
    let alg = header.alg;

    // Claims are read before the signature is checked only to learn `iss`,
    // which selects the only keys tried.
    let mut claims_buf = [MaybeUninit::uninit(); 1024];
    let mut claims_heap = Vec::new();
    let claims_json = b64(p64, &mut claims_buf, &mut claims_heap)?;
    let mut claims = StrictObject::empty();
    if claims.fill(claims_json).is_err() {
        return Err(fail(Reason::MalformedToken));
    }
    let (names, keys) = (&cfg.claims, &cfg.claim_keys);
    let iss_value = match claims.get_keyed(&names.iss, keys.iss, false) {
        Some(Val::Str(s)) => s,
        Some(_) => return Err(fail(Reason::InvalidClaim)),
        None => return Err(fail(Reason::UnknownIssuer)),
    };
    let issuer_index = *cfg.issuer_index.get(&*iss_value).ok_or_else(|| fail(Reason::UnknownIssuer))?;
    let issuer = cfg.issuers.get(issuer_index).ok_or_else(|| fail(Reason::UnknownIssuer))?;
    let with_iss = |reason: Reason| Failure { reason, iss: Some(issuer.iss.clone()) };

    let mut sig_buf = [MaybeUninit::uninit(); 512];
    let mut sig_heap = Vec::new();
    let signature = b64(s64, &mut sig_buf, &mut sig_heap).map_err(|f| with_iss(f.reason))?;
    let signing_input = &token.as_bytes()[..h64.len() + 1 + p64.len()];
    let alg = select_and_verify(issuer, remote, kid, alg, signing_input, signature).map_err(with_iss)?;
    check_claims(cfg, issuer_index, issuer, &claims, now, barred, Some(alg))
}

/// The claim rules of PROTOCOL.md (lifetime, audience, barring, scope,
/// identities and pools) on a claims object, from a verified JWT or an
/// introspection response. The caller has established that the claims come
/// from `issuer`, which is `cfg.issuers[issuer_index]`.
#[allow(clippy::too_many_arguments)]
pub fn check_claims(
    cfg: &Config,
    issuer_index: usize,
    issuer: &Issuer,
    claims: &StrictObject<'_>,
    now: i64,
    barred: &dyn Fn(&Issuer) -> bool,
    alg: Option<Alg>,
) -> Result<Verified, Failure> {
    let (names, keys) = (&cfg.claims, &cfg.claim_keys);
    let with_iss = |reason: Reason| Failure { reason, iss: Some(issuer.iss.clone()) };

    // Lifetime.
    let leeway = cfg.leeway as i64;
    let exp = numeric_date(claims.get_keyed(&names.exp, keys.exp, false), true).map_err(with_iss)?.unwrap_or(0);
    let nbf = numeric_date(claims.get_keyed(&names.nbf, keys.nbf, false), false).map_err(with_iss)?;
    let iat = numeric_date(claims.get_keyed(&names.iat, keys.iat, false), false).map_err(with_iss)?;
    if now > exp.saturating_add(leeway) {
        return Err(with_iss(Reason::Expired));
    }
    if let Some(nbf) = nbf {
        if nbf > now.saturating_add(leeway) {
            return Err(with_iss(Reason::NotYetValid));
        }
    }
    if let Some(iat) = iat {
        if iat > now.saturating_add(leeway) {
            return Err(with_iss(Reason::IssuedInFuture));
        }
    }
    let lifetime = exp.saturating_sub(iat.unwrap_or(now));
    if lifetime > issuer.max_token_lifetime as i64 {
        return Err(with_iss(Reason::LifetimeTooLong));
    }
    let valid_from = match iat {
        Some(t) => t.saturating_sub(leeway),
        None => exp.saturating_sub(issuer.max_token_lifetime as i64),
    };
    let valid_from = match nbf {
        Some(t) => valid_from.max(t.saturating_sub(leeway)),
        None => valid_from,
    };

    // Audience.
    let aud_ok = match claims.get_keyed(&names.aud, keys.aud, true) {
        Some(Val::Str(a)) => *a == cfg.audience,
        Some(v @ (Val::Arr(_) | Val::Other(Value::Array(_)))) => {
            let mut found = false;
            for_each_str(&v, |s| found |= *s == cfg.audience).map_err(|_| with_iss(Reason::InvalidClaim))?;
            found
        }
        Some(_) => return Err(with_iss(Reason::InvalidClaim)),
        None => false,
    };
    if !aud_ok {
        return Err(with_iss(Reason::WrongAudience));
    }

    if barred(issuer) {
        return Err(with_iss(Reason::IssuerBarred));
    }

    // Scope.
    let scope = match claims.get_keyed(&names.scope, keys.scope, false) {
        Some(Val::Str(s)) => s,
        Some(_) => return Err(with_iss(Reason::InvalidClaim)),
        None => return Err(with_iss(Reason::InsufficientScope)),
    };
    if !printable(&scope) {
        return Err(with_iss(Reason::InvalidClaim));
    }
    if !scope.as_bytes().split(|&c| c == b' ').any(|s| s == cfg.required_scope.as_bytes()) {
        return Err(with_iss(Reason::InsufficientScope));
    }

    // Identities: syntax first, then the issuer's pools.
    let impi = match claims.get_keyed(&names.impi, keys.impi, false) {
        Some(Val::Str(s)) => s,
        Some(_) => return Err(with_iss(Reason::InvalidImpi)),
        None => return Err(with_iss(Reason::MissingClaim)),
    };
    identity::check_impi(&impi).map_err(|_| with_iss(Reason::InvalidImpi))?;
    // The strings kept go into one buffer (see `Verified::text`), sized
    // for them with their NULs (a raw array is at least as long as its
    // strings with one byte each after them).
    let impu_v = claims.get_keyed(&names.impu, keys.impu, true);
    let sub_v = claims.get_keyed(&names.sub, keys.sub, false);
    let jti_v = claims.get_keyed(&names.jti, keys.jti, false);
    let room = |v: &Option<Val<'_>>| match v {
        Some(Val::Str(s)) => s.len() + 1,
        Some(Val::Arr(raw)) => raw.len(),
        _ => 0,
    };
    // (An IMPU's canonical form is never longer than the IMPU as written.)
    let mut text = String::with_capacity(impi.len() + 1 + scope.len() + 1 + 2 * room(&impu_v) + room(&sub_v) + room(&jti_v));
    text.push_str(&impi);
    let impi_at = (0, text.len());
    text.push('\0');
    let scope_start = text.len();
    text.push_str(&scope);
    let scope_at = (scope_start, text.len());
    text.push('\0');
    // Each IMPU parsed as written (before it goes into the buffer, where a
    // NUL would separate it), at most MAX_IMPUS of them. A host equal to
    // the IMPI's realm, which check_impi accepted, is not checked again.
    let realm = impi.split_once('@').map(|(_, r)| r);
    let mut first_impu: Option<ImpuAt> = None;
    let mut more_impus: Vec<ImpuAt> = Vec::new();
    let mut count = 0;
    let mut bad = false;
    let mut add = |s: &str| {
        if count < MAX_IMPUS {
            match identity::parse_impu_ref_known(s, realm) {
                Ok(u) => {
                    let w0 = text.len();
                    text.push_str(s);
                    let written = (w0, text.len());
                    text.push('\0');
                    let c0 = text.len();
                    let (user, host) = u.write_canonical(&mut text);
                    let canonical = (c0, text.len());
                    text.push('\0');
                    let at = ImpuAt { written, canonical, user, host, scheme: u.scheme, port: u.canonical_port() };
                    if count == 0 {
                        first_impu = Some(at);
                    } else {
                        more_impus.push(at);
                    }
                    count += 1;
                }
                Err(_) => bad = true,
            }
        }
    };
    match impu_v {
        Some(Val::Str(s)) => add(&s),
        Some(v @ (Val::Arr(_) | Val::Other(Value::Array(_)))) => {
            let n = for_each_str(&v, |s| add(&s)).map_err(|_| with_iss(Reason::InvalidImpu))?;
            if n == 0 || n > MAX_IMPUS {
                return Err(with_iss(Reason::InvalidImpu));
            }
        }
        Some(_) => return Err(with_iss(Reason::InvalidImpu)),
        None => return Err(with_iss(Reason::MissingClaim)),
    }
    if bad {
        return Err(with_iss(Reason::InvalidImpu));
    }
    if !identity::in_pool(&issuer.impi_pool, &impi) {
        return Err(with_iss(Reason::ImpiOutsidePool));
    }
    for at in first_impu.iter().chain(more_impus.iter()) {
        if !identity::in_pool(&issuer.impu_pool, &text[at.canonical.0..at.canonical.1]) {
            return Err(with_iss(Reason::ImpuOutsidePool));
        }
    }

    let mut optional = |v: Option<Val<'_>>| -> Result<Option<(usize, usize)>, Failure> {
        match optional_printable(v).map_err(with_iss)? {
            None => Ok(None),
            Some(s) => {
                let at = text.len();
                text.push_str(&s);
                let end = text.len();
                text.push('\0');
                Ok(Some((at, end)))
            }
        }
    };
    let sub_at = optional(sub_v)?;
    let jti_at = optional(jti_v)?;

    Ok(Verified {
        iss: issuer.iss.clone(),
        exp,
        valid_from,
        alg,
        issuer_index,
        text,
        impi_at,
        scope_at,
        first_impu,
        more_impus,
        sub_at,
        jti_at,
    })
}

/// Pick the key(s) of this issuer only: with `kid`, exactly that key (no
/// fallback), from the configured keys or else the fetched key set; without,
/// the keys configured for `alg` (configured, then fetched), at most
/// [`MAX_KEYS_WITHOUT_KID`]. The algorithm must be one configured for the
/// key. A `jwks_url` whose key set is unavailable gives `keys_unavailable`
/// when the configured keys cannot decide.
fn select_and_verify(
    issuer: &Issuer,
    remote: &dyn Fn(&Issuer) -> RemoteKeys,
    kid: Option<&str>,
    alg: Alg,
    input: &[u8],
    signature: &[u8],
) -> Result<Alg, Reason> {
    let by_kid = |keys: &[Key], idxs: &[usize]| -> Result<Alg, Reason> {
        let key = idxs.iter().map(|&i| &keys[i]).find(|k| k.alg == alg).ok_or(Reason::UnsupportedAlgorithm)?;
        if key.verify(input, signature) {
            Ok(key.alg)
        } else {
            Err(Reason::BadSignature)
        }
    };
    match kid {
        Some(kid) => {
            if let Some(idxs) = issuer.keys_by_kid.get(kid) {
                return by_kid(&issuer.keys, idxs);
            }
            if issuer.remote_jwks.is_none() {
                return Err(Reason::UnknownKey);
            }
            match remote(issuer) {
                RemoteKeys::Set(set) => by_kid(&set.keys, set.by_kid.get(kid).ok_or(Reason::UnknownKey)?),
                RemoteKeys::Unavailable => Err(Reason::KeysUnavailable),
                RemoteKeys::None => Err(Reason::UnknownKey),
            }
        }
        None => {
            let fetched = if issuer.remote_jwks.is_some() { remote(issuer) } else { RemoteKeys::None };
            let set_keys: &[Key] = match &fetched {
                RemoteKeys::Set(set) => &set.keys,
                _ => &[],
            };
            let mut candidates = issuer.keys.iter().chain(set_keys.iter()).filter(|k| k.alg == alg).peekable();
            if candidates.peek().is_none() {
                return Err(match fetched {
                    RemoteKeys::Unavailable => Reason::KeysUnavailable,
                    _ => Reason::UnsupportedAlgorithm,
                });
            }
            let candidates: Vec<&Key> = candidates.take(MAX_KEYS_WITHOUT_KID + 1).collect();
            if candidates.len() > MAX_KEYS_WITHOUT_KID {
                return Err(Reason::UnknownKey);
            }
            match candidates.into_iter().find(|k| k.verify(input, signature)) {
                Some(k) => Ok(k.alg),
                None if matches!(fetched, RemoteKeys::Unavailable) => Err(Reason::KeysUnavailable),
                None => Err(Reason::BadSignature),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The single-pass scanner against the serde_json parse it replaced:
    //! same acceptance, same members, same decoded values.
    use super::*;
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use serde_json::value::RawValue;
    use std::fmt;

    struct OldObject<'a>(Vec<(String, &'a RawValue)>);

    impl<'de> Deserialize<'de> for OldObject<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = OldObject<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OldObject<'de>, A::Error> {
                    let mut out: Vec<(String, &'de RawValue)> = Vec::new();
                    while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                        if out.iter().any(|(x, _)| *x == *k) {
                            return Err(serde::de::Error::custom("duplicate member"));
                        }
                        let v: &'de RawValue = m.next_value()?;
                        out.push((k.into_owned(), v));
                    }
                    Ok(OldObject(out))
                }
            }
            d.deserialize_map(V)
        }
    }

    fn as_value(v: Option<Val<'_>>) -> Option<Value> {
        v.map(|v| match v {
            Val::Str(s) => Value::String(s.into_owned()),
            Val::Int(i) => Value::from(i),
            Val::Arr(raw) => serde_json::from_str(raw).unwrap_or(Value::Null),
            Val::Other(v) => v,
        })
    }

    fn same(json: &[u8]) {
        let old: Result<OldObject<'_>, _> = serde_json::from_slice(json);
        let new = StrictObject::parse(json);
        let show = String::from_utf8_lossy(json);
        match (&old, &new) {
            (Ok(o), Ok(n)) => {
                let names: Vec<(String, &str)> = n.members();
                let old_names: Vec<(String, &str)> = o.0.iter().map(|(k, v)| (k.clone(), v.get())).collect();
                assert_eq!(names, old_names, "{show}");
                for (k, v) in &o.0 {
                    let old_v = serde_json::from_str::<Value>(v.get()).unwrap_or(Value::Null);
                    assert_eq!(as_value(n.get(k)), Some(old_v.clone()), "{show}");
                    // Arrays of strings as aud/impu read them.
                    let old_list: Option<Result<Vec<String>, ()>> = match &old_v {
                        Value::Array(l) => Some(l.iter().map(|x| x.as_str().map(str::to_owned).ok_or(())).collect()),
                        Value::String(_) => None,
                        // Anything else (also what serde_json fails to
                        // decode, such as nesting deeper than its limit) is
                        // refused like a bad element.
                        _ => Some(Err(())),
                    };
                    let nv = n.get_as(k, true);
                    let new_list = match &nv {
                        Some(v @ (Val::Arr(_) | Val::Other(Value::Array(_)))) => {
                            let mut l = Vec::new();
                            Some(for_each_str(v, |s| l.push(s.into_owned())).map(|c| {
                                assert_eq!(c, l.len());
                                l
                            }))
                        }
                        Some(Val::Str(_)) => None,
                        _ => Some(Err(())),
                    };
                    assert_eq!(new_list, old_list, "{show}");
                }
            }
            (Err(_), Err(_)) => {}
            _ => panic!("acceptance differs on {show:?}: old {:?}, new {:?}", old.is_ok(), new.is_ok()),
        }
    }

    #[test]
    fn first_special_exact() {
        let fill = [b'a', 0x7f, 0x80, 0xff, b' ', b'!', b'#', b'[', b']', 0x21, 0xa2, 0xdc, 0x5d];
        let special = [b'"', b'\\', 0u8, 0x1f, b'\n', 0x01];
        for len in 0..40 {
            for f in fill {
                let mut v = vec![f; len];
                assert_eq!(first_special(&v), None);
                for pos in 0..len {
                    for s in special {
                        v[pos] = s;
                        // Another special byte after it must not matter.
                        if pos + 3 < len {
                            v[pos + 3] = b'"';
                        }
                        assert_eq!(first_special(&v), Some(pos), "{v:?}");
                        v = vec![f; len];
                    }
                }
            }
        }
    }

    /// The SSE2 steps against the portable SWAR scan and a plain search:
    /// every byte value at every position of strings up to 48 bytes (three
    /// vector steps and every tail), on two backgrounds (ASCII, and bytes
    /// >= 0x80, which an unsigned compare must not take for control bytes).
    #[test]
    fn first_special_vector_agrees_with_swar() {
        for bg in [b'a', 0xc3u8] {
            for len in 1..=48usize {
                for pos in 0..len {
                    for c in 0..=255u8 {
                        let mut v = vec![bg; len];
                        v[pos] = c;
                        let want = v.iter().position(|&x| matches!(x, b'"' | b'\\' | 0..=0x1f));
                        assert_eq!(first_special(&v), want, "bg {bg} len {len} pos {pos} byte {c}");
                        assert_eq!(first_special_swar(&v, 0), want, "bg {bg} len {len} pos {pos} byte {c}");
                    }
                }
            }
        }
    }

    #[test]
    fn scanner_matches_serde() {
        let fixed: &[&str] = &[
            "{}", " {} ", "{} x", "{,}", "{\"a\":1,}", "{\"a\":1}", "{\"a\" : [ ] , \"b\":{}}", "{\"a\":1,\"a\":2}",
            "{\"a\":1,\"\\u0061\":2}", "{\"\\ud800\":1}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}",
            "{\"a\":01}", "{\"a\":-0}", "{\"a\":-}", "{\"a\":1.}", "{\"a\":1.5e}", "{\"a\":1e400}", "{\"a\":-1.5E+3}",
            "{\"a\":18446744073709551615}", "{\"a\":9223372036854775808}", "{\"a\":-9223372036854775809}",
            "{\"a\":nul}", "{\"a\":nullx}", "{\"a\":truefalse}", "{\"a\":[1,]}", "{\"a\":[,1]}", "{\"a\":[}", "{\"a\":{]}",
            "{\"a\":{\"b\":[1,{\"c\":null}]}}", "{\"a\":\"x\ty\"}", "{\"a\":\"\\t\"}", "[]", "\"x\"", "{\"a\":1 2}",
            "{\"a\":[\"x\",\"y\"]}", "{\"a\":[\"x\",1]}", "{\"a\":[\"x\\n\"]}", "{\"a\":[]}", "{\"a\":[[\"x\"]]}",
            "{\"a\":{\"b\":1,}}", "{\"a\":{\"b\" 1}}", "{\"a\":{1:1}}", "{a:1}", "{\"a\":1", "{\"a\":", "{\"a\"", "{",
            "{\"a\":\"\u{e9}\"}", "\u{feff}{}", "{\"a\":[1 2]}", "{\"a\":{\"b\":1 \"c\":2}}",
        ];
        for s in fixed {
            same(s.as_bytes());
        }
        same(b"{\"a\":\"\xff\"}");
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(300), "]".repeat(300));
        same(deep.as_bytes());
        let deep_obj = format!("{{\"a\":{}1{}}}", "{\"k\":".repeat(100), "}".repeat(100));
        same(deep_obj.as_bytes());
        let many: String = (0..60).map(|i| format!("\"m{i}\":{i}")).collect::<Vec<_>>().join(",");
        same(format!("{{{many}}}").as_bytes());
        same(format!("{{{many},\"m59\":1}}").as_bytes());
        // Random strings from JSON's alphabet.
        let pieces: &[&str] = &[
            "{", "}", "[", "]", "\"", ":", ",", " ", "\\", "u", "0", "1", "9", "-", ".", "e", "+", "a", "\"a\"", "\"b\"",
            "null", "true", "false", "\\u0061", "\\ud83d", "\\n", "\n", "\u{1}", "\u{e9}",
        ];
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..300_000 {
            let mut s = String::from("{");
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 14) as usize;
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push_str(pieces[(x % pieces.len() as u64) as usize]);
            }
            same(s.as_bytes());
            let mut t = String::from("{\"a\":");
            t.push_str(&s[1..]);
            t.push('}');
            same(t.as_bytes());
        }
    }

    /// The SIMD base64url decoder accepts exactly what the `base64`
    /// crate's `URL_SAFE_NO_PAD` accepts (no padding, no other alphabet,
    /// no non-zero unused bits), with the same bytes, for every string of
    /// up to 4 characters of a mixed alphabet, and for longer ones.
    #[test]
    fn b64_matches_base64_crate() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let alphabet = b"AQgw_-/+=. \n9zBPf";
        let check = |t: &[u8]| {
            let mut stack = [MaybeUninit::uninit(); 64];
            let mut heap = Vec::new();
            let ours = b64_decode(t, &mut stack, &mut heap).map(|d| d.to_vec());
            let theirs = URL_SAFE_NO_PAD.decode(t).ok();
            assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(t));
        };
        let a = alphabet.len();
        for len in 0..=4u32 {
            for n in 0..a.pow(len) {
                let mut k = n;
                let t: Vec<u8> = (0..len)
                    .map(|_| {
                        let c = alphabet[k % a];
                        k /= a;
                        c
                    })
                    .collect();
                check(&t);
            }
        }
        // Longer: every length to 300 (stack and heap), each with every
        // possible last character, and one bad byte at each position.
        let full = URL_SAFE_NO_PAD.encode((0..255u8).collect::<Vec<u8>>());
        for len in 0..300usize {
            let base: Vec<u8> = full.bytes().cycle().take(len).collect();
            check(&base);
            if len > 0 {
                for last in (b'0'..=b'z').chain([b'-', b'_', b'=', b'+', b'/']) {
                    let mut t = base.clone();
                    t[len - 1] = last;
                    check(&t);
                }
                for bad in [b'=', b'+', b'/', b' ', 0x80, 0] {
                    let mut t = base.clone();
                    t[len / 2] = bad;
                    check(&t);
                }
            }
        }
    }
}

//! The JSON of a token: a strict, single-pass scanner of one object
//! ([`StrictObject`]) whose members stay raw text until a check asks for
//! one, and the decoded values ([`Val`]) the checks read.
//!
//! Hand-written (one pass, no copies for plain strings and integers); its
//! tests hold it to what serde_json accepts. Nothing here knows what a
//! claim means: the token rules (src/core/token.rs) read claims through it.

use serde_json::Value;
use std::borrow::Cow;

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
pub(crate) fn short_key(b: &[u8]) -> u64 {
    if b.len() > 7 {
        return LONG;
    }
    let mut k = (b.len() as u64) << 56;
    for (i, &c) in b.iter().enumerate() {
        k |= (c as u64) << (8 * i);
    }
    k
}

/// A member value, decoded as the checks need it.
pub(crate) enum Val<'a> {
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
/// `"`, `\\` or a control character; eight bytes at a time (SWAR), then
/// byte by byte.
///
/// Kept in safe code on every architecture. An SSE2 path (sixteen bytes a
/// step, `unsafe` intrinsics) was measured against it on the tokens of the
/// benchmarks: 354 ns against 375 ns for a token's whole scan, 21 ns
/// (quartiles 17-32 ns over 5 runs of 25 samples), which is 1.1% of an
/// HS256 check (1.84 us) and 0.03-0.10% of the RS256, PS256, EdDSA and
/// ES256 ones: too little for `unsafe` code in the parser of untrusted
/// input, so it was removed. A plain `position` search costs 107 ns more.
fn first_special(s: &[u8]) -> Option<usize> {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(w) = s.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
        let v = u64::from_le_bytes(w);
        let q = v ^ (L * b'"' as u64);
        let b = v ^ (L * b'\\' as u64);
        let m =
            ((q.wrapping_sub(L) & !q) | (b.wrapping_sub(L) & !b) | (v.wrapping_sub(L * 0x20) & !v))
                & H;
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&c| matches!(c, b'"' | b'\\' | 0..=0x1f))
        .map(|p| i + p)
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
        Scan {
            s,
            b: s.as_bytes(),
            i: 0,
            escapes: false,
        }
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
                let obj = if depth <= 64 {
                    stack & (1 << (depth - 1)) != 0
                } else {
                    deep.last().copied().unwrap_or(false)
                };
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
            let obj = if depth <= 64 {
                stack & (1 << (depth - 1)) != 0
            } else {
                deep.last().copied().unwrap_or(false)
            };
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
            let m = Member {
                name,
                raw,
                name_escaped,
                escaped: sc.escapes,
            };
            // Unique names, compared decoded.
            let (key, dup) = if name_escaped {
                (
                    LONG,
                    o.member(&unescape(&s[ns - 1..ns + name.len() + 1])?)
                        .is_some(),
                )
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
            return m.name.len() == name.len()
                && m.name.bytes().zip(name.bytes()).all(|(a, b)| a == b);
        }
        Self::escaped_name_is(m, name)
    }

    #[cold]
    fn escaped_name_is(m: &Member<'_>, name: &str) -> bool {
        unescape(&format!("\"{}\"", m.name)).is_ok_and(|d| d == name)
    }

    /// Is any of `names` a member?
    pub(crate) fn has_any(&self, names: &[&str]) -> bool {
        self.all()
            .any(|m| names.iter().any(|n| Self::name_is(m, n)))
    }

    /// Members as (decoded name, raw value).
    #[cfg(test)]
    fn members(&self) -> Vec<(String, &'a str)> {
        self.all()
            .map(|m| {
                (
                    unescape(&format!("\"{}\"", m.name)).unwrap_or_default(),
                    m.raw,
                )
            })
            .collect()
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
                None => self
                    .more_keys
                    .iter()
                    .position(|&k| k == key)
                    .map(|i| &self.more[i]),
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
    pub(crate) fn get(&self, name: &str) -> Option<Val<'a>> {
        self.get_as(name, false)
    }

    fn get_as(&self, name: &str, array: bool) -> Option<Val<'a>> {
        self.get_keyed(name, short_key(name.as_bytes()), array)
    }

    /// [`get_as`](Self::get_as); `key` is `short_key(name)`.
    #[inline(always)]
    pub(crate) fn get_keyed(&self, name: &str, key: u64, array: bool) -> Option<Val<'a>> {
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
    pub(crate) fn plain_str(&self, name: &str) -> Option<Result<&'a str, ()>> {
        let r = self.raw(name)?;
        let b = r.as_bytes();
        if b.len() >= 2
            && b[0] == b'"'
            && b[b.len() - 1] == b'"'
            && !r[1..r.len() - 1].contains('\\')
        {
            Some(Ok(&r[1..r.len() - 1]))
        } else {
            Some(Err(()))
        }
    }
}

/// The strings of an array value: `Err(())` when an element is not a
/// string. Calls `f` for each, in order, stopping at the first `Err`
/// element.
pub(crate) fn for_each_str<'a>(v: &Val<'a>, mut f: impl FnMut(Cow<'a, str>)) -> Result<usize, ()> {
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
            if bad {
                Err(())
            } else {
                Ok(n)
            }
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
                fn visit_map<A: MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> Result<OldObject<'de>, A::Error> {
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
                let old_names: Vec<(String, &str)> =
                    o.0.iter().map(|(k, v)| (k.clone(), v.get())).collect();
                assert_eq!(names, old_names, "{show}");
                for (k, v) in &o.0 {
                    let old_v = serde_json::from_str::<Value>(v.get()).unwrap_or(Value::Null);
                    assert_eq!(as_value(n.get(k)), Some(old_v.clone()), "{show}");
                    // Arrays of strings as aud/impu read them.
                    let old_list: Option<Result<Vec<String>, ()>> = match &old_v {
                        Value::Array(l) => Some(
                            l.iter()
                                .map(|x| x.as_str().map(str::to_owned).ok_or(()))
                                .collect(),
                        ),
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
            _ => panic!(
                "acceptance differs on {show:?}: old {:?}, new {:?}",
                old.is_ok(),
                new.is_ok()
            ),
        }
    }

    #[test]
    fn first_special_exact() {
        let fill = [
            b'a', 0x7f, 0x80, 0xff, b' ', b'!', b'#', b'[', b']', 0x21, 0xa2, 0xdc, 0x5d,
        ];
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

    /// The SWAR steps against a plain search: every byte value at every
    /// position of strings up to 24 bytes (three eight-byte steps and every
    /// tail), on two backgrounds (ASCII, and bytes >= 0x80, which the
    /// borrow trick must not take for control bytes).
    #[test]
    fn first_special_agrees_with_a_plain_search() {
        for bg in [b'a', 0xc3u8] {
            for len in 1..=24usize {
                for pos in 0..len {
                    for c in 0..=255u8 {
                        let mut v = vec![bg; len];
                        v[pos] = c;
                        let want = v.iter().position(|&x| matches!(x, b'"' | b'\\' | 0..=0x1f));
                        assert_eq!(
                            first_special(&v),
                            want,
                            "bg {bg} len {len} pos {pos} byte {c}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn scanner_matches_serde() {
        let fixed: &[&str] = &[
            "{}",
            " {} ",
            "{} x",
            "{,}",
            "{\"a\":1,}",
            "{\"a\":1}",
            "{\"a\" : [ ] , \"b\":{}}",
            "{\"a\":1,\"a\":2}",
            "{\"a\":1,\"\\u0061\":2}",
            "{\"\\ud800\":1}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":01}",
            "{\"a\":-0}",
            "{\"a\":-}",
            "{\"a\":1.}",
            "{\"a\":1.5e}",
            "{\"a\":1e400}",
            "{\"a\":-1.5E+3}",
            "{\"a\":18446744073709551615}",
            "{\"a\":9223372036854775808}",
            "{\"a\":-9223372036854775809}",
            "{\"a\":nul}",
            "{\"a\":nullx}",
            "{\"a\":truefalse}",
            "{\"a\":[1,]}",
            "{\"a\":[,1]}",
            "{\"a\":[}",
            "{\"a\":{]}",
            "{\"a\":{\"b\":[1,{\"c\":null}]}}",
            "{\"a\":\"x\ty\"}",
            "{\"a\":\"\\t\"}",
            "[]",
            "\"x\"",
            "{\"a\":1 2}",
            "{\"a\":[\"x\",\"y\"]}",
            "{\"a\":[\"x\",1]}",
            "{\"a\":[\"x\\n\"]}",
            "{\"a\":[]}",
            "{\"a\":[[\"x\"]]}",
            "{\"a\":{\"b\":1,}}",
            "{\"a\":{\"b\" 1}}",
            "{\"a\":{1:1}}",
            "{a:1}",
            "{\"a\":1",
            "{\"a\":",
            "{\"a\"",
            "{",
            "{\"a\":\"\u{e9}\"}",
            "\u{feff}{}",
            "{\"a\":[1 2]}",
            "{\"a\":{\"b\":1 \"c\":2}}",
        ];
        for s in fixed {
            same(s.as_bytes());
        }
        same(b"{\"a\":\"\xff\"}");
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(300), "]".repeat(300));
        same(deep.as_bytes());
        let deep_obj = format!("{{\"a\":{}1{}}}", "{\"k\":".repeat(100), "}".repeat(100));
        same(deep_obj.as_bytes());
        let many: String = (0..60)
            .map(|i| format!("\"m{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(",");
        same(format!("{{{many}}}").as_bytes());
        same(format!("{{{many},\"m59\":1}}").as_bytes());
        // Random strings from JSON's alphabet.
        let pieces: &[&str] = &[
            "{", "}", "[", "]", "\"", ":", ",", " ", "\\", "u", "0", "1", "9", "-", ".", "e", "+",
            "a", "\"a\"", "\"b\"", "null", "true", "false", "\\u0061", "\\ud83d", "\\n", "\n",
            "\u{1}", "\u{e9}",
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
}

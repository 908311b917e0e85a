//! Taking the access token out of an `Authorization` header value, in the
//! three forms of doc/protocol.md ("Token forms the WIC may present"):
//! `Bearer <b64token>` (RFC 6750 2.1), `Bearer access_token="<token>"`
//! (TS 24.371 A.3.2) and, where configured, a bare JWT with no scheme.

use crate::core::reason::Reason;

/// Largest header value looked at, in bytes (a bigger one is refused
/// before any parsing).
pub const MAX_HEADER_LEN: usize = 1024 * 1024 + 64;

const fn b64token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        c += 1;
    }
    t
}

static B64TOKEN: [bool; 256] = b64token_table();

fn is_b64token_char(c: u8) -> bool {
    B64TOKEN[c as usize]
}

/// [`is_b64token_char`] as arithmetic (no table, no branches).
#[inline]
fn is_b64token_byte(c: u8) -> bool {
    let lower = c | 0x20;
    // '-' '.' '/' and the digits are the one range 0x2d..=0x39.
    (lower.wrapping_sub(b'a') < 26)
        | (c.wrapping_sub(b'-') < 13)
        | (c == b'_')
        | (c == b'~')
        | (c == b'+')
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(is_b64token_char)
}

fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Fold RFC 3261 LWS: a CRLF is only allowed when followed by SP/HTAB.
fn check_folding(v: &[u8]) -> bool {
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'\r' => {
                if v.get(i + 1) != Some(&b'\n') || !matches!(v.get(i + 2), Some(b' ') | Some(b'\t'))
                {
                    return false;
                }
                i += 3;
            }
            b'\n' => {
                if !matches!(v.get(i + 1), Some(b' ') | Some(b'\t')) {
                    return false;
                }
                i += 2;
            }
            0 => return false,
            _ => i += 1,
        }
    }
    true
}

fn is_jwt_shape(s: &str) -> bool {
    s.bytes().filter(|&c| c == b'.').count() == 2
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The common form in one pass: `Bearer <b64token>` with single spaces,
/// optionally followed by LWS. `None` when the value is anything else (the
/// general parser then decides).
fn fast_bearer(value: &[u8]) -> Option<&str> {
    let rest = value.get(7..)?;
    if !value[..6].eq_ignore_ascii_case(b"bearer") || value[6] != b' ' {
        return None;
    }
    let mut end = rest.len();
    while end > 0 && is_lws(rest[end - 1]) {
        end -= 1;
    }
    let tok = &rest[..end];
    let body_end = tok.iter().rposition(|&c| c != b'=').map_or(0, |i| i + 1);
    if body_end == 0 || !all_b64token(&tok[..body_end]) {
        return None;
    }
    // SAFETY: every byte of `tok` is ASCII: b64token characters up to
    // `body_end` (checked just above), '=' after it (`rposition`).
    Some(unsafe { std::str::from_utf8_unchecked(tok) })
}

/// Every byte of `s` is a b64token character ([`is_b64token_byte`]).
/// Tokens are hundreds of bytes: a fold without early exit over branch-free
/// range checks compiles to vector code (SSE2 on x86-64, safe code).
///
/// An AVX2 build of the same fold, chosen at run time through an `unsafe`
/// call, was dropped: measured interleaved (61 rounds) on the bench
/// tokens of 434-730 bytes, it saved 5-27 ns a token (SSE2 1.1-1.7 times
/// its time), which is 1.1% of a full HS256 check, 0.1% of RS256, 0.01%
/// of ES256: not worth an `unsafe` in the request path.
fn all_b64token(s: &[u8]) -> bool {
    s.iter().fold(true, |ok, &c| ok & is_b64token_byte(c))
}

/// Extract the token from a header value. `accept_bare` allows the bare
/// form. Errors carry the reason to answer with.
pub fn extract_token(value: &[u8], accept_bare: bool) -> Result<&str, Reason> {
    if value.len() > MAX_HEADER_LEN {
        return Err(Reason::TokenTooLarge);
    }
    if let Some(t) = fast_bearer(value) {
        return Ok(t);
    }
    // Trailing CRLF as some proxies hand it over, then surrounding LWS.
    let mut v = value;
    while let Some((&last, rest)) = v.split_last() {
        if is_lws(last) {
            v = rest
        } else {
            break;
        }
    }
    while let Some((&first, rest)) = v.split_first() {
        if is_lws(first) {
            v = rest
        } else {
            break;
        }
    }
    if v.is_empty() {
        return Err(Reason::MalformedRequest);
    }
    if !check_folding(v) {
        return Err(Reason::MalformedRequest);
    }
    let v = std::str::from_utf8(v).map_err(|_| Reason::MalformedRequest)?;
    if !v.is_ascii() {
        return Err(Reason::MalformedRequest);
    }
    let (scheme, rest) = match v.find([' ', '\t', '\r', '\n']) {
        Some(i) => (&v[..i], v[i..].trim_start_matches([' ', '\t', '\r', '\n'])),
        None => (v, ""),
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(Reason::MalformedRequest);
        }
        if is_b64token(rest) {
            return Ok(rest);
        }
        return parse_auth_params(rest);
    }
    if rest.is_empty() && is_jwt_shape(scheme) {
        // A bare JWT: accepted where configured; otherwise the client used
        // a method this proxy does not support (its own reason, answered
        // like a request without credentials: RFC 6750 3.1).
        return if accept_bare {
            Ok(scheme)
        } else {
            Err(Reason::BareTokenNotAccepted)
        };
    }
    // Another scheme (Digest, Basic, ...): the request carries no bearer
    // token.
    if scheme.bytes().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'_' | b'.' | b'!' | b'%' | b'*' | b'+' | b'`' | b'\'' | b'~'
            )
    }) {
        return Err(Reason::MissingToken);
    }
    Err(Reason::MalformedRequest)
}

/// `access_token="<token>"` among comma-separated auth-params. Exactly one
/// `access_token`; other parameters must be well-formed and are ignored.
fn parse_auth_params(s: &str) -> Result<&str, Reason> {
    let mut token: Option<&str> = None;
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        let eq = rest.find('=').ok_or(Reason::MalformedRequest)?;
        let name = rest[..eq].trim_end_matches([' ', '\t', '\r', '\n']);
        if name.is_empty()
            || !name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        {
            return Err(Reason::MalformedRequest);
        }
        rest = rest[eq + 1..].trim_start_matches([' ', '\t', '\r', '\n']);
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            // Quoted string without escapes: a token never needs them.
            let end = q.find(['"', '\\']).ok_or(Reason::MalformedRequest)?;
            if q.as_bytes()[end] == b'\\' {
                return Err(Reason::MalformedRequest);
            }
            value = &q[..end];
            rest = &q[end + 1..];
        } else {
            let end = rest
                .find([',', ' ', '\t', '\r', '\n'])
                .unwrap_or(rest.len());
            value = &rest[..end];
            rest = &rest[end..];
        }
        if name.eq_ignore_ascii_case("access_token") {
            if token.is_some() || !is_b64token(value) {
                return Err(Reason::MalformedRequest);
            }
            token = Some(value);
        }
        rest = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix(',').ok_or(Reason::MalformedRequest)?;
    }
    token.ok_or(Reason::MalformedRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64token_byte_agrees() {
        for c in 0..=255u8 {
            assert_eq!(is_b64token_byte(c), is_b64token_char(c), "{c}");
        }
    }

    /// The vector check against the table, byte by byte: every byte value
    /// at every position of strings of every length up to 100 (vector
    /// steps of 16 and 32 bytes, and the tails after them).
    #[test]
    fn all_b64token_agrees_with_the_table() {
        let good = b"AZaz09-._~+/";
        for len in 1..=100usize {
            let base: Vec<u8> = (0..len).map(|i| good[i % good.len()]).collect();
            assert!(all_b64token(&base), "{len}");
            for pos in 0..len {
                for c in 0..=255u8 {
                    let mut s = base.clone();
                    s[pos] = c;
                    let want = is_b64token_char(c);
                    assert_eq!(all_b64token(&s), want, "len {len} pos {pos} byte {c}");
                }
            }
        }
        assert!(all_b64token(b""));
        // Through the header: a bad byte anywhere leaves the fast path,
        // and the general parser refuses it.
        let tok: String = (0..300).map(|i| good[i % good.len()] as char).collect();
        assert_eq!(
            extract_token(format!("Bearer {tok}").as_bytes(), false),
            Ok(tok.as_str())
        );
        for pos in [0, 31, 32, 150, 299] {
            let mut t = tok.clone().into_bytes();
            t[pos] = b'"';
            let mut v = b"Bearer ".to_vec();
            v.extend_from_slice(&t);
            assert_eq!(
                extract_token(&v, false),
                Err(Reason::MalformedRequest),
                "{pos}"
            );
        }
    }

    #[test]
    fn forms() {
        assert_eq!(
            extract_token(b"Bearer abc.def.ghi", false),
            Ok("abc.def.ghi")
        );
        assert_eq!(
            extract_token(b"bEaReR   abc.def.ghi\r\n", false),
            Ok("abc.def.ghi")
        );
        assert_eq!(
            extract_token(b"Bearer\r\n abc.def.ghi", false),
            Ok("abc.def.ghi")
        );
        assert_eq!(
            extract_token(b"Bearer access_token=\"abc.def.ghi\"", false),
            Ok("abc.def.ghi")
        );
        assert_eq!(
            extract_token(b"Bearer realm=\"x\", access_token=\"a.b.c\"", false),
            Ok("a.b.c")
        );
        assert_eq!(extract_token(b"abc.def.ghi", true), Ok("abc.def.ghi"));
        assert_eq!(
            extract_token(b"abc.def.ghi", false),
            Err(Reason::BareTokenNotAccepted)
        );
        assert_eq!(
            extract_token(b" abc.def.ghi\r\n", false),
            Err(Reason::BareTokenNotAccepted)
        );
        // One word that is not JWT-shaped is a scheme without credentials.
        assert_eq!(extract_token(b"abcdef", false), Err(Reason::MissingToken));
        assert_eq!(extract_token(b"abcdef", true), Err(Reason::MissingToken));
        assert_eq!(
            extract_token(b"Digest username=\"x\"", false),
            Err(Reason::MissingToken)
        );
        for bad in [
            &b""[..],
            b"   ",
            b"Bearer",
            b"Bearer ",
            b"Bearer a b",
            b"Bearer a\r\nb",
            b"Bearer \"a\"",
            b"Bearer access_token=\"a\", access_token=\"b\"",
            b"Bearer access_token=\"a",
            b"Bearer a\0b",
            b"Bearer \xff",
            b"Bearer x=\"a\\\"b\"",
        ] {
            assert_eq!(
                extract_token(bad, true).map(|_| ()),
                Err(Reason::MalformedRequest),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

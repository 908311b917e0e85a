//! The Trusted Node Authentication header (TS 24.229 7.2A.2, TS 33.203
//! Annex U): built by the eP-CSCF, parsed and checked by the S-CSCF side.

use crate::core::reason::Reason;
use std::net::IpAddr;

/// The TNA `Authorization` value (without the header name), with `realm`
/// and `uri` (`None`: `sip:<realm>`). `impi`, `realm`, `uri` and `entity`
/// must already have passed the identity / configuration checks.
pub fn build(impi: &str, realm: &str, uri: Option<&str>, entity: Option<&str>) -> String {
    const PARTS: [&str; 6] = [
        "Digest username=\"",
        "\", realm=\"",
        "\", uri=\"",
        "sip:",
        "\", nonce=\"\", response=\"\", integrity-protected=auth-done",
        ", authorization-entity=\"",
    ];
    let uri_len = uri.map_or(PARTS[3].len() + realm.len(), str::len);
    let fixed = PARTS[0].len() + PARTS[1].len() + PARTS[2].len() + PARTS[4].len();
    // (+ 1: room for the NUL the C ABI appends in place.)
    let len = fixed
        + impi.len()
        + realm.len()
        + uri_len
        + entity.map_or(0, |e| PARTS[5].len() + e.len() + 1)
        + 1;
    let mut v = String::with_capacity(len);
    v.push_str(PARTS[0]);
    v.push_str(impi);
    v.push_str(PARTS[1]);
    v.push_str(realm);
    v.push_str(PARTS[2]);
    match uri {
        Some(u) => v.push_str(u),
        None => {
            v.push_str(PARTS[3]);
            v.push_str(realm);
        }
    }
    v.push_str(PARTS[4]);
    if let Some(e) = entity {
        v.push_str(PARTS[5]);
        v.push_str(e);
        v.push('"');
    }
    v
}

/// The parameters of a received TNA header that matter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TnaParams {
    /// `username` (the IMPI).
    pub username: String,
    /// `realm`.
    pub realm: Option<String>,
    /// `integrity-protected`, lower-cased, quotes removed.
    pub integrity_protected: Option<String>,
    /// `authorization-entity`, if present.
    pub authorization_entity: Option<String>,
}

/// Parse a Digest `Authorization` value. Parameter values may be tokens or
/// quoted strings (with `\` escapes); `integrity-protected` is accepted
/// quoted too. A repeated parameter is an error.
pub fn parse(value: &[u8]) -> Result<TnaParams, Reason> {
    let v = std::str::from_utf8(value).map_err(|_| Reason::NotTrustedNodeAuth)?;
    let v = v.trim_matches([' ', '\t', '\r', '\n']);
    if v.bytes().any(|c| c == 0) {
        return Err(Reason::NotTrustedNodeAuth);
    }
    let (scheme, mut rest) = match v.find([' ', '\t', '\r', '\n']) {
        Some(i) => (&v[..i], &v[i..]),
        None => return Err(Reason::NotTrustedNodeAuth),
    };
    if !scheme.eq_ignore_ascii_case("digest") {
        return Err(Reason::NotTrustedNodeAuth);
    }
    let mut p = TnaParams::default();
    let mut seen: Vec<String> = Vec::new();
    let mut username = None;
    loop {
        rest = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        let eq = rest.find('=').ok_or(Reason::NotTrustedNodeAuth)?;
        let name = rest[..eq]
            .trim_end_matches([' ', '\t', '\r', '\n'])
            .to_ascii_lowercase();
        if name.is_empty()
            || !name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        {
            return Err(Reason::NotTrustedNodeAuth);
        }
        if seen.contains(&name) {
            return Err(Reason::NotTrustedNodeAuth);
        }
        rest = rest[eq + 1..].trim_start_matches([' ', '\t', '\r', '\n']);
        let value: String;
        if let Some(q) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, e)) => out.push(e),
                        None => return Err(Reason::NotTrustedNodeAuth),
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => out.push(c),
                }
            }
            let end = end.ok_or(Reason::NotTrustedNodeAuth)?;
            value = out;
            rest = &q[end + 1..];
        } else {
            let end = rest
                .find([',', ' ', '\t', '\r', '\n'])
                .unwrap_or(rest.len());
            value = rest[..end].to_owned();
            rest = &rest[end..];
        }
        match name.as_str() {
            "username" => username = Some(value),
            "realm" => p.realm = Some(value),
            "integrity-protected" => p.integrity_protected = Some(value.to_ascii_lowercase()),
            "authorization-entity" => p.authorization_entity = Some(value),
            _ => {}
        }
        seen.push(name);
        rest = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix(',').ok_or(Reason::NotTrustedNodeAuth)?;
    }
    p.username = username.ok_or(Reason::NotTrustedNodeAuth)?;
    Ok(p)
}

/// The S-CSCF side decision (doc/protocol.md, "The S-CSCF check"): accept only when
/// the source is a trusted node, `integrity-protected=auth-done`, the
/// username is a valid IMPI and `authorization-entity`, when present, is
/// allowed and not barred.
pub fn scscf_check(
    value: &[u8],
    source: &str,
    trusted: &[IpAddr],
    allowed: &[&str],
    barred: &dyn Fn(&str) -> bool,
) -> Result<TnaParams, (Reason, Option<TnaParams>)> {
    let src: Option<IpAddr> = source
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok();
    let trusted_src = match src {
        Some(ip) => trusted
            .iter()
            .any(|t| *t == ip || canonical(*t) == canonical(ip)),
        None => false,
    };
    if !trusted_src {
        return Err((Reason::UntrustedSource, None));
    }
    let p = parse(value).map_err(|r| (r, None))?;
    if p.integrity_protected.as_deref() != Some("auth-done") {
        return Err((Reason::NotAuthDone, Some(p)));
    }
    if crate::core::identity::check_impi(&p.username).is_err() {
        return Err((Reason::InvalidImpi, Some(p)));
    }
    if let Some(e) = &p.authorization_entity {
        if barred(e) {
            return Err((Reason::IssuerBarred, Some(p)));
        }
        if !allowed.iter().any(|a| a == e) {
            return Err((Reason::EntityNotAllowed, Some(p)));
        }
    }
    Ok(p)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_exact() {
        assert_eq!(
            build("alice@x.net", "ims.example.net", None, None),
            "Digest username=\"alice@x.net\", realm=\"ims.example.net\", uri=\"sip:ims.example.net\", nonce=\"\", response=\"\", integrity-protected=auth-done"
        );
        assert_eq!(
            build("alice@x.net", "x.net", Some("sips:scscf.x.net"), None),
            "Digest username=\"alice@x.net\", realm=\"x.net\", uri=\"sips:scscf.x.net\", nonce=\"\", response=\"\", integrity-protected=auth-done"
        );
        assert!(build("a@x", "r", None, Some("https://iss"))
            .ends_with(", authorization-entity=\"https://iss\""));
        // Room for the C ABI's NUL without a reallocation.
        for (uri, entity) in [
            (None, None),
            (Some("sip:u.example"), None),
            (None, Some("https://i")),
            (Some("sip:u"), Some("https://i")),
        ] {
            let h = build("alice@x.net", "realm.example", uri, entity);
            assert!(h.capacity() > h.len(), "{h}");
        }
    }

    #[test]
    fn parse_quoted_and_token() {
        let a = parse(build("alice@x.net", "r.net", None, Some("https://i")).as_bytes()).unwrap();
        assert_eq!(a.integrity_protected.as_deref(), Some("auth-done"));
        assert_eq!(a.authorization_entity.as_deref(), Some("https://i"));
        let b = parse(b"Digest username=\"a@b\", integrity-protected=\"Auth-Done\"").unwrap();
        assert_eq!(b.integrity_protected.as_deref(), Some("auth-done"));
        assert!(parse(b"Bearer x").is_err());
        assert!(parse(b"Digest username=\"a@b\", username=\"c@d\"").is_err());
        assert!(parse(b"Digest realm=\"x\"").is_err());
    }

    #[test]
    fn scscf_rules() {
        let t: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        let h = build("alice@x.net", "x.net", None, Some("https://a"));
        let nob = |_: &str| false;
        assert!(scscf_check(h.as_bytes(), "127.0.0.1", &t, &["https://a"], &nob).is_ok());
        assert_eq!(
            scscf_check(h.as_bytes(), "127.0.0.2", &t, &["https://a"], &nob)
                .unwrap_err()
                .0,
            Reason::UntrustedSource
        );
        assert_eq!(
            scscf_check(h.as_bytes(), "127.0.0.1", &t, &["https://b"], &nob)
                .unwrap_err()
                .0,
            Reason::EntityNotAllowed
        );
        assert_eq!(
            scscf_check(h.as_bytes(), "127.0.0.1", &t, &["https://a"], &|_| true)
                .unwrap_err()
                .0,
            Reason::IssuerBarred
        );
        let no = b"Digest username=\"alice@x.net\", integrity-protected=no";
        assert_eq!(
            scscf_check(no, "127.0.0.1", &t, &[], &nob).unwrap_err().0,
            Reason::NotAuthDone
        );
        assert!(scscf_check(h.as_bytes(), "::ffff:127.0.0.1", &t, &["https://a"], &nob).is_ok());
    }
}

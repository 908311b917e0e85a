//! Outcomes of a check: stable reason names, SIP status codes and the
//! `WWW-Authenticate: Bearer` challenge of doc/protocol.md, "Failure responses".

use std::fmt;

/// Why a request was accepted or refused. The names returned by
/// [`Reason::name`] are stable: logs, statistics and scripts rely on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Accepted.
    Ok,
    /// No bearer token in the request (no header, or another scheme).
    MissingToken,
    /// The header value cannot be parsed (empty, bad syntax, two tokens).
    MalformedRequest,
    /// The token is not a well-formed JWT (segments, base64url, JSON).
    MalformedToken,
    /// The token is larger than the configured limit.
    TokenTooLarge,
    /// `alg` is `none`, unknown, or not configured for the selected key.
    UnsupportedAlgorithm,
    /// The JOSE header asks for something never honoured (`crit`, `jku`, ...).
    UnsupportedHeader,
    /// `typ` is not `at+jwt` where that is required.
    WrongTokenType,
    /// `iss` is missing or names no configured issuer.
    UnknownIssuer,
    /// No key of the issuer matches `kid` / `alg`.
    UnknownKey,
    /// Signature or MAC does not verify.
    BadSignature,
    /// `exp` is past (beyond the leeway); or, for a registration or
    /// refresh (not a de-registration), the token has less than
    /// `min_registration_expires` left.
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    /// `exp - iat` (or `exp - now` without `iat`) exceeds the issuer's maximum.
    LifetimeTooLong,
    /// `aud` missing or does not contain the configured audience.
    WrongAudience,
    /// A required claim is missing.
    MissingClaim,
    /// A claim has the wrong JSON type or form.
    InvalidClaim,
    /// `scope` lacks the required value.
    InsufficientScope,
    /// The issuer is barred.
    IssuerBarred,
    /// The IMPI is not a safe `user@realm` NAI.
    InvalidImpi,
    /// An IMPU is not a safe `sip:`/`sips:`/`tel:` URI.
    InvalidImpu,
    /// The IMPI is outside the issuer's pool.
    ImpiOutsidePool,
    /// An IMPU is outside the issuer's pool.
    ImpuOutsidePool,
    /// The `To` IMPU of the REGISTER is not among the token's IMPUs.
    ToImpuNotInToken,
    /// The `To` URI given by the proxy cannot be parsed.
    InvalidToUri,
    /// Internal failure: never an accept.
    InternalError,
    // --- S-CSCF side ---
    /// The received Authorization is not a TNA `Digest` header.
    NotTrustedNodeAuth,
    /// `integrity-protected` is not `auth-done`.
    NotAuthDone,
    /// The request does not come from a configured trusted node.
    UntrustedSource,
    /// `authorization-entity` is not in the subscription's allowed list.
    EntityNotAllowed,
    // --- remote trust (appended: the numbers above stay) ---
    /// The issuer's remote key set (`jwks_url`) is not available: never
    /// fetched yet, or older than its `max_stale`. 500: fail closed.
    KeysUnavailable,
    /// The introspection endpoint timed out, failed, answered garbage, or
    /// its circuit breaker is open. 500: never an accept.
    IntrospectionUnavailable,
    /// The introspection endpoint answered `active: false`.
    InactiveToken,
    // --- replay (src/core/replay.rs) ---
    /// The token's `jti` was already used from another binding (connection
    /// or source) within the token's lifetime.
    TokenReplayed,
    // --- issue 15 (appended: the numbers above stay) ---
    /// The REGISTER came over a WebSocket whose handshake `Origin` the
    /// token's issuer does not list in its `origins` (or the Origin is
    /// empty or not UTF-8).
    OriginNotAllowed,
    /// A bare token (no scheme) where `accept_bare_token` is false: the
    /// client used an authentication method this proxy does not support
    /// (RFC 6750 3.1: a challenge without an error code).
    BareTokenNotAccepted,
}

/// The `error` attribute of a Bearer challenge (RFC 6750 section 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BearerError {
    /// No error code: the request carried no token.
    None,
    /// `invalid_request`.
    InvalidRequest,
    /// `invalid_token`.
    InvalidToken,
    /// `insufficient_scope`.
    InsufficientScope,
}

impl Reason {
    /// Every reason, in a fixed order (used by the counters).
    pub const ALL: [Reason; 37] = [
        Reason::Ok,
        Reason::MissingToken,
        Reason::MalformedRequest,
        Reason::MalformedToken,
        Reason::TokenTooLarge,
        Reason::UnsupportedAlgorithm,
        Reason::UnsupportedHeader,
        Reason::WrongTokenType,
        Reason::UnknownIssuer,
        Reason::UnknownKey,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::IssuedInFuture,
        Reason::LifetimeTooLong,
        Reason::WrongAudience,
        Reason::MissingClaim,
        Reason::InvalidClaim,
        Reason::InsufficientScope,
        Reason::IssuerBarred,
        Reason::InvalidImpi,
        Reason::InvalidImpu,
        Reason::ImpiOutsidePool,
        Reason::ImpuOutsidePool,
        Reason::ToImpuNotInToken,
        Reason::InvalidToUri,
        Reason::InternalError,
        Reason::NotTrustedNodeAuth,
        Reason::NotAuthDone,
        Reason::UntrustedSource,
        Reason::EntityNotAllowed,
        Reason::KeysUnavailable,
        Reason::IntrospectionUnavailable,
        Reason::InactiveToken,
        Reason::TokenReplayed,
        Reason::OriginNotAllowed,
        Reason::BareTokenNotAccepted,
    ];

    /// Index of this reason in [`Reason::ALL`].
    pub fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// The stable reason name.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::MissingToken => "missing_token",
            Reason::MalformedRequest => "malformed_request",
            Reason::MalformedToken => "malformed_token",
            Reason::TokenTooLarge => "token_too_large",
            Reason::UnsupportedAlgorithm => "unsupported_algorithm",
            Reason::UnsupportedHeader => "unsupported_header",
            Reason::WrongTokenType => "wrong_token_type",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::UnknownKey => "unknown_key",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::IssuedInFuture => "issued_in_future",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::WrongAudience => "wrong_audience",
            Reason::MissingClaim => "missing_claim",
            Reason::InvalidClaim => "invalid_claim",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::IssuerBarred => "issuer_barred",
            Reason::InvalidImpi => "invalid_impi",
            Reason::InvalidImpu => "invalid_impu",
            Reason::ImpiOutsidePool => "impi_outside_pool",
            Reason::ImpuOutsidePool => "impu_outside_pool",
            Reason::ToImpuNotInToken => "to_impu_not_in_token",
            Reason::InvalidToUri => "invalid_to_uri",
            Reason::InternalError => "internal_error",
            Reason::NotTrustedNodeAuth => "not_trusted_node_auth",
            Reason::NotAuthDone => "not_auth_done",
            Reason::UntrustedSource => "untrusted_source",
            Reason::EntityNotAllowed => "entity_not_allowed",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::IntrospectionUnavailable => "introspection_unavailable",
            Reason::InactiveToken => "inactive_token",
            Reason::TokenReplayed => "token_replayed",
            Reason::OriginNotAllowed => "origin_not_allowed",
            Reason::BareTokenNotAccepted => "bare_token_not_accepted",
        }
    }

    /// The SIP status code of this outcome (doc/protocol.md, "Failure responses").
    pub fn sip_status(self) -> u16 {
        match self.bearer_error() {
            Some(BearerError::None) => 401,
            Some(BearerError::InvalidRequest) => 400,
            Some(BearerError::InvalidToken) => 401,
            Some(BearerError::InsufficientScope) => 403,
            None => match self {
                Reason::Ok => 200,
                Reason::InternalError
                | Reason::KeysUnavailable
                | Reason::IntrospectionUnavailable => 500,
                _ => 403,
            },
        }
    }

    /// The Bearer challenge's error code, or `None` when no challenge is sent
    /// (a new token would not help, or the failure is internal).
    pub fn bearer_error(self) -> Option<BearerError> {
        match self {
            Reason::MissingToken | Reason::BareTokenNotAccepted => Some(BearerError::None),
            Reason::MalformedRequest | Reason::InvalidToUri => Some(BearerError::InvalidRequest),
            Reason::MalformedToken
            | Reason::TokenTooLarge
            | Reason::UnsupportedAlgorithm
            | Reason::UnsupportedHeader
            | Reason::WrongTokenType
            | Reason::UnknownIssuer
            | Reason::UnknownKey
            | Reason::BadSignature
            | Reason::Expired
            | Reason::NotYetValid
            | Reason::IssuedInFuture
            | Reason::LifetimeTooLong
            | Reason::WrongAudience
            | Reason::MissingClaim
            | Reason::InvalidClaim
            | Reason::InvalidImpi
            | Reason::InvalidImpu
            | Reason::InactiveToken
            | Reason::TokenReplayed => Some(BearerError::InvalidToken),
            Reason::InsufficientScope => Some(BearerError::InsufficientScope),
            Reason::Ok
            | Reason::IssuerBarred
            | Reason::ImpiOutsidePool
            | Reason::ImpuOutsidePool
            | Reason::ToImpuNotInToken
            | Reason::InternalError
            | Reason::NotTrustedNodeAuth
            | Reason::NotAuthDone
            | Reason::UntrustedSource
            | Reason::EntityNotAllowed
            | Reason::KeysUnavailable
            | Reason::IntrospectionUnavailable
            | Reason::OriginNotAllowed => None,
        }
    }

    /// A fixed, human-readable description. It never contains token content,
    /// so it is safe inside `error_description`.
    pub fn description(self) -> &'static str {
        match self {
            Reason::Ok => "accepted",
            Reason::MissingToken => "no bearer token in the request",
            Reason::MalformedRequest => "the Authorization header cannot be parsed",
            Reason::MalformedToken => "the access token is not a well-formed JWT",
            Reason::TokenTooLarge => "the access token is too large",
            Reason::UnsupportedAlgorithm => "the token's algorithm is not accepted for this key",
            Reason::UnsupportedHeader => "the token's header uses an unsupported parameter",
            Reason::WrongTokenType => "the token type is not at+jwt",
            Reason::UnknownIssuer => "the token's issuer is not trusted",
            Reason::UnknownKey => "no key of the issuer matches the token",
            Reason::BadSignature => "the token's signature does not verify",
            Reason::Expired => "the token has expired",
            Reason::NotYetValid => "the token is not yet valid",
            Reason::IssuedInFuture => "the token was issued in the future",
            Reason::LifetimeTooLong => "the token's lifetime exceeds the issuer's maximum",
            Reason::WrongAudience => "the token is not meant for this network",
            Reason::MissingClaim => "a required claim is missing",
            Reason::InvalidClaim => "a claim has an invalid value",
            Reason::InsufficientScope => "the token's scope does not allow IMS access",
            Reason::IssuerBarred => "the authorization entity is barred",
            Reason::InvalidImpi => "the private identity is not valid",
            Reason::InvalidImpu => "a public identity is not valid",
            Reason::ImpiOutsidePool => "the private identity is outside the issuer's pool",
            Reason::ImpuOutsidePool => "a public identity is outside the issuer's pool",
            Reason::ToImpuNotInToken => "the registered identity is not in the token",
            Reason::InvalidToUri => "the To URI cannot be parsed",
            Reason::InternalError => "internal error",
            Reason::NotTrustedNodeAuth => "not a trusted node authentication header",
            Reason::NotAuthDone => "integrity-protected is not auth-done",
            Reason::UntrustedSource => "the request does not come from a trusted node",
            Reason::EntityNotAllowed => "the authorization entity is not allowed",
            Reason::KeysUnavailable => "the issuer's keys are not available",
            Reason::IntrospectionUnavailable => "the authorization server cannot be reached",
            Reason::InactiveToken => "the token is not active",
            Reason::TokenReplayed => "the token was already used from another connection",
            Reason::OriginNotAllowed => "the web origin is not allowed for the token's issuer",
            Reason::BareTokenNotAccepted => "a token without the Bearer scheme is not accepted",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parameters of the Bearer challenge, from the configuration.
pub struct ChallengeParams<'a> {
    /// `realm`.
    pub realm: &'a str,
    /// `scope` (the required scope).
    pub scope: &'a str,
    /// `authz_server` (RFC 8898), if configured.
    pub authz_server: Option<&'a str>,
}

/// The `WWW-Authenticate` header value for `reason`, or `None` when no
/// challenge is sent. Every configured value was checked for header safety
/// when the configuration was loaded.
pub fn www_authenticate(reason: Reason, p: &ChallengeParams<'_>) -> Option<String> {
    let err = reason.bearer_error()?;
    let mut v = format!("Bearer realm=\"{}\"", p.realm);
    match err {
        BearerError::None => {
            v.push_str(&format!(", scope=\"{}\"", p.scope));
            if let Some(url) = p.authz_server {
                v.push_str(&format!(", authz_server=\"{}\"", url));
            }
        }
        BearerError::InvalidRequest => {
            v.push_str(&format!(
                ", error=\"invalid_request\", error_description=\"{}\"",
                reason.description()
            ));
        }
        BearerError::InvalidToken => {
            v.push_str(&format!(
                ", error=\"invalid_token\", error_description=\"{}\"",
                reason.description()
            ));
        }
        BearerError::InsufficientScope => {
            v.push_str(&format!(
                ", error=\"insufficient_scope\", scope=\"{}\"",
                p.scope
            ));
        }
    }
    Some(v)
}

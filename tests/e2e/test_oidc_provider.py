"""Remote trust against a real authorization server (issue 18 item 4): the
certified oidc-provider (tests/as/server.mjs, pinned by
tests/as/package-lock.json) on 127.0.0.1, and wic-tna in process through the
Python ctypes glue (kamailio-example/python/wic_tna_glue.py) with a
generated configuration: the jwks_url and the introspection endpoint
typed in (write_config), or found by wic-tna in the AS's metadata
(write_discovery_config: RFC 8414 / OpenID Connect discovery).

As in a proxy, a long-running "worker" Context verifies and never fetches
anything, and a "refresher" Context (the Kamailio module's refresher
process, the glue's rtimer) calls tick(); both share the configuration's
state_file (generations, counters, breaker) and cache_dir (key sets).

Skipped (with the reason) when node or tests/as/node_modules is missing:
npm ci --prefix tests/as.

    cd tests/e2e && python3 -m pytest -q -p no:cacheprovider test_oidc_provider.py
"""

import ctypes
import json
import os
import sys
import time

import pytest

from harness import EXAMPLE, LIBRARY, REPO

sys.path.insert(0, str(EXAMPLE / "python"))
sys.path.insert(0, str(REPO / "tests" / "as"))

import wic_tna_glue as glue  # noqa: E402
from oidc_as import EPCSCF_CLIENT, SCOPE, OidcAs, decode_jwt  # noqa: E402

HOME_REALM = "ims.example.net"
DOMAIN = "socialnet.ims.example.net"

# The longest a revoked reference token may still be accepted by a process
# that introspected it before the revocation, with the defaults (issue 18:
# bounded positive cache; the default that is being introduced is 60 s).
REVOCATION_BOUND = 60

# WIC_TNA_OIDC_REAL_TIME=1: the tests that need time to pass wait for it
# instead of giving the library a later clock (now_unix of the request).
REAL_TIME = bool(os.environ.get("WIC_TNA_OIDC_REAL_TIME"))


def ident(user="alice"):
    return "%s@%s" % (user, DOMAIN), "sip:%s@%s" % (user, DOMAIN)


def bearer(token):
    return "Bearer " + token


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------

def write_config(path, as_, jwks=True, introspection=True, top="", key="",
                 intro=""):
    """A wic-tna configuration trusting `as_`: its jwks_url and/or its
    introspection endpoint, both from its discovery document. `top`, `key`
    and `intro` are more TOML lines for the top level, the [[issuer.key]]
    and the [issuer.introspection] tables."""
    d = path.parent
    secret = as_.write_client_secret(d / "ep-cscf.secret")
    text = '''home_realm = "%(realm)s"
audience = "%(aud)s"
state_file = "%(state)s"
cache_dir = "%(cache)s"
%(top)s

[[issuer]]
iss = "%(iss)s"
impi_patterns = ["*@%(dom)s"]
impu_patterns = ["sip:*@%(dom)s", "tel:+1555*"]
''' % {"realm": HOME_REALM, "aud": as_.audience, "state": d / "state",
       "cache": d / "jwks-cache", "top": top, "iss": as_.issuer, "dom": DOMAIN}
    if jwks:
        text += '''
  [[issuer.key]]
  jwks_url = "%s"
  algorithms = ["%s"]
  min_refresh = 1
  refetch_interval = 1
%s
''' % (as_.jwks_uri, as_.alg, key)
    if introspection:
        text += '''
  [issuer.introspection]
  endpoint = "%s"
  client_id = "%s"
  client_secret_file = "%s"
  timeout_ms = 2000
%s
''' % (as_.introspection_endpoint, EPCSCF_CLIENT[0], secret, intro)
    path.write_text(text)
    return path


def write_discovery_config(path, as_, top="", issuer=""):
    """The configuration of an issuer given by its issuer identifier only:
    `discovery = true`, the algorithms of its key set (never taken from
    the AS) and the introspection client credentials (which metadata cannot
    give); wic-tna finds jwks_uri and introspection_endpoint in the AS's
    metadata (RFC 8414 location first, then OpenID Connect's). `issuer`:
    more TOML lines for the [[issuer]] table."""
    d = path.parent
    secret = as_.write_client_secret(d / "ep-cscf.secret")
    text = '''home_realm = "%(realm)s"
audience = "%(aud)s"
state_file = "%(state)s"
cache_dir = "%(cache)s"
%(top)s

[[issuer]]
iss = "%(iss)s"
discovery = true
impi_patterns = ["*@%(dom)s"]
impu_patterns = ["sip:*@%(dom)s", "tel:+1555*"]
%(issuer)s

  [[issuer.key]]
  algorithms = ["%(alg)s"]
  min_refresh = 1
  refetch_interval = 1

  [issuer.introspection]
  client_id = "%(client)s"
  client_secret_file = "%(secret)s"
  timeout_ms = 2000
''' % {"realm": HOME_REALM, "aud": as_.audience, "state": d / "state",
       "cache": d / "jwks-cache", "top": top, "iss": as_.issuer, "dom": DOMAIN,
       "issuer": issuer, "alg": as_.alg, "client": EPCSCF_CLIENT[0],
       "secret": secret}
    path.write_text(text)
    return path


# --------------------------------------------------------------------------
# in-process wic-tna
# --------------------------------------------------------------------------

class Trust:
    """A worker Context (verifies, never ticks) and a refresher Context
    (ticks) on one configuration, as the proxy's processes are."""

    def __init__(self, lib, config):
        self.lib = lib
        self.config = config
        self.refresher = glue.Context(lib, str(config))
        self.worker = glue.Context(lib, str(config))
        self.extra = []

    def fresh(self):
        """A new worker (a new process: empty caches)."""
        c = glue.Context(self.lib, str(self.config))
        self.extra.append(c)
        return c

    def verify(self, token, to_uri=None, ctx=None, now=0):
        return verify_at(ctx or self.worker, bearer(token), to_uri, now)

    def tick(self):
        self.refresher.tick()

    def until(self, token, want, to_uri=None, timeout=10, ctx=None):
        """Tick the refresher (every 250 ms, as the module does) and verify
        until the reason is `want`; the last result, and the seconds it
        took."""
        t0 = time.monotonic()
        while True:
            r = self.verify(token, to_uri, ctx)
            if r.reason == want or time.monotonic() - t0 > timeout:
                return r, time.monotonic() - t0
            self.tick()
            time.sleep(0.25)

    def remote_stats(self, iss):
        return json.loads(self.worker.stats_json()).get("remote", {}).get(iss, {})

    def free(self):
        for c in [self.worker, self.refresher] + self.extra:
            c.free()


def verify_at(ctx, authorization, to_uri=None, now_unix=0, requested_expires=-1):
    """Context.verify with the request's clock (now_unix, 0: the current
    time), through the same C entry point (wic_tna_verify_request)."""
    a = glue._bytes(authorization)
    t = glue._bytes(to_uri) if to_uri else None
    req = glue.Request()
    req.struct_size = ctypes.sizeof(glue.Request)
    req.authorization, req.authorization_len = a, len(a)
    req.to_uri, req.to_uri_len = t, len(t) if t else 0
    req.requested_expires = int(requested_expires)
    req.now_unix = int(now_unix)
    out = ctypes.c_void_p()
    ctx.lib.check(ctx.lib.dll.wic_tna_verify_request(
        ctx.handle, ctypes.byref(req), ctypes.byref(out)), "verify")
    return glue.Result.take(ctx.lib, out)


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lib():
    return glue.Library(str(LIBRARY))


@pytest.fixture(scope="module")
def as_(tmp_path_factory):
    a = OidcAs(log=tmp_path_factory.mktemp("as") / "as.log").start()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def trust(lib, as_, tmp_path_factory):
    """The long-running worker and refresher, the key set fetched."""
    cfg = write_config(tmp_path_factory.mktemp("trust") / "wic-tna.toml", as_)
    t = Trust(lib, cfg)
    t.tick()
    yield t
    t.free()


# --------------------------------------------------------------------------
# JWT access tokens (RFC 9068) by jwks_url
# --------------------------------------------------------------------------

def test_as_issues_rfc9068_tokens_with_the_ims_claims(as_):
    impi, impu = ident()
    token = as_.jwt_token(impi, [impu, "tel:+15551234"])
    header, claims = decode_jwt(token)
    assert header == {"alg": "ES256", "typ": "at+jwt",
                      "kid": as_.ready["kid"]}, header
    assert set(claims) == {"iss", "aud", "sub", "client_id", "scope", "iat",
                           "exp", "jti", "impi", "impu"}, claims
    assert claims["iss"] == as_.issuer == "http://127.0.0.1:%d" % as_.port
    assert claims["aud"] == as_.audience
    assert claims["scope"] == SCOPE
    assert claims["impi"] == impi and claims["impu"] == [impu, "tel:+15551234"]
    assert claims["sub"] == claims["client_id"] == "wwsf"
    assert claims["exp"] - claims["iat"] == as_.ttl
    assert [k["kid"] for k in as_.jwks()["keys"]] == [header["kid"]]
    for url in (as_.jwks_uri, as_.introspection_endpoint,
                as_.revocation_endpoint, as_.token_endpoint):
        assert url.startswith("http://127.0.0.1:%d/" % as_.port), url


def test_fail_closed_until_the_refresher_has_fetched_the_key_set(lib, as_, tmp_path):
    t = Trust(lib, write_config(tmp_path / "wic-tna.toml", as_))
    try:
        impi, impu = ident()
        token = as_.jwt_token(impi, impu)
        r = t.verify(token, impu)
        assert (r.status, r.reason) == (500, "keys_unavailable"), r.as_dict()
        assert r.challenge == ""
        t.tick()
        r = t.verify(token, impu)
        assert r.accepted, r.as_dict()
        assert t.remote_stats(as_.issuer).get("jwks_fetch_ok") == 1
        assert list((tmp_path / "jwks-cache").glob("jwks-*.json"))
    finally:
        t.free()


def test_jwt_access_token_accepted(trust, as_):
    impi, impu = ident()
    token = as_.jwt_token(impi, [impu, "tel:+15551234"])
    claims = decode_jwt(token)[1]
    r = trust.verify(token, "<%s>;tag=x" % impu)
    assert r.accepted and (r.status, r.reason) == (200, "ok"), r.as_dict()
    assert r.impi == impi
    assert r.impus == [impu, "tel:+15551234"]
    assert r.issuer == as_.issuer
    assert r.subject == "wwsf"
    assert r.scope == SCOPE
    assert r.expires_at == claims["exp"]
    assert r.tna == ('Digest username="%s", realm="%s", uri="sip:%s", '
                     'nonce="", response="", integrity-protected=auth-done'
                     % (impi, HOME_REALM, HOME_REALM)), r.tna
    # the tel: IMPU registers too
    assert trust.verify(token, "tel:+1-555-1234").accepted
    # another user's To: not this token's
    r = trust.verify(token, ident("bob")[1])
    assert (r.status, r.reason) == (403, "to_impu_not_in_token"), r.as_dict()


def test_wrong_audience(trust, as_):
    impi, impu = ident()
    token = as_.jwt_token(impi, impu, resource=as_.resources["other"])
    assert decode_jwt(token)[1]["aud"] == "https://other-api.example"
    r = trust.verify(token, impu)
    assert (r.status, r.reason) == (401, "wrong_audience"), r.as_dict()
    assert 'error="invalid_token"' in r.challenge


def test_missing_or_other_scope(trust, as_):
    impi, impu = ident()
    # the AS grants only what is asked for: no scope at all
    token = as_.jwt_token(impi, impu, scope=None)
    assert "scope" not in decode_jwt(token)[1]
    r = trust.verify(token, impu)
    assert (r.status, r.reason) == (403, "insufficient_scope"), r.as_dict()
    assert 'error="insufficient_scope"' in r.challenge
    assert 'scope="%s"' % SCOPE in r.challenge
    # another scope of the same resource only
    token = as_.jwt_token(impi, impu, scope="other-scope")
    assert decode_jwt(token)[1]["scope"] == "other-scope"
    r = trust.verify(token, impu)
    assert (r.status, r.reason) == (403, "insufficient_scope"), r.as_dict()
    # both: accepted
    assert trust.verify(as_.jwt_token(impi, impu, scope="other-scope " + SCOPE),
                        impu).accepted


def test_identity_claims_checked(trust, as_):
    impi, impu = ident()
    r = trust.verify(as_.jwt_token(None, impu), impu)
    assert (r.status, r.reason) == (401, "missing_claim"), r.as_dict()
    r = trust.verify(as_.jwt_token(impi, None), impu)
    assert (r.status, r.reason) == (401, "missing_claim"), r.as_dict()
    r = trust.verify(as_.jwt_token("mallory@other.example", impu), impu)
    assert (r.status, r.reason) == (403, "impi_outside_pool"), r.as_dict()
    r = trust.verify(as_.jwt_token(impi, "sip:alice@other.example"))
    assert (r.status, r.reason) == (403, "impu_outside_pool"), r.as_dict()


def test_expired(trust, as_, lib, tmp_path):
    impi, impu = ident()
    # past exp + leeway (30 s) by the request's clock
    token = as_.jwt_token(impi, impu)
    exp = decode_jwt(token)[1]["exp"]
    assert trust.verify(token, impu).accepted
    r = trust.verify(token, impu, now=exp + 31)
    assert (r.status, r.reason) == (401, "expired"), r.as_dict()
    assert 'error="invalid_token"' in r.challenge
    # less than min_registration_expires (60 s) left: refused as expired
    r = trust.verify(as_.jwt_token(impi, impu, ttl=30), impu)
    assert (r.status, r.reason) == (401, "expired"), r.as_dict()
    # really expired, by the clock: no leeway, no minimum, a 2 s token
    t = Trust(lib, write_config(tmp_path / "short.toml", as_,
                                top="leeway = 0\nmin_registration_expires = 0"))
    try:
        t.tick()
        token = as_.jwt_token(impi, impu, ttl=2)
        exp = decode_jwt(token)[1]["exp"]
        r = t.verify(token, impu)
        assert r.accepted, r.as_dict()
        while time.time() < exp + 1.05:
            time.sleep(0.1)
        r = t.verify(token, impu)
        assert (r.status, r.reason) == (401, "expired"), r.as_dict()
    finally:
        t.free()


def test_key_rotation_picked_up(lib, tmp_path):
    """The AS rotates its signing key (the old one published a while, then
    dropped): the first token of the new key is refused at once
    (unknown_key), the refresher re-fetches on that kid and it is accepted
    within about a tick; a token of a dropped key is refused once the
    refresher has the new set, even though it was verified (and cached)
    before."""
    with OidcAs(log=tmp_path / "as.log") as as_:
        t = Trust(lib, write_config(tmp_path / "wic-tna.toml", as_))
        try:
            t.tick()
            impi, impu = ident()
            old = as_.jwt_token(impi, impu)
            assert t.verify(old, impu).accepted
            k1 = decode_jwt(old)[0]["kid"]

            k2 = as_.rotate_keys(keep_old=True)
            assert [k["kid"] for k in as_.jwks()["keys"]] == [k2, k1]
            new = as_.jwt_token(impi, impu)
            assert decode_jwt(new)[0]["kid"] == k2
            r = t.verify(new, impu)
            assert (r.status, r.reason) == (401, "unknown_key"), r.as_dict()
            # the refresher's next tick re-fetches (README: "within about
            # 250 ms")
            r, took = t.until(new, "ok", impu, timeout=5)
            assert r.accepted, (r.as_dict(), took)
            assert took < 1.0, took
            assert t.verify(old, impu).accepted      # still published
            s = t.remote_stats(as_.issuer)
            assert s.get("jwks_refetch_unknown_kid", 0) >= 1, s

            k3 = as_.rotate_keys(keep_old=False)
            assert [k["kid"] for k in as_.jwks()["keys"]] == [k3]
            newest = as_.jwt_token(impi, impu)
            # at most one re-fetch per refetch_interval (1 s, counted in
            # whole seconds)
            r, took = t.until(newest, "ok", impu, timeout=5)
            assert r.accepted, (r.as_dict(), took)
            assert took < 2.5, took
            for token in (old, new):
                r = t.verify(token, impu)
                assert (r.status, r.reason) == (401, "unknown_key"), r.as_dict()
        finally:
            t.free()


# --------------------------------------------------------------------------
# opaque (reference) tokens by introspection (RFC 7662)
# --------------------------------------------------------------------------

def test_opaque_token_accepted_by_introspection(trust, as_):
    impi, impu = ident("carol")
    token = as_.opaque_token(impi, [impu])
    assert token.count(".") == 0, token
    answer = as_.introspect(token)
    assert answer["active"] is True and answer["iss"] == as_.issuer, answer
    before = trust.remote_stats(as_.issuer)
    r = trust.verify(token, impu)
    assert r.accepted and r.reason == "ok", r.as_dict()
    assert r.impi == impi and r.impus == [impu] and r.issuer == as_.issuer
    assert r.scope == SCOPE and r.expires_at == answer["exp"]
    assert r.tna.startswith('Digest username="%s", realm="%s"' % (impi, HOME_REALM))
    # again: from the process's cache, no call
    assert trust.verify(token, impu).accepted
    after = trust.remote_stats(as_.issuer)
    calls = after.get("introspection_calls", 0) - before.get("introspection_calls", 0)
    hits = (after.get("introspection_cache_hits", 0)
            - before.get("introspection_cache_hits", 0))
    assert (calls, hits) == (1, 1), (before, after)
    # a token the AS never issued
    r = trust.verify("x" * 43, impu)
    assert (r.status, r.reason) == (401, "inactive_token"), r.as_dict()
    # claim rules apply to the answer: an opaque token without the scope
    r = trust.verify(as_.opaque_token(impi, [impu], scope="other-scope"), impu)
    assert (r.status, r.reason) == (403, "insufficient_scope"), r.as_dict()


def test_revoked_opaque_token_refused_by_a_fresh_context(trust, as_):
    impi, impu = ident("dave")
    token = as_.opaque_token(impi, impu)
    assert trust.verify(token, impu).accepted
    as_.revoke(token)
    assert as_.introspect(token) == {"active": False}
    r = trust.verify(token, impu, ctx=trust.fresh())
    assert (r.status, r.reason) == (401, "inactive_token"), r.as_dict()
    assert 'error="invalid_token"' in r.challenge


def test_opaque_token_past_the_held_answers_exp_is_expired(trust, as_):
    """A token past the exp of the answer the process holds is `expired`,
    without a call (the AS would only say active: false)."""
    impi, impu = ident("frank")
    token = as_.opaque_token(impi, impu)
    assert trust.verify(token, impu).accepted
    exp = as_.introspect(token)["exp"]
    calls = trust.remote_stats(as_.issuer).get("introspection_calls", 0)
    r = trust.verify(token, impu, now=exp + 31)
    assert (r.status, r.reason) == (401, "expired"), r.as_dict()
    assert trust.remote_stats(as_.issuer).get("introspection_calls", 0) == calls


def test_revocation_seen_within_positive_ttl_or_at_once_without_cache(lib, as_, tmp_path):
    """positive_ttl = 2: the long-running worker refuses a token revoked at
    the AS within 2 s of its answer, by the real clock; cache_size = 0:
    at once."""
    impi, impu = ident("grace")
    t = Trust(lib, write_config(tmp_path / "ttl.toml", as_, intro="  positive_ttl = 2"))
    try:
        token = as_.opaque_token(impi, impu)
        t0 = time.monotonic()
        assert t.verify(token, impu).accepted
        as_.revoke(token)
        while True:
            r = t.verify(token, impu)
            took = time.monotonic() - t0
            if not r.accepted or took > 5:
                break
            time.sleep(0.1)
        assert (r.status, r.reason) == (401, "inactive_token"), r.as_dict()
        assert took <= 3.1, took
    finally:
        t.free()
    (tmp_path / "b").mkdir()
    t = Trust(lib, write_config(tmp_path / "b" / "nocache.toml", as_,
                                intro="  cache_size = 0"))
    try:
        token = as_.opaque_token(impi, impu)
        assert t.verify(token, impu).accepted
        assert t.verify(token, impu).accepted
        as_.revoke(token)
        r = t.verify(token, impu)
        assert (r.status, r.reason) == (401, "inactive_token"), r.as_dict()
        assert t.remote_stats(as_.issuer).get("introspection_cache_hits", 0) == 0
    finally:
        t.free()


def test_revoked_opaque_token_refused_by_the_same_context_within_a_bound(trust, as_):
    """The long-running worker introspected the token before the AS
    revoked it; with the defaults (cache_size 10000) it must refuse it
    within REVOCATION_BOUND seconds, not only at the token's exp (300 s
    here). WIC_TNA_OIDC_REAL_TIME=1 waits instead of moving the clock."""
    impi, impu = ident("erin")
    token = as_.opaque_token(impi, impu)
    assert trust.verify(token, impu).accepted
    as_.revoke(token)
    revoked_at = time.time()
    if REAL_TIME:
        deadline = revoked_at + REVOCATION_BOUND + 1
        while True:
            r = trust.verify(token, impu)
            if not r.accepted or time.time() > deadline:
                break
            time.sleep(0.5)
    else:
        r = trust.verify(token, impu, now=int(revoked_at) + REVOCATION_BOUND + 1)
    assert (r.status, r.reason) == (401, "inactive_token"), r.as_dict()


# --------------------------------------------------------------------------
# discovery (RFC 8414, OpenID Connect Discovery)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["well-known", "metadata_url"])
def test_issuer_only_configuration_by_discovery(lib, as_, tmp_path, where):
    """An issuer given by its iss (and the algorithms, and the
    introspection client): the refresher reads the AS's metadata -- at the
    RFC 8414 location, or at the configured metadata_url (here the OpenID
    Connect one) -- and takes jwks_uri and introspection_endpoint from it.
    JWT access tokens and opaque ones are accepted; the metadata is fetched
    once and published once."""
    issuer = ""
    if where == "metadata_url":
        issuer = 'metadata_url = "%s/.well-known/openid-configuration"' % as_.issuer
    t = Trust(lib, write_discovery_config(tmp_path / "wic-tna.toml", as_,
                                          issuer=issuer))
    try:
        impi, impu = ident()
        token = as_.jwt_token(impi, impu)
        r = t.verify(token, impu)
        # fail closed until the refresher has the metadata and the keys
        assert (r.status, r.reason) == (500, "keys_unavailable"), r.as_dict()
        r, _ = t.until(token, "ok", impu, timeout=5)
        assert r.accepted, r.as_dict()
        r = t.verify(as_.opaque_token(impi, impu), impu)
        assert r.accepted, r.as_dict()
        t.tick()
        s = t.remote_stats(as_.issuer)
        assert s["metadata_generation"] == 1, s
        assert s["metadata_fetch_ok"] == 1 and s.get("metadata_fetch_failed", 0) == 0, s
        assert s["jwks_generation"] == 1, s
        assert s["introspection_calls"] >= 1, s
    finally:
        t.free()


def test_metadata_of_another_issuer_is_not_used(lib, as_, tmp_path):
    """RFC 8414 section 3.3: the metadata's issuer must be the configured
    one exactly. Configured with a trailing '/', the AS's document (which
    names the issuer without it) is refused: nothing is published, and an
    opaque token of that issuer gets 500 introspection_unavailable rather
    than a call to an endpoint the metadata named."""
    cfg = write_discovery_config(
        tmp_path / "wic-tna.toml", as_,
        issuer='metadata_url = "%s/.well-known/openid-configuration"' % as_.issuer)
    cfg.write_text(cfg.read_text().replace(
        'iss = "%s"' % as_.issuer, 'iss = "%s/"' % as_.issuer, 1))
    t = Trust(lib, cfg)
    try:
        t.tick()
        impi, impu = ident()
        r = t.verify(as_.opaque_token(impi, impu), impu)
        assert (r.status, r.reason) == (500, "introspection_unavailable"), r.as_dict()
        s = t.remote_stats(as_.issuer + "/")
        assert s["metadata_fetch_failed"] == 1 and s["metadata_generation"] == 0, s
        assert s.get("introspection_calls", 0) == 0, s
    finally:
        t.free()


def test_key_rotation_picked_up_through_discovery(lib, tmp_path):
    """The key set at the discovered jwks_uri is refreshed as one by URL:
    a rotated key is picked up on its first unknown kid."""
    with OidcAs(log=tmp_path / "as.log") as as_:
        t = Trust(lib, write_discovery_config(tmp_path / "wic-tna.toml", as_))
        try:
            impi, impu = ident()
            r, _ = t.until(as_.jwt_token(impi, impu), "ok", impu, timeout=5)
            assert r.accepted, r.as_dict()
            as_.rotate_keys(keep_old=False)
            new = as_.jwt_token(impi, impu)
            r = t.verify(new, impu)
            assert (r.status, r.reason) == (401, "unknown_key"), r.as_dict()
            r, took = t.until(new, "ok", impu, timeout=5)
            assert r.accepted, (r.as_dict(), took)
            s = t.remote_stats(as_.issuer)
            assert s["metadata_generation"] == 1 and s["jwks_generation"] == 2, s
        finally:
            t.free()

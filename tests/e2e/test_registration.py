"""End to end: a WIC registers through a real Kamailio eP-CSCF (native module
or Python glue) to a real Kamailio S-CSCF. Every test runs for both."""

import re
import time

import pytest
from websockets.exceptions import InvalidStatus

from harness import ISSUER_A, ISSUER_B, ORIGIN_A, ORIGIN_B
from tokens import identity, mint, mint_cli, tamper

LIFETIME = 300


def bearer(token):
    return "Bearer " + token


def assert_nothing_forwarded(dep, call_id):
    time.sleep(0.3)
    assert dep.scscf_rx(call_id) == [], "reached the S-CSCF:\n" + dep.logs()


def assert_registered(dep, resp, user="alice", issuer="a", lifetime=LIFETIME):
    """200 OK; the S-CSCF got exactly one Authorization, the TNA header; the
    contact is in usrloc with an expiry capped at the token's lifetime."""
    impi, impu = identity(issuer, user)
    call_id = resp.header("Call-ID")
    assert resp.status == 200, (resp.raw, dep.logs())

    rx = dep.scscf_rx(call_id)
    assert len(rx) == 1, rx
    assert "auth_count=1 " in rx[0], rx[0]
    auth = re.search(r"auth=\[(.*)\]", rx[0]).group(1)
    assert auth.startswith('Digest username="%s"' % impi), auth
    assert 'realm="ims.example.net"' in auth, auth
    assert 'uri="sip:ims.example.net"' in auth, auth
    assert 'nonce=""' in auth and 'response=""' in auth, auth
    assert re.search(r'integrity-protected="?auth-done"?', auth), auth
    assert "Bearer" not in auth
    assert dep.scscf_lines("SCSCF-TNA", call_id), dep.logs()

    # the registrar's view: the 200 OK's Contact expires and ul.dump
    contact = resp.header("Contact")
    assert contact, resp.raw
    granted = int(re.search(r"expires=(\d+)", contact).group(1))
    assert 0 < granted <= lifetime, contact
    assert granted >= lifetime - 40, contact

    dump = dep.ul_dump()
    assert "AoR: %s" % user in dump, dump
    expires = [int(x) for x in re.findall(r"Expires: (\d+)", dump)]
    assert expires and all(0 < e <= lifetime for e in expires), dump

    # a good registration logs no error on either proxy (e.g. a cfg
    # transformation failing on a Contact without parameters)
    for proc in (dep.ep, dep.scscf):
        errors = [l for l in proc.log().splitlines() if " ERROR: " in l]
        assert not errors, errors


# -- success ---------------------------------------------------------------

def test_valid_token_udp_pyjwt(dep):
    with dep.udp() as c:
        r = c.register(identity()[1], [bearer(mint(lifetime=LIFETIME))],
                       expires=3600, contact_expires=3600)
    assert_registered(dep, r)


def test_valid_token_websocket_cli(dep):
    token = mint_cli(issuer="a", user="carol", lifetime=LIFETIME)
    with dep.ws(ORIGIN_A) as c:
        r = c.register(identity("a", "carol")[1], [bearer(token)],
                       expires=3600)
        # (inside: closing the connection ends the registration)
        assert_registered(dep, r, user="carol")


def test_expiry_below_token_lifetime_kept(dep):
    with dep.udp() as c:
        r = c.register(identity()[1], [bearer(mint(lifetime=LIFETIME))],
                       expires=120)
    assert r.status == 200, r.raw
    granted = int(re.search(r"expires=(\d+)", r.header("Contact")).group(1))
    assert 100 <= granted <= 120, r.raw


# -- every failure row of doc/protocol.md: nothing reaches the S-CSCF ----------

def _two_tokens():
    return [bearer(mint()), bearer(mint(user="alice"))]


FAILURES = [
    # id, authorization values, To user, status, reason name, challenge
    # error (None: a challenge without error code; False: no challenge)
    ("no_token", lambda: [], "alice", 401, "missing_token", None),
    ("two_authorization_headers", _two_tokens, "alice", 400,
     "malformed_request", "invalid_request"),
    ("bad_signature", lambda: [bearer(tamper(mint()))], "alice", 401,
     "bad_signature", "invalid_token"),
    ("other_issuers_key", lambda: [bearer(mint(key_issuer="b",
                                                kid="a-es256"))],
     "alice", 401, "bad_signature", "invalid_token"),
    ("expired", lambda: [bearer(mint(iat_offset=-900, exp_offset=-600))],
     "alice", 401, "expired", "invalid_token"),
    ("not_yet_valid", lambda: [bearer(mint(nbf_offset=600))], "alice", 401,
     "not_yet_valid", "invalid_token"),
    ("unknown_issuer", lambda: [bearer(mint(iss="https://evil.example"))],
     "alice", 401, "unknown_issuer", "invalid_token"),
    ("wrong_audience", lambda: [bearer(mint(aud="other.example.org"))],
     "alice", 401, "wrong_audience", "invalid_token"),
    ("insufficient_scope", lambda: [bearer(mint(scope="openid profile"))],
     "alice", 403, "insufficient_scope", "insufficient_scope"),
    ("impi_outside_pool",
     lambda: [bearer(mint(impi="alice@evil.example.org"))], "alice", 403,
     "impi_outside_pool", False),
    ("impu_outside_pool",
     lambda: [bearer(mint(impus=["sip:alice@evil.example.org"]))],
     "sip:alice@evil.example.org", 403, "impu_outside_pool", False),
    ("to_impu_not_in_token", lambda: [bearer(mint())], "bob", 403,
     "to_impu_not_in_token", False),
    # above max_token_size (8192) and above Kamailio's pv buffer (8192):
    # the library's rule, not an internal error
    ("token_too_large", lambda: ["Bearer " + "A" * 9000], "alice", 401,
     "token_too_large", "invalid_token"),
]


@pytest.mark.parametrize("name,auth,to_user,status,reason,error", FAILURES,
                         ids=[f[0] for f in FAILURES])
def test_rejected(dep, name, auth, to_user, status, reason, error):
    to_uri = to_user if ":" in to_user else identity("a", to_user)[1]
    with dep.udp() as c:
        r = c.register(identity()[1], auth(), expires=600, to_uri=to_uri)
    assert r.status == status, (r.raw, dep.logs())
    # the reason phrase carries the reason name, e.g. "Unauthorized (expired)"
    assert r.reason.endswith(" (%s)" % reason), r.reason
    challenges = r.header_all("WWW-Authenticate")
    if error is False:
        assert challenges == [], r.raw
    else:
        assert len(challenges) == 1, r.raw
        ch = challenges[0]
        assert ch.startswith("Bearer "), ch
        assert 'realm="ims.example.net"' in ch, ch
        if error is None:
            assert "error=" not in ch, ch
            assert "scope=" in ch, ch
        else:
            assert 'error="%s"' % error in ch, ch
    assert_nothing_forwarded(dep, r.header("Call-ID"))


# -- barring, reload -------------------------------------------------------

def _register(dep, issuer="a", user="alice"):
    with dep.udp() as c:
        return c.register(identity(issuer, user)[1],
                          [bearer(mint(issuer=issuer, user=user))],
                          expires=600)


def _eventually(fn, expect, timeout=2.0):
    """Changes reach every worker within a second: retry until then."""
    deadline = time.monotonic() + timeout
    while True:
        r = fn()
        if expect(r) or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_bar_and_unbar_issuer(dep):
    assert _register(dep, "a").status == 200

    res = dep.bar(ISSUER_A)
    assert res.returncode == 0, (res.stdout, res.stderr)
    r = _eventually(lambda: _register(dep, "a"), lambda r: r.status == 403)
    assert r.status == 403, r.raw
    assert r.reason.endswith("(issuer_barred)"), r.reason
    assert r.header_all("WWW-Authenticate") == [], r.raw
    assert_nothing_forwarded(dep, r.header("Call-ID"))
    # the same again, on every worker (two UDP workers)
    for _ in range(4):
        assert _register(dep, "a").status == 403
    # the other issuer still registers
    rb = _register(dep, "b", "dave")
    assert_registered(dep, rb, user="dave", issuer="b", lifetime=LIFETIME)

    res = dep.unbar(ISSUER_A)
    assert res.returncode == 0, (res.stdout, res.stderr)
    r = _eventually(lambda: _register(dep, "a"), lambda r: r.status == 200)
    assert r.status == 200, r.raw
    for _ in range(4):
        assert _register(dep, "a").status == 200


def test_stats_summed_over_workers(dep):
    for _ in range(3):
        assert _register(dep, "a").status == 200
    with dep.udp() as c:
        r = c.register(identity()[1],
                       [bearer(mint(iat_offset=-900, exp_offset=-600))])
    assert r.status == 401
    stats = dep.stats()
    outcomes = stats["outcomes"][ISSUER_A]
    assert outcomes.get("ok") == 3, stats
    assert outcomes.get("expired") == 1, stats


def test_bar_unknown_issuer_is_an_error(dep):
    res = dep.bar("https://nobody.example")
    assert res.returncode != 0
    assert _register(dep, "a").status == 200


def test_reload_broken_config_refused(dep):
    good = dep.config.read_text()
    dep.config.write_text(good + "\n[[issuer]\nthis is not toml\n")
    res = dep.reload()
    assert res.returncode != 0, (res.stdout, res.stderr)
    # the refusal names the file and the line
    message = res.stdout + res.stderr
    assert "%s:" % dep.config in message, message
    # the old configuration is still in force in every worker
    for _ in range(4):
        assert _register(dep, "a").status == 200
        assert _register(dep, "b", "dave").status == 200


def test_reload_takes_effect(dep):
    """A good reload reaches the workers: issuer B removed -> 401."""
    text = dep.config.read_text()
    cut = text.index("[[issuer]]\niss = \"%s\"" % ISSUER_B)
    dep.config.write_text(text[:cut])
    res = dep.reload()
    assert res.returncode == 0, (res.stdout, res.stderr)
    r = _eventually(lambda: _register(dep, "b", "dave"),
                    lambda r: r.status == 401)
    assert r.status == 401, r.raw
    for _ in range(4):
        assert _register(dep, "b", "dave").status == 401
        assert _register(dep, "a").status == 200


# -- WebSocket: Origin, connection binding ---------------------------------

def test_origin_not_allowed_handshake_refused(dep):
    with pytest.raises(InvalidStatus) as e:
        dep.ws("https://evil.example.org")
    assert e.value.response.status_code == 403
    # the allowed origins of both issuers get a SIP WebSocket
    for origin in (ORIGIN_A, ORIGIN_B):
        dep.ws(origin).close()


def test_other_identity_on_registered_connection_rejected(dep):
    alice = identity("a", "alice")[1]
    bob = identity("a", "bob")[1]
    with dep.ws(ORIGIN_A) as c:
        r = c.register(alice, [bearer(mint(user="alice"))], expires=600)
        assert r.status == 200, r.raw

        # a MESSAGE as alice goes through
        r = c.message(alice, bob)
        assert r.status == 202, r.raw
        assert len(dep.scscf_rx(r.header("Call-ID"))) == 1

        # as bob: 403 at the eP-CSCF
        r = c.message(bob, alice)
        assert r.status == 403, r.raw
        assert_nothing_forwarded(dep, r.header("Call-ID"))

        # as alice, but asserting bob
        r = c.message(alice, bob,
                      extra_headers=["P-Preferred-Identity: <%s>" % bob])
        assert r.status == 403, r.raw
        assert_nothing_forwarded(dep, r.header("Call-ID"))

        # a REGISTER for bob, even with a valid token for bob
        r = c.register(bob, [bearer(mint(user="bob"))], expires=600,
                       call_id="bob-" + c.call_id)
        assert r.status == 403, r.raw
        assert_nothing_forwarded(dep, r.header("Call-ID"))

    # bob on his own connection is fine
    with dep.ws(ORIGIN_A) as c:
        r = c.register(bob, [bearer(mint(user="bob"))], expires=600)
        assert r.status == 200, r.raw


def test_udp_source_reused_by_another_client(dep):
    """UDP has no connection: a source address and port are reused (the
    ephemeral ports of other clients) and can be spoofed. A REGISTER from a
    bound source is decided by its token alone; the new binding replaces
    the old one, so the source then speaks for the new identity only."""
    alice = identity("a", "alice")[1]
    bob = identity("a", "bob")[1]
    with dep.udp() as c:
        r = c.register(alice, [bearer(mint(user="alice"))], expires=600)
        assert r.status == 200, r.raw
        port = c.sock.getsockname()[1]
    with dep.udp(bind_port=port) as c:
        r = c.register(bob, [bearer(mint(user="bob"))], expires=600)
        assert r.status == 200, r.raw
        r = c.message(alice, bob)
        assert r.status == 403, r.raw
        assert_nothing_forwarded(dep, r.header("Call-ID"))
        # (to a user not registered: the example S-CSCF answers 202; alice's
        # contact is this very source, where bob's client would get it)
        r = c.message(bob, identity("a", "carol")[1])
        assert r.status == 202, r.raw
        # and without a token it is still a 401, bound source or not
        r = c.register(bob, [], expires=600, call_id="again-" + c.call_id)
        assert r.status == 401, r.raw


@pytest.mark.parametrize("transport", ["ws", "udp"])
def test_deregistration_unbinds(dep, transport):
    """A de-registration (expiry 0) that the S-CSCF accepts removes the
    binding: the connection (or UDP source) speaks for no identity any
    more, and another identity may register on it."""
    alice = identity("a", "alice")[1]
    bob = identity("a", "bob")[1]
    with (dep.ws(ORIGIN_A) if transport == "ws" else dep.udp()) as c:
        r = c.register(alice, [bearer(mint(user="alice"))], expires=600)
        assert r.status == 200, r.raw
        r = c.message(alice, bob)
        assert r.status == 202, r.raw
        r = c.register(alice, [bearer(mint(user="alice"))], expires=0)
        assert r.status == 200, r.raw
        r = c.message(alice, bob)
        assert r.status == 403, r.raw
        assert_nothing_forwarded(dep, r.header("Call-ID"))
        # no longer bound to alice: bob may register here
        r = c.register(bob, [bearer(mint(user="bob"))], expires=600,
                       call_id="bob-" + c.call_id)
        assert r.status == 200, r.raw
        r = c.message(bob, alice)
        assert r.status == 202, r.raw


def test_unregistered_connection_cannot_send(dep):
    with dep.ws(ORIGIN_A) as c:
        r = c.message(identity()[1], identity("a", "bob")[1])
    assert r.status == 403, r.raw
    assert_nothing_forwarded(dep, r.header("Call-ID"))


# -- the S-CSCF side -------------------------------------------------------

TNA = ('Digest username="alice@socialnet.ims.example.net", '
       'realm="ims.example.net", uri="sip:ims.example.net", nonce="", '
       'response="", integrity-protected=auth-done')


def _scscf_register(dep, host, auth_values):
    from sipclient import UdpClient
    with UdpClient(host, dep.scscf_port) as c:
        return c.register(identity()[1], auth_values, expires=600)


def test_scscf_accepts_tna_only_from_trusted_node(dep):
    # from 127.0.0.1 (a trusted node, like the eP-CSCF): accepted
    r = _scscf_register(dep, "127.0.0.1", [TNA])
    assert r.status == 200, (r.raw, dep.logs())
    # the same header from ::1 (not a trusted node): 403
    r = _scscf_register(dep, "::1", [TNA])
    assert r.status == 403, r.raw
    assert "untrusted_source" in r.reason, r.reason
    # no auth-done, or no Authorization at all: 403
    r = _scscf_register(dep, "127.0.0.1",
                        [TNA.replace("auth-done", "tls-pending")])
    assert r.status == 403, r.raw
    r = _scscf_register(dep, "127.0.0.1", [])
    assert r.status == 403, r.raw
    r = _scscf_register(dep, "127.0.0.1", [bearer(mint())])
    assert r.status == 403, r.raw


def test_scscf_authorization_entity_checked(dep):
    ok = TNA + ', authorization-entity="%s"' % ISSUER_A
    assert _scscf_register(dep, "127.0.0.1", [ok]).status == 200
    bad = TNA + ', authorization-entity="https://evil.example.org"'
    r = _scscf_register(dep, "127.0.0.1", [bad])
    assert r.status == 403, r.raw
    assert "entity_not_allowed" in r.reason, r.reason
    # an authorization entity barred at the S-CSCF (its own RPC)
    res = dep.scscf.rpc("wic_tna.bar", ISSUER_A)
    assert res.returncode == 0, res.stdout
    r = _eventually(lambda: _scscf_register(dep, "127.0.0.1", [ok]),
                    lambda r: r.status == 403)
    assert r.status == 403, r.raw
    res = dep.scscf.rpc("wic_tna.unbar", ISSUER_A)
    assert res.returncode == 0, res.stdout
    assert _scscf_register(dep, "127.0.0.1", [ok]).status == 200


# -- start-up --------------------------------------------------------------

@pytest.mark.parametrize("mode", ["native", "python"])
def test_broken_config_stops_startup(workdir, mode):
    """mod_init test-loads the configuration: a broken one is a clear error
    at start, not a worker that rejects everything."""
    from harness import Deployment
    d = Deployment(workdir, mode=mode)
    d.config.write_text(d.config.read_text().replace(
        'audience = "ims.example.net"', "audience = 42"))
    with pytest.raises(RuntimeError) as e:
        d.start()
    d.stop()
    assert "exited" in str(e.value), e.value
    log = d.ep.log()
    assert str(d.config) in log, log[-3000:]
    assert "audience" in log, log[-3000:]


def test_native_module_forks_one_refresher_process(dep):
    """The module's background work runs in its own process (never in a SIP
    worker), and there is exactly one of it."""
    if dep.mode != "native":
        pytest.skip("the Python glue has no process of its own")
    r = dep.ep.rpc("core.psx")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("wic_tna refresher") == 1, r.stdout

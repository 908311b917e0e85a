"""The Python glue's ctypes binding on its own (outside Kamailio): every
entry point it wraps, against the real library."""

import json
import sys

import pytest

from harness import EXAMPLE, ISSUER_A, ISSUER_B, LIBRARY, write_config
from tokens import identity, mint

sys.path.insert(0, str(EXAMPLE / "python"))

import wic_tna_glue as glue  # noqa: E402

TNA = ('Digest username="alice@socialnet.ims.example.net", '
       'realm="ims.example.net", uri="sip:ims.example.net", nonce="", '
       'response="", integrity-protected=auth-done')


@pytest.fixture
def lib():
    return glue.Library(str(LIBRARY))


@pytest.fixture
def ctx(lib, workdir):
    c = lib.context(write_config(workdir / "wic-tna.toml",
                                 state_file=workdir / "state"))
    yield c
    c.free()


def test_verify_accept_and_reject(ctx):
    impi, impu = identity()
    r = ctx.verify("Bearer " + mint(lifetime=300), impu, 3600)
    assert r.accepted and r.status == 200 and r.reason == "ok"
    assert r.impi == impi and r.impus == [impu] and r.issuer == ISSUER_A
    assert r.tna.startswith('Digest username="%s"' % impi)
    assert r.challenge == ""
    assert 250 <= r.granted_expires <= 300

    r = ctx.verify("Bearer " + mint(iat_offset=-900, exp_offset=-600), impu)
    assert not r.accepted and r.status == 401 and r.reason == "expired"
    assert 'error="invalid_token"' in r.challenge and r.tna == ""

    # no Authorization header at all: "no token", 401 without error code
    r = ctx.verify(None, impu)
    assert r.status == 401 and r.reason == "missing_token", r.as_dict()
    assert r.challenge.startswith("Bearer ") and "error=" not in r.challenge


def test_origin_bar_unbar_stats(ctx):
    assert ctx.origin_allowed("https://webrtc.socialnet.example")
    assert not ctx.origin_allowed("https://evil.example.org")
    ctx.set_barred(ISSUER_A, True)
    assert not ctx.origin_allowed("https://webrtc.socialnet.example")
    r = ctx.verify("Bearer " + mint(), identity()[1])
    assert r.status == 403 and r.reason == "issuer_barred"
    with pytest.raises(glue.WicTnaError) as e:
        ctx.set_barred("https://nobody.example", True)
    assert e.value.status == glue.STATUS_NOT_FOUND
    ctx.set_barred(ISSUER_A, False)
    assert ctx.verify("Bearer " + mint(), identity()[1]).accepted
    stats = json.loads(ctx.stats_json())
    assert stats["outcomes"][ISSUER_A]["issuer_barred"] == 1, stats


def test_reload_refused_keeps_old_config(ctx):
    path = ctx.config_path
    good = path.read_text()
    path.write_text(good + "\n[[issuer]\n")
    with pytest.raises(glue.WicTnaError) as e:
        ctx.reload()
    assert e.value.status == glue.STATUS_CONFIG_ERROR
    assert str(path) in e.value.message
    assert ctx.verify("Bearer " + mint(issuer="b", user="dave"),
                      identity("b", "dave")[1]).accepted
    path.write_text(good)
    ctx.reload()


def test_scscf_check(ctx):
    r = ctx.scscf_check(TNA, "127.0.0.1")
    assert r.accepted and r.impi == "alice@socialnet.ims.example.net"
    r = ctx.scscf_check(TNA, "::1")
    assert not r.accepted and r.status == 403
    r = ctx.scscf_check(TNA + ', authorization-entity="%s"' % ISSUER_B,
                        "127.0.0.1", ISSUER_A)
    assert not r.accepted and r.status == 403


def test_broken_config_is_an_error(lib, workdir):
    bad = workdir / "bad.toml"
    bad.write_text("home_realm = 42\n")
    with pytest.raises(glue.WicTnaError) as e:
        lib.context(bad)
    assert e.value.status == glue.STATUS_CONFIG_ERROR
    assert str(bad) in e.value.message


def test_log_callback(lib, workdir):
    seen = []
    lib.set_log_callback(lambda level, text: seen.append((level, text)))
    try:
        # the example's issuer B JWKS has a key meant for encryption, which
        # the library skips and reports at INFO (normal in a JWKS, not a
        # warning in every worker)
        lib.context(write_config(workdir / "w.toml")).free()
    finally:
        lib.set_log_callback(None)
    assert any(level == 3 and "skipped" in text for level, text in seen), seen
    assert not any(level <= 2 for level, _ in seen), seen

"""End to end: the OpenSIPS eP-CSCF (opensips-example/opensips.cfg, native
module) as a P-CSCF, the cases of tests/e2e/test_pcscf.py that its own
modules allow: requests of a registered WIC asserted by the proxy and sent
along the Service-Route; requests of an unregistered connection refused;
requests from the core along the Path to the WIC's own connection; a
dialog's requests both ways along the Record-Route. Every case asserts what
reached the S-CSCF (logged whole by scscf.cfg) or the WIC, not only the
reply."""

import re
import time

import pytest

from harness import ORIGIN_A
from tokens import identity, mint

from test_pcscf import (SPOOFS, _wait_response, bearer,  # noqa: E402
                        headers_of)


def client(dep, transport):
    if transport == "udp":
        return dep.udp()
    if transport == "tcp":
        return dep.tcp()
    if transport == "wss":
        return dep.wss(ORIGIN_A)
    return dep.ws(ORIGIN_A)


def forwarded(dep, call_id, wait=0.3):
    time.sleep(wait)
    return dep.scscf_msgs(call_id)


def _register(c, user="alice"):
    r = c.register(identity("a", user)[1], [bearer(mint(user=user))],
                   expires=600)
    assert r.status == 200, r.raw
    return r


# -- identity policing -------------------------------------------------------

@pytest.mark.parametrize("transport", ["udp", "tcp", "ws"])
@pytest.mark.parametrize("method", ["MESSAGE", "INVITE"])
@pytest.mark.parametrize("spoof", sorted(SPOOFS))
def test_only_the_proxy_asserts_an_identity(native, transport, method, spoof):
    alice = identity("a", "alice")[1]
    carol = identity("a", "carol")[1]
    with client(native, transport) as c:
        _register(c)
        r = c.request(method, carol, alice, carol, SPOOFS[spoof],
                      body="x", call_id="spoof-%s-%s" % (spoof, c.call_id),
                      cseq=1)
        assert r.status == 202, (r.raw, native.logs())
    msgs = forwarded(native, r.header("Call-ID"))
    assert len(msgs) == 1, native.logs()
    m = msgs[0]
    assert headers_of(m, "P-Asserted-Identity") == ["<%s>" % alice], m
    for h in ("Authorization", "Proxy-Authorization", "P-Charging-Vector",
              "P-Served-User", "P-Preferred-Identity"):
        assert headers_of(m, h) == [], (h, m)
    # along the Service-Route of alice's registration
    assert headers_of(m, "Route")[:1] == [
        "<sip:orig@127.0.0.1:%s;lr>" % native.scscf_port], m
    if method == "INVITE":
        # the dialog's requests come back through the proxy
        assert any("wicdu=" in v for v in headers_of(m, "Record-Route")), m


@pytest.mark.parametrize("transport", ["udp", "tcp", "ws"])
@pytest.mark.parametrize("ppi", [
    ["P-Preferred-Identity: <sip:alice@socialnet.ims.example.net>, "
     "<sip:bob@socialnet.ims.example.net>"],
    ["P-Preferred-Identity: <sip:alice@socialnet.ims.example.net>",
     "P-Preferred-Identity: <sip:bob@socialnet.ims.example.net>"],
    ["P-Preferred-Identity: <sip:Alice@socialnet.ims.example.net>"],
    ["P-Preferred-Identity: <sip:bob@socialnet.ims.example.net>"],
    ["P-Preferred-Identity: <sip:alice@socialnet.ims.example.net>, <x>"],
    ["P-Preferred-Identity: \"a"],
], ids=["second-value", "second-header", "user-case", "other",
        "second-unreadable", "unreadable"])
def test_preferred_identity_of_another_user_is_403(native, transport, ppi):
    alice = identity("a", "alice")[1]
    carol = identity("a", "carol")[1]
    with client(native, transport) as c:
        _register(c)
        r = c.message(alice, carol, extra_headers=ppi)
    assert r.status == 403, r.raw
    assert forwarded(native, r.header("Call-ID")) == []


def test_preferred_identity_registered_is_asserted(native):
    alice = identity("a", "alice")[1]
    carol = identity("a", "carol")[1]
    with native.udp() as c:
        _register(c)
        r = c.message(alice, carol, extra_headers=[
            "P-Preferred-Identity: \"Alice\" "
            "<SIP:alice@SocialNet.ims.example.net>"])
    assert r.status == 202, (r.raw, native.logs())
    (m,) = forwarded(native, r.header("Call-ID"))
    assert headers_of(m, "P-Asserted-Identity") == ["<%s>" % alice], m
    assert headers_of(m, "P-Preferred-Identity") == [], m


def test_from_of_another_user_is_403(native):
    alice = identity("a", "alice")[1]
    bob = identity("a", "bob")[1]
    carol = identity("a", "carol")[1]
    with native.tcp() as c:
        _register(c)
        r = c.message(bob, carol)
    assert r.status == 403, r.raw
    assert forwarded(native, r.header("Call-ID")) == []
    assert alice  # registered, yet speaks only for herself


@pytest.mark.parametrize("transport", ["udp", "tcp", "ws"])
@pytest.mark.parametrize("method", ["MESSAGE", "INVITE"])
def test_unregistered_connection_is_403(native, transport, method):
    """A connection that did not register is nobody, whatever it claims;
    another connection's registration does not count for it."""
    alice = identity("a", "alice")[1]
    carol = identity("a", "carol")[1]
    with client(native, transport) as registered, \
            client(native, transport) as c:
        _register(registered)
        r = c.request(method, carol, alice, carol,
                      ["P-Asserted-Identity: <%s>" % alice],
                      body="x", call_id="unreg-%s" % c.call_id, cseq=1)
    assert r.status == 403, r.raw
    assert forwarded(native, r.header("Call-ID")) == []


def test_deregistered_connection_is_403(native):
    alice = identity("a", "alice")[1]
    carol = identity("a", "carol")[1]
    with native.tcp() as c:
        _register(c)
        r = c.register(alice, [bearer(mint(user="alice"))], expires=0,
                       call_id="dereg-" + c.call_id)
        assert r.status == 200, r.raw
        r = c.message(alice, carol)
    assert r.status == 403, r.raw
    assert forwarded(native, r.header("Call-ID")) == []


# -- routing back to the WIC -------------------------------------------------

@pytest.mark.parametrize("transport", ["udp", "tcp", "ws", "wss"])
def test_message_reaches_the_wic_on_its_own_connection(native, transport):
    """bob's MESSAGE goes eP-CSCF -> S-CSCF (along the Service-Route) ->
    lookup(), along alice's Path -> eP-CSCF -> alice's own connection."""
    alice = identity("a", "alice")[1]
    bob = identity("a", "bob")[1]
    with client(native, transport) as a, native.udp() as b:
        r = _register(a)
        assert r.header("Service-Route"), r.raw
        _register(b, "bob")
        call_id = "to-alice-" + b.call_id
        b.send_raw("\r\n".join([
            "MESSAGE %s SIP/2.0" % alice,
            "Via: SIP/2.0/UDP %s;branch=z9hG4bK-m1;rport" % b.via_sent_by(),
            "Max-Forwards: 70", "From: <%s>;tag=b1" % bob, "To: <%s>" % alice,
            "Call-ID: %s" % call_id, "CSeq: 1 MESSAGE",
            "P-Asserted-Identity: <sip:mallory@socialnet.ims.example.net>",
            "Content-Type: text/plain", "Content-Length: 2", "", "hi"]))
        req = a.wait_request("MESSAGE", timeout=5)
        assert req is not None, native.logs()
        assert headers_of(req, "P-Asserted-Identity") == ["<%s>" % bob], req
        assert "Route:" not in req, req
        a.answer(req, 200)
        final = _wait_response(b, call_id, "MESSAGE")
        assert final is not None and final.status == 200, native.logs()
    # it went through the S-CSCF along the Service-Route
    (m,) = forwarded(native, call_id)
    assert "Route: <sip:orig@" in m, m


def test_core_request_not_along_our_path_is_404(native):
    """A request on the core side must follow our Path or Record-Route:
    one with no Route reaches no WIC."""
    with native.udp() as c:
        _register(c)
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        port = s.getsockname()[1]
        s.sendto("\r\n".join([
            "MESSAGE sip:alice@socialnet.ims.example.net SIP/2.0",
            "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-c1;rport" % port,
            "Max-Forwards: 70", "From: <sip:x@y>;tag=1",
            "To: <sip:alice@socialnet.ims.example.net>",
            "Call-ID: core-noroute", "CSeq: 1 MESSAGE",
            "Content-Length: 0", "", ""]).encode(),
            ("127.0.0.1", native.ep_core))
        data = s.recv(65535).decode()
    finally:
        s.close()
    assert data.startswith("SIP/2.0 404"), data


def _via(c, branch):
    proto = "UDP" if c.__class__.__name__.startswith("Udp") else (
        "TCP" if c.__class__.__name__.startswith("Tcp") else "WS")
    return "Via: SIP/2.0/%s %s;branch=z9hG4bK-%s;rport" % (
        proto, c.via_sent_by(), branch)


@pytest.mark.parametrize("caller", ["core", "wic"])
def test_dialog_both_ways_through_the_proxy(native, caller):
    """caller "core": bob (UDP) calls alice (WebSocket) along her Path;
    "wic": alice calls bob along her Service-Route. The caller's ACK and
    the callee's BYE follow the dialog's route set through the S-CSCF and
    the proxy: one request of the dialog each way between the proxy's
    access side (alice's WebSocket) and the core."""
    alice = identity("a", "alice")[1]
    bob = identity("a", "bob")[1]
    with native.ws(ORIGIN_A) as a, native.udp() as b:
        _register(a)
        _register(b, "bob")
        uac, uas = (b, a) if caller == "core" else (a, b)
        frm, to_uri = (bob, alice) if caller == "core" else (alice, bob)
        call_id = "call-%s-%s" % (caller, b.call_id)
        uac.send_raw("\r\n".join([
            "INVITE %s SIP/2.0" % to_uri, _via(uac, "inv1"),
            "Max-Forwards: 70", "From: <%s>;tag=uactag" % frm,
            "To: <%s>" % to_uri, "Call-ID: %s" % call_id, "CSeq: 1 INVITE",
            "Contact: <%s>" % uac.contact_uri("caller"),
            "Content-Length: 0", "", ""]))
        inv = uas.wait_request("INVITE", timeout=5)
        assert inv is not None, native.logs()
        assert headers_of(inv, "P-Asserted-Identity") == ["<%s>" % frm], inv
        uas.answer(inv, 200, contact_user="callee")
        ok = _wait_response(uac, call_id, "INVITE")
        assert ok is not None and ok.status == 200, native.logs()
        to = ok.header("To")
        rr = [v.strip() for h in ok.header_all("Record-Route")
              for v in h.split(",")]
        assert any("wicdu=" in v for v in rr), ok.raw
        # the caller's ACK: its route set is the Record-Route reversed
        target = re.search(r"<([^>]+)>", ok.header("Contact")).group(1)
        uac.send_raw("\r\n".join(
            ["ACK %s SIP/2.0" % target, _via(uac, "ack1")]
            + ["Route: %s" % r for r in reversed(rr)]
            + ["Max-Forwards: 70", "From: <%s>;tag=uactag" % frm,
               "To: %s" % to, "Call-ID: %s" % call_id, "CSeq: 1 ACK",
               "Content-Length: 0", "", ""]))
        ack = uas.wait_request("ACK", timeout=5)
        assert ack is not None, native.logs()
        # the callee's BYE: its route set is the Record-Route as received
        caller_contact = re.search(
            r"<([^>]+)>", headers_of(inv, "Contact")[0]).group(1)
        inv_rr = [v.strip() for h in headers_of(inv, "Record-Route")
                  for v in h.split(",")]
        uas.send_raw("\r\n".join(
            ["BYE %s SIP/2.0" % caller_contact, _via(uas, "bye1")]
            + ["Route: %s" % r for r in inv_rr]
            + ["Max-Forwards: 70", "From: %s" % to,
               "To: <%s>;tag=uactag" % frm, "Call-ID: %s" % call_id,
               "CSeq: 1 BYE", "Content-Length: 0", "", ""]))
        bye = uac.wait_request("BYE", timeout=5)
        assert bye is not None, native.logs()
        uac.answer(bye, 200)
        done = _wait_response(uas, call_id, "BYE")
        assert done is not None and done.status == 200, native.logs()
    # every request of the dialog went through the S-CSCF
    methods = [m.split(" ", 1)[0] for m in native.scscf_msgs(call_id)]
    assert sorted(methods) == ["ACK", "BYE", "INVITE"], (methods,
                                                         native.logs())


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_register_of_another_impu_on_a_bound_connection_is_403(
        native, transport):
    """A connection registered as alice cannot register bob too, even with
    bob's valid token: it speaks for alice only."""
    bob = identity("a", "bob")[1]
    with client(native, transport) as c:
        _register(c)
        r = c.register(bob, [bearer(mint(user="bob"))], expires=600,
                       call_id="second-impu-" + c.call_id)
    assert r.status == 403, r.raw
    assert forwarded(native, r.header("Call-ID")) == []


def test_preferred_identity_among_several_is_asserted(native):
    """A token with two IMPUs: a P-Preferred-Identity naming the second one
    (display name, other case in scheme and host) is what the proxy
    asserts; without one, the registration's To."""
    alice = identity("a", "alice")[1]
    work = alice.replace("sip:alice@", "sip:alice.work@")
    carol = identity("a", "carol")[1]
    with native.tcp() as c:
        r = c.register(alice, [bearer(mint(user="alice",
                                           impus=[alice, work]))],
                       expires=600)
        assert r.status == 200, r.raw
        r1 = c.message(alice, carol, extra_headers=[
            "P-Preferred-Identity: \"Alice\" <SIP:%s>"
            % work[4:].replace("socialnet", "SocialNet")])
        r2 = c.message(alice, carol)
    assert r1.status == 202 and r2.status == 202, (r1.raw, r2.raw)
    (m1,) = forwarded(native, r1.header("Call-ID"))
    assert headers_of(m1, "P-Asserted-Identity") == ["<%s>" % work], m1
    (m2,) = forwarded(native, r2.header("Call-ID"), wait=0)
    assert headers_of(m2, "P-Asserted-Identity") == ["<%s>" % alice], m2

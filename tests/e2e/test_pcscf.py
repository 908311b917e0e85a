"""End to end: the eP-CSCF as a P-CSCF (issue 15). Real Kamailio eP-CSCF
(native module and Python glue) and S-CSCF, real clients over UDP, TCP,
WebSocket and secure WebSocket; every case asserts what reached the S-CSCF
(logged whole by scscf.cfg) or the WIC, not only the reply."""

import re
import socket
import time

import pytest

from harness import ISSUER_A, ORIGIN_A, ORIGIN_B
from tokens import identity, mint, tamper

LIFETIME = 300


def bearer(token):
    return "Bearer " + token


def headers_of(msg, name):
    """Values of header `name` (and its compact form) in a raw message."""
    compact = {"contact": "m", "from": "f", "to": "t", "via": "v"}
    names = {name.lower(), compact.get(name.lower(), name.lower())}
    out = []
    head = msg.split("\r\n\r\n", 1)[0]
    for line in head.split("\r\n")[1:]:
        n, _, v = line.partition(":")
        if n.strip().lower() in names:
            out.append(v.strip())
    return out


def expiries(msg):
    """Every expiry a registrar could read in a REGISTER: each contact's
    expires parameter in any spelling, and the Expires header (a value
    that is not a plain number is returned as None)."""
    out = []
    for v in headers_of(msg, "Contact"):
        for m in re.finditer(r";\s*expires\s*=\s*\"?([^;,\"\s>]*)", v, re.I):
            out.append(int(m.group(1)) if m.group(1).isdigit() else None)
    for v in headers_of(msg, "Expires"):
        out.append(int(v) if v.isdigit() else None)
    return out


def forwarded(dep, call_id, wait=0.3):
    time.sleep(wait)
    return dep.scscf_msgs(call_id)


def client(dep, transport, origin=ORIGIN_A):
    if transport == "udp":
        return dep.udp()
    if transport == "tcp":
        return dep.tcp()
    if transport == "wss":
        return dep.wss(origin)
    return dep.ws(origin)


# -- the expiry cap ----------------------------------------------------------

SPELLINGS = {
    "space-before-equals": ["<{uri}>;expires =99999"],
    "space-after-semicolon": ["<{uri}>; expires=99999"],
    "uppercase": ["<{uri}>;EXPIRES=99999"],
    "quoted": ['<{uri}>;expires="99999"'],
    "two-contacts-one-header": ["<{uri}>;expires=99999, <{uri}x>;expires=99999"],
    "two-contact-headers": ["<{uri}>;expires=99999", "<{uri}x>;expires=99999"],
    "past-2^32": ["<{uri}>;expires=4294967396"],
    "past-2^64": ["<{uri}>;expires=184467440737095516160"],
    "no-param-no-expires": ["<{uri}>"],
    "param-and-header": ["<{uri}>;expires=99999"],
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_no_expiry_above_the_grant_reaches_the_scscf(dep, spelling):
    alice = identity()[1]
    contacts = SPELLINGS[spelling]
    extra = ["Expires: 99999"] if spelling == "param-and-header" else []
    with dep.udp() as c:
        r = c.register(alice, [bearer(mint(lifetime=LIFETIME))],
                       contacts=contacts, extra_headers=extra)
    # refused (400, the Python glue's stricter rule) or capped: never more
    assert r.status in (200, 400), r.raw
    msgs = forwarded(dep, r.header("Call-ID"))
    if r.status == 400:
        assert msgs == [], msgs
        return
    assert len(msgs) == 1, dep.logs()
    ex = expiries(msgs[0])
    assert ex, msgs[0]
    assert all(e is not None and e <= LIFETIME for e in ex), (ex, msgs[0])
    dump = dep.ul_dump()
    for e in re.findall(r"Expires: (\d+)", dump):
        assert 0 < int(e) <= LIFETIME, dump


@pytest.mark.parametrize("contact", ["<{uri}>;expires=abc", "<{uri}>;expires",
                                     "<{uri}>;expires=1;expires=99999"])
def test_unreadable_expiry_is_400(dep, contact):
    with dep.udp() as c:
        r = c.register(identity()[1], [bearer(mint())], contacts=[contact])
    assert r.status == 400, r.raw
    assert forwarded(dep, r.header("Call-ID")) == []


def test_expires_header_not_a_number_is_400(dep):
    with dep.udp() as c:
        r = c.register(identity()[1], [bearer(mint())],
                       extra_headers=["Expires: 12x"])
    assert r.status == 400, r.raw
    assert forwarded(dep, r.header("Call-ID")) == []


def test_refresh_inside_the_leeway_is_401_expired(dep):
    """A refresh after exp but inside the leeway would have been granted 0 s
    and forwarded as a de-registration; the WIC must get a new token."""
    with dep.udp() as c:
        token = mint(iat_offset=-300, exp_offset=-5)
        r = c.register(identity()[1], [bearer(token)], expires=600)
    assert r.status == 401, r.raw
    assert "expired" in r.reason
    assert 'error="invalid_token"' in (r.header("WWW-Authenticate") or "")
    assert forwarded(dep, r.header("Call-ID")) == []


# -- identity policing -------------------------------------------------------

SPOOFS = {
    "pai": ["P-Asserted-Identity: <sip:bob@socialnet.ims.example.net>"],
    "client-tna": ['Authorization: Digest username="bob@socialnet.ims.example.net", '
                   'realm="ims.example.net", uri="sip:ims.example.net", nonce="", '
                   'response="", integrity-protected=auth-done'],
    "proxy-authorization": ["Proxy-Authorization: Bearer x"],
    "charging": ["P-Charging-Vector: icid-value=1", "P-Served-User: <sip:bob@x>"],
}


@pytest.mark.parametrize("transport", ["udp", "tcp", "ws"])
@pytest.mark.parametrize("method", ["MESSAGE", "INVITE"])
@pytest.mark.parametrize("spoof", sorted(SPOOFS))
def test_only_the_proxy_asserts_an_identity(dep, transport, method, spoof):
    alice = identity("a", "alice")[1]
    carol = identity("a", "carol")[1]
    with client(dep, transport) as c:
        r = c.register(alice, [bearer(mint(user="alice"))], expires=600)
        assert r.status == 200, r.raw
        r = c.request(method, carol, alice, carol, SPOOFS[spoof],
                      body="x", call_id="spoof-%s-%s" % (spoof, c.call_id),
                      cseq=1)
        assert r.status == 202, r.raw
    msgs = forwarded(dep, r.header("Call-ID"))
    assert len(msgs) == 1, dep.logs()
    m = msgs[0]
    assert headers_of(m, "P-Asserted-Identity") == ["<%s>" % alice], m
    for h in ("Authorization", "Proxy-Authorization", "P-Charging-Vector",
              "P-Served-User", "P-Preferred-Identity"):
        assert headers_of(m, h) == [], (h, m)


@pytest.mark.parametrize("transport", ["udp", "tcp", "ws"])
@pytest.mark.parametrize("ppi", [
    ["P-Preferred-Identity: <sip:alice@socialnet.ims.example.net>, "
     "<sip:bob@socialnet.ims.example.net>"],
    ["P-Preferred-Identity: <sip:alice@socialnet.ims.example.net>",
     "P-Preferred-Identity: <sip:bob@socialnet.ims.example.net>"],
    ["P-Preferred-Identity: <sip:Alice@socialnet.ims.example.net>"],
], ids=["second-value", "second-header", "user-case"])
def test_preferred_identity_of_another_user_is_403(dep, transport, ppi):
    alice = identity("a", "alice")[1]
    carol = identity("a", "carol")[1]
    with client(dep, transport) as c:
        r = c.register(alice, [bearer(mint(user="alice"))], expires=600)
        assert r.status == 200, r.raw
        r = c.message(alice, carol, extra_headers=ppi)
    assert r.status == 403, r.raw
    assert forwarded(dep, r.header("Call-ID")) == []


def test_preferred_identity_registered_is_asserted(dep):
    alice = identity("a", "alice")[1]
    carol = identity("a", "carol")[1]
    with dep.udp() as c:
        r = c.register(alice, [bearer(mint(user="alice"))], expires=600)
        assert r.status == 200, r.raw
        r = c.message(alice, carol, extra_headers=[
            "P-Preferred-Identity: \"Alice\" <SIP:alice@SocialNet.ims.example.net>"])
    assert r.status == 202, r.raw
    (m,) = forwarded(dep, r.header("Call-ID"))
    assert headers_of(m, "P-Asserted-Identity") == ["<%s>" % alice], m
    assert headers_of(m, "P-Preferred-Identity") == [], m


def test_register_headers_of_the_core_are_removed(dep):
    alice = identity()[1]
    bad = ["Path: <sip:evil.example;lr>", "Service-Route: <sip:evil.example;lr>",
           "P-Asserted-Identity: <sip:bob@socialnet.ims.example.net>",
           "P-Visited-Network-ID: evil", "P-Charging-Vector: icid-value=1",
           "P-Access-Network-Info: 3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=1",
           "Security-Verify: ipsec-3gpp; q=0.1", "Route: <sip:evil.example;lr>"]
    with dep.tcp() as c:
        r = c.register(alice, [bearer(mint())], expires=600, extra_headers=bad)
    assert r.status == 200, r.raw
    (m,) = forwarded(dep, r.header("Call-ID"))
    assert "evil" not in m, m
    for h in ("P-Asserted-Identity", "P-Visited-Network-ID", "P-Charging-Vector",
              "P-Access-Network-Info", "Security-Verify", "Service-Route",
              "Route"):
        assert headers_of(m, h) == [], (h, m)
    paths = headers_of(m, "Path")
    assert len(paths) == 1 and ";lr" in paths[0] and "received=" in paths[0], m
    assert any("path" in v for v in headers_of(m, "Supported")), m


# -- routing back to the WIC -------------------------------------------------

@pytest.mark.parametrize("transport", ["udp", "tcp", "ws", "wss"])
def test_message_reaches_the_wic_on_its_own_connection(dep, transport):
    """bob's MESSAGE goes eP-CSCF -> S-CSCF (along the Service-Route) ->
    lookup(), along alice's Path -> eP-CSCF -> alice's own connection."""
    alice = identity("a", "alice")[1]
    bob = identity("a", "bob")[1]
    with client(dep, transport) as a, dep.udp() as b:
        r = a.register(alice, [bearer(mint(user="alice"))], expires=600)
        assert r.status == 200, r.raw
        assert r.header("Service-Route"), r.raw
        r = b.register(bob, [bearer(mint(user="bob"))], expires=600)
        assert r.status == 200, r.raw
        call_id = "to-alice-" + b.call_id
        b.send_raw("\r\n".join([
            "MESSAGE %s SIP/2.0" % alice,
            "Via: SIP/2.0/UDP %s;branch=z9hG4bK-m1;rport" % b.via_sent_by(),
            "Max-Forwards: 70", "From: <%s>;tag=b1" % bob, "To: <%s>" % alice,
            "Call-ID: %s" % call_id, "CSeq: 1 MESSAGE",
            "Content-Type: text/plain", "Content-Length: 2", "", "hi"]))
        req = a.wait_request("MESSAGE", timeout=5)
        assert req is not None, dep.logs()
        assert "P-Asserted-Identity: <%s>" % bob in req, req
        a.answer(req, 200)
        final = None
        deadline = time.monotonic() + 5
        while final is None and time.monotonic() < deadline:
            raw = b.recv_raw(0.5)
            if raw and raw.startswith("SIP/2.0 200") and call_id in raw:
                final = raw
        assert final is not None, dep.logs()
    # it went through the S-CSCF along the Service-Route
    (m,) = forwarded(dep, call_id)
    assert "Route: <sip:orig@" in m, m


def _wait_response(c, call_id, method, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = c.recv_raw(0.5)
        if raw and raw.startswith("SIP/2.0 ") and call_id in raw \
                and (" %s\r\n" % method) in raw.split("CSeq:", 1)[1].split("\r\n", 1)[0] + "\r\n":
            from sipclient import Response
            r = Response(raw)
            if r.status >= 200:
                return r
        elif raw and not raw.startswith("SIP/2.0 "):
            c.pending.append(raw)
    return None


def test_dialog_reaches_the_wic_on_its_own_connection(dep):
    """bob (UDP) calls alice (WebSocket): the INVITE goes along alice's
    Path, her 200 OK's contact (a .invalid host) gets her connection's
    alias, and bob's in-dialog BYE follows the Record-Route set through
    the S-CSCF back to alice's WebSocket."""
    alice = identity("a", "alice")[1]
    bob = identity("a", "bob")[1]
    with dep.ws(ORIGIN_A) as a, dep.udp() as b:
        assert a.register(alice, [bearer(mint(user="alice"))], expires=600).status == 200
        assert b.register(bob, [bearer(mint(user="bob"))], expires=600).status == 200
        call_id = "call-" + b.call_id
        via = "Via: SIP/2.0/UDP %s;branch=z9hG4bK-%s;rport"
        base = ["Max-Forwards: 70", "From: <%s>;tag=bobtag" % bob,
                "Call-ID: %s" % call_id]
        b.send_raw("\r\n".join(
            ["INVITE %s SIP/2.0" % alice, via % (b.via_sent_by(), "inv1")] + base
            + ["To: <%s>" % alice, "CSeq: 1 INVITE",
               "Contact: <%s>" % b.contact_uri("bob"), "Content-Length: 0", "", ""]))
        inv = a.wait_request("INVITE", timeout=5)
        assert inv is not None, dep.logs()
        assert "P-Asserted-Identity: <%s>" % bob in inv, inv
        a.answer(inv, 200, contact_user="alice")
        ok = _wait_response(b, call_id, "INVITE")
        assert ok is not None and ok.status == 200, dep.logs()
        to = ok.header("To")
        target = re.search(r"<([^>]+)>", ok.header("Contact")).group(1)
        assert "alias=" in target, ok.raw  # alice's connection, for the core
        rr = [v.strip() for h in ok.header_all("Record-Route") for v in h.split(",")]
        routes = ["Route: %s" % r for r in reversed(rr)]
        b.send_raw("\r\n".join(
            ["ACK %s SIP/2.0" % target, via % (b.via_sent_by(), "ack1")] + routes + base
            + ["To: %s" % to, "CSeq: 1 ACK", "Content-Length: 0", "", ""]))
        b.send_raw("\r\n".join(
            ["BYE %s SIP/2.0" % target, via % (b.via_sent_by(), "bye1")] + routes + base
            + ["To: %s" % to, "CSeq: 2 BYE", "Content-Length: 0", "", ""]))
        bye = a.wait_request("BYE", timeout=5)
        assert bye is not None, dep.logs()
        a.answer(bye, 200)
        done = _wait_response(b, call_id, "BYE")
        assert done is not None and done.status == 200, dep.logs()


# -- WebSocket: WSS, Origin, closing -----------------------------------------

def test_wss_handshake_and_register(dep):
    with dep.wss(ORIGIN_A) as c:
        r = c.register(identity()[1], [bearer(mint())], expires=600)
    assert r.status == 200, r.raw
    assert len(forwarded(dep, r.header("Call-ID"))) == 1


@pytest.mark.parametrize("transport", ["ws", "wss"])
def test_origin_of_another_issuer_is_refused(dep, transport):
    """A page of issuer B's Origin registers with issuer A's token: 403."""
    with client(dep, transport, origin=ORIGIN_B) as c:
        r = c.register(identity("a")[1], [bearer(mint(issuer="a"))], expires=600)
        assert r.status == 403, r.raw
        assert "origin_not_allowed" in r.reason, r.raw
        assert c.closed_by_peer(), "connection left open"
    assert forwarded(dep, r.header("Call-ID")) == []


@pytest.mark.parametrize("transport", ["ws", "tcp"])
def test_refused_token_closes_the_connection(dep, transport):
    with client(dep, transport) as c:
        r = c.register(identity()[1], [bearer(tamper(mint()))], expires=600)
        assert r.status == 401, r.raw
        assert c.closed_by_peer(), "connection left open after a refusal"


def test_no_token_challenge_keeps_the_connection(dep):
    with dep.ws(ORIGIN_A) as c:
        r = c.register(identity()[1], [], expires=600)
        assert r.status == 401, r.raw
        assert not c.closed_by_peer(0.5)
        r = c.register(identity()[1], [bearer(mint())], expires=600)
        assert r.status == 200, r.raw


def test_403_refresh_ends_registration_and_closes(dep):
    with dep.ws(ORIGIN_A) as c:
        r = c.register(identity()[1], [bearer(mint())], expires=600)
        assert r.status == 200, r.raw
        assert "AoR: alice" in dep.ul_dump()
        assert dep.bar(ISSUER_A).returncode == 0
        r = c.register(identity()[1], [bearer(mint())], expires=600)
        assert r.status == 403, r.raw
        assert c.closed_by_peer(), "connection left open after a 403"
    _wait_gone(dep, "alice")


def _wait_gone(dep, user, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "AoR: %s" % user not in dep.ul_dump():
            return
        time.sleep(0.1)
    raise AssertionError("contact of %s still registered:\n%s\n%s"
                         % (user, dep.ul_dump(), dep.logs()))


# -- de-registration and lost connections ------------------------------------

def test_deregistration_without_token_on_its_connection(dep):
    alice = identity()[1]
    with dep.ws(ORIGIN_A) as c:
        r = c.register(alice, [bearer(mint())], expires=600)
        assert r.status == 200, r.raw
        assert "AoR: alice" in dep.ul_dump()
        r = c.register(alice, [], expires=0, call_id="dereg-" + c.call_id)
        assert r.status == 200, r.raw
        (m,) = forwarded(dep, r.header("Call-ID"))
        (auth,) = headers_of(m, "Authorization")
        assert 'username="alice@socialnet.ims.example.net"' in auth, m
        assert "integrity-protected=auth-done" in auth, m
        _wait_gone(dep, "alice")


@pytest.mark.parametrize("where", ["other-connection", "udp"])
def test_deregistration_without_token_elsewhere_is_401(dep, where):
    alice = identity()[1]
    with dep.ws(ORIGIN_A) as c:
        r = c.register(alice, [bearer(mint())], expires=600)
        assert r.status == 200, r.raw
        with (dep.ws(ORIGIN_A) if where != "udp" else dep.udp()) as o:
            r = o.register(alice, [], expires=0)
        assert r.status == 401, r.raw
        assert forwarded(dep, r.header("Call-ID")) == []
        assert "AoR: alice" in dep.ul_dump()


@pytest.mark.parametrize("transport", ["ws", "tcp"])
def test_closed_connection_ends_its_registration(dep, transport):
    with client(dep, transport) as c:
        r = c.register(identity()[1], [bearer(mint())], expires=600)
        assert r.status == 200, r.raw
        assert "AoR: alice" in dep.ul_dump()
    _wait_gone(dep, "alice")


def test_hostile_contact_cannot_forge_the_proxys_deregistration(dep):
    """What the proxy keeps of a registration for its own de-REGISTER
    (contact, R-URI) comes from the client: a contact written to look like
    a field separator and a TNA header for another user must not become
    the Authorization the proxy sends when the connection closes."""
    forged = ('Digest username="bob@socialnet.ims.example.net", '
              'integrity-protected=auth-done')
    contact = '<sip:x|%s|y@{host};transport=ws>' % forged.replace('"', "%22")
    contact = contact.replace(" ", "%20").replace(",", "%2C")
    with dep.ws(ORIGIN_A) as c:
        r = c.register(identity()[1], [bearer(mint())], expires=600,
                       contacts=[contact.replace("{host}", c.host)])
        if r.status != 200:
            # refused outright (the proxy cannot read the contact's URI):
            # nothing forwarded, nothing kept
            assert r.status == 400, r.raw
            assert forwarded(dep, r.header("Call-ID")) == []
            return
    _wait_gone(dep, "alice")
    auths = []
    for line in dep.scscf.log().splitlines():
        if "SCSCF-RX REGISTER" in line:
            m = re.search(r"auth=\[(.*)\]", line)
            auths.append(m.group(1) if m else "")
    assert len(auths) >= 2, dep.logs()  # the REGISTER and the proxy's own
    for a in auths:
        assert a.startswith('Digest username="alice@socialnet.ims.example.net"'), auths


# -- operations --------------------------------------------------------------

def test_burst_of_1000_registers_all_answered(dep):
    """1,000 REGISTERs sent within about a second are all answered."""
    token = mint(lifetime=LIFETIME)
    alice = identity()[1]
    n = 1000
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    t0 = time.monotonic()
    for i in range(n):
        s.sendto(("\r\n".join([
            "REGISTER sip:ims.example.net SIP/2.0",
            "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-burst%d;rport" % (port, i),
            "Max-Forwards: 70", "From: <%s>;tag=t%d" % (alice, i),
            "To: <%s>" % alice, "Call-ID: burst-%d@wic.test" % i,
            "CSeq: 1 REGISTER",
            "Contact: <sip:alice@127.0.0.1:%d>;expires=600" % port,
            "Authorization: Bearer " + token, "Content-Length: 0", "", ""])).encode(),
            ("127.0.0.1", dep.ep_sip))
        if i % 100 == 99:
            # about a second for the 1,000, not a flood the kernel drops
            time.sleep(max(0, t0 + (i + 1) / n - time.monotonic()))
    answered = set()
    s.settimeout(1.0)
    deadline = time.monotonic() + 30
    while len(answered) < n and time.monotonic() < deadline:
        try:
            data = s.recv(65535).decode(errors="replace")
        except socket.timeout:
            continue
        m = re.search(r"Call-ID: burst-(\d+)@", data)
        if m and re.match(r"SIP/2.0 [2-6]\d\d ", data):
            answered.add(int(m.group(1)))
    s.close()
    assert len(answered) == n, "%d of %d answered\n%s" % (len(answered), n,
                                                        dep.logs())


def test_barring_survives_a_restart(dep):
    assert dep.bar(ISSUER_A).returncode == 0
    dep.ep.stop()
    dep.ep.start()
    with dep.udp() as c:
        r = c.register(identity()[1], [bearer(mint())], expires=600)
    assert r.status == 403, r.raw
    assert "issuer_barred" in r.reason
    assert forwarded(dep, r.header("Call-ID")) == []

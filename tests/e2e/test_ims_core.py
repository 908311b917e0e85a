"""The IMS S-CSCF (kamailio-example/ims/scscf.cfg: Kamailio's IMS modules +
wic_tna) and its HSS (tests/ims/hss.py), tested straight, without an
eP-CSCF: the tests play the eP-CSCF (trusted, 127.0.0.1) or an attacker
(::1, not trusted) with sipclient's UdpClient, and assert what the HSS was
asked (Cx requests logged by the fixture), what the registrar holds
(ulscscf.showimpu) and what the S-CSCF logged or sent on.

    cd tests/e2e && python3 -m pytest -q -p no:cacheprovider test_ims_core.py
"""

import contextlib
import re
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from harness import ISSUER_A, ISSUER_B
from ims import (ImsCore, SAT_REGISTRATION, SAT_RE_REGISTRATION,
                 SAT_USER_DEREGISTRATION, ims_core_or_skip)
from sipclient import UdpClient

SOCIAL = "socialnet.ims.example.net"
GAME = "gamenet.ims.example.net"

ALICE = ("alice@" + SOCIAL, "sip:alice@" + SOCIAL)
BOB = ("bob@" + SOCIAL, "sip:bob@" + SOCIAL)
CAROL = ("u-7731@" + SOCIAL, "sip:carol@" + SOCIAL)   # IMPI not user@domain
DAVE = ("dave@" + GAME, "sip:dave@" + GAME)


@pytest.fixture(scope="module")
def core(request):
    """One S-CSCF + HSS for the module (its files are kept, and its logs
    printed, when a test failed)."""
    ims_core_or_skip()
    failed = request.session.testsfailed
    d = Path(tempfile.mkdtemp(prefix="wic-ims-"))
    c = ImsCore(d)
    c.start()
    yield c
    c.stop()
    if request.session.testsfailed > failed:
        print("kept for inspection: %s" % d)
        print(c.logs())
    else:
        shutil.rmtree(d, ignore_errors=True)


def tna(impi, realm=None, entity=ISSUER_A, protected="auth-done"):
    """The Trusted Node Authentication header an eP-CSCF sends."""
    realm = realm or impi.split("@", 1)[1]
    v = ('Digest username="%s", realm="%s", uri="sip:%s", nonce="", '
         'response=""' % (impi, realm, realm))
    if protected:
        v += ", integrity-protected=%s" % protected
    if entity:
        v += ', authorization-entity="%s"' % entity
    return v


def epcscf(core, host="127.0.0.1"):
    """A client that plays the eP-CSCF's core side (or, from ::1, an
    address the S-CSCF does not trust)."""
    server = "127.0.0.1" if host == "127.0.0.1" else "::1"
    return UdpClient(server, core.scscf_port, bind_host=host)


def path_headers(c):
    return ["Path: <sip:term@%s;lr>" % c.via_sent_by(), "Supported: path"]


def register(core, c, who, expires=600, auth=None, headers=None):
    impi, impu = who
    mark = len(core.hss_requests())
    r = c.register(impu, [tna(impi)] if auth is None else auth,
                   expires=expires,
                   extra_headers=path_headers(c) if headers is None else headers)
    return r, core.hss_requests()[mark:]


def cx(requests, cmd):
    return [q for q in requests if q["cmd"] == cmd]


# -- Trusted Node Authentication ---------------------------------------------

def test_tna_register_from_trusted_node_is_saved_with_sar_no_mar(core):
    with epcscf(core) as c:
        r, asked = register(core, c, ALICE)
        assert r.status == 200, (r, core.logs())
        # SAR with the TNA header's IMPI and the To IMPU, never a MAR
        sar = cx(asked, "SAR")
        assert [(q["user_name"], q["public_identity"],
                 q["server_assignment_type"], q["result"]) for q in sar] == [
            (ALICE[0], ALICE[1], SAT_REGISTRATION, 2001)], asked
        assert cx(asked, "MAR") == []
        # the eP-CSCF's Path kept, our Service-Route (orig) given
        assert r.header("Service-Route") == \
            "<sip:orig@127.0.0.1:%d;lr>" % core.scscf_port
        assert r.header("Path") == "<sip:term@%s;lr>" % c.via_sent_by()
        assert ALICE[1] in r.header("P-Associated-URI")
        assert core.registered(ALICE[1])
        tna_lines = core.scscf_lines("SCSCF-TNA", c.call_id)
        assert len(tna_lines) == 1 and "impi=%s " % ALICE[0] in tna_lines[0] \
            and "entity=%s " % ISSUER_A in tna_lines[0], tna_lines


def test_impi_that_is_not_user_at_impu_domain(core):
    # carol's IMPI comes from the TNA header (realm = the IMPU's domain),
    # never derived from her IMPU
    with epcscf(core) as c:
        r, asked = register(core, c, CAROL)
        assert r.status == 200, (r, core.logs())
        assert [(q["user_name"], q["public_identity"])
                for q in cx(asked, "SAR")] == [CAROL], asked
        assert cx(asked, "MAR") == []
        assert core.registered(CAROL[1])


def test_tna_realm_other_than_the_impu_domain_is_refused(core):
    # with save()'s default flags the registrar would derive the IMPI from
    # the IMPU (carol@...): refused instead
    with epcscf(core) as c:
        r, asked = register(core, c, CAROL,
                            auth=[tna(CAROL[0], realm="ims.example.net")])
        assert r.status == 403 and "realm_not_impu_domain" in r.reason, r
        assert asked == [] or cx(asked, "SAR") == cx(asked, "MAR") == []
        assert core.scscf_lines("SCSCF-REJECT", c.call_id)


def test_reregistration_and_deregistration_sar_types(core):
    with epcscf(core) as c:
        r, asked = register(core, c, BOB)
        assert r.status == 200, r
        assert [q["server_assignment_type"] for q in cx(asked, "SAR")] == \
            [SAT_REGISTRATION]
        r, asked = register(core, c, BOB)
        assert r.status == 200, r
        assert [q["server_assignment_type"] for q in cx(asked, "SAR")] == \
            [SAT_RE_REGISTRATION], asked
        assert core.registered(BOB[1])
        r, asked = register(core, c, BOB, expires=0)
        assert r.status == 200, r
        assert [(q["user_name"], q["server_assignment_type"])
                for q in cx(asked, "SAR")] == \
            [(BOB[0], SAT_USER_DEREGISTRATION)], asked
        assert cx(asked, "MAR") == []
        assert core.wait_registered(BOB[1], expected=False) is False


@pytest.mark.parametrize("who", [
    ("mallory@" + SOCIAL, "sip:mallory@" + SOCIAL),     # unknown to the HSS
    (ALICE[0], "sip:mallory@" + SOCIAL),                # IMPU not alice's
], ids=["unknown-impi", "impu-not-of-impi"])
def test_sar_refused_by_the_hss_is_not_registered(core, who):
    # the HSS has the last word on the IMPI/IMPU pair: a refused SAR
    # (5001 / 5002) is answered 500 (ims_registrar_scscf: "SAR failed")
    with epcscf(core) as c:
        r, asked = register(core, c, who)
        assert r.status == 500, r
        assert [(q["user_name"], q["public_identity"])
                for q in cx(asked, "SAR")] == [who], asked
        assert cx(asked, "SAR")[0]["result"] in (5001, 5002)
        assert core.scscf_lines("SCSCF-SAR", c.call_id) == []
    assert not core.registered(who[1])


def test_tna_from_untrusted_address_goes_to_digest_and_is_refused(core):
    # the same TNA header from ::1: not a trusted eP-CSCF, so the IMS
    # digest path: a MAR, which the HSS refuses, and no SAR
    with epcscf(core, "::1") as c:
        r, asked = register(core, c, DAVE, auth=[tna(DAVE[0], entity=ISSUER_B)])
        assert r.status == 403, r
        assert [(q["user_name"], q["public_identity"], q["result"])
                for q in cx(asked, "MAR")] == [(DAVE[0], DAVE[1], 5006)], asked
        assert cx(asked, "SAR") == []
        assert core.scscf_lines("SCSCF-DIGEST", c.call_id)
        assert core.scscf_lines("SCSCF-TNA", c.call_id) == []
    assert not core.registered(DAVE[1])


@pytest.mark.parametrize("auth", ["none", "no-integrity-protected",
                                  "integrity-protected=yes"])
def test_without_auth_done_goes_to_digest_and_is_refused(core, auth):
    values = {"none": [],
              "no-integrity-protected": [tna(DAVE[0], entity=ISSUER_B,
                                             protected=None)],
              "integrity-protected=yes": [tna(DAVE[0], entity=ISSUER_B,
                                              protected="yes")]}[auth]
    with epcscf(core) as c:
        r, asked = register(core, c, DAVE, auth=values)
        assert r.status == 403, r
        assert [q["public_identity"] for q in cx(asked, "MAR")] == [DAVE[1]]
        assert cx(asked, "SAR") == []
        assert core.scscf_lines("SCSCF-TNA", c.call_id) == []
    assert not core.registered(DAVE[1])


def test_issuer_barred_at_the_scscf_is_refused_then_unbarred(core):
    with epcscf(core) as c:
        r = core.bar(ISSUER_B)
        assert r.returncode == 0, r.stdout + r.stderr
        try:
            r, asked = register(core, c, DAVE,
                                auth=[tna(DAVE[0], entity=ISSUER_B)])
            assert r.status == 403 and "issuer_barred" in r.reason, r
            assert asked == [] or cx(asked, "SAR") == cx(asked, "MAR") == []
            lines = core.scscf_lines("SCSCF-REJECT", c.call_id)
            assert any("reason=issuer_barred" in x for x in lines), lines
        finally:
            assert core.unbar(ISSUER_B).returncode == 0
        r, asked = register(core, c, DAVE, auth=[tna(DAVE[0], entity=ISSUER_B)])
        assert r.status == 200, r
        assert [q["user_name"] for q in cx(asked, "SAR")] == [DAVE[0]]
        assert core.registered(DAVE[1])
        r, _ = register(core, c, DAVE, expires=0,
                        auth=[tna(DAVE[0], entity=ISSUER_B)])
        assert r.status == 200, r
    assert core.wait_registered(DAVE[1], expected=False) is False


def test_entity_not_allowed_is_refused(core):
    with epcscf(core) as c:
        r, asked = register(core, c, DAVE,
                            auth=[tna(DAVE[0], entity="https://evil.example")])
        assert r.status == 403 and "entity_not_allowed" in r.reason, r
        assert cx(asked, "SAR") == []


def test_path_without_supported_path_is_420_and_not_stored(core):
    with epcscf(core) as c:
        r, asked = register(core, c, DAVE, auth=[tna(DAVE[0], entity=ISSUER_B)],
                            headers=["Path: <sip:term@%s;lr>" % c.via_sent_by()])
        assert r.status == 420 and r.header("Unsupported") == "path", r
        assert cx(asked, "SAR") == []
    assert not core.registered(DAVE[1])


# -- routing -----------------------------------------------------------------

def _answer_in_thread(client, method, status=200):
    """Wait (in a thread) for one request of method on client, answer it;
    the request is left in box[0]."""
    box = []

    def run():
        raw = client.wait_request(method, timeout=5)
        if raw is not None:
            box.append(raw)
            client.answer(raw, status, "OK" if status == 200 else "Busy Here")
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def _first_line_and_headers(raw):
    head = raw.split("\r\n\r\n", 1)[0].split("\r\n")
    headers = {}
    for line in head[1:]:
        n, _, v = line.partition(":")
        headers.setdefault(n.strip().lower(), []).append(v.strip())
    return head[0], headers


@contextlib.contextmanager
def registered_pair(core, third=None):
    """alice on client a, bob on client b (his Path: b's socket), both
    de-registered on exit (a contact left behind would be forked to by the
    next test's lookup)."""
    with epcscf(core) as a, epcscf(core) as b:
        for c, who in ((a, ALICE), (b, BOB)):
            r, _ = register(core, c, who)
            assert r.status == 200, r
        try:
            yield a, b
        finally:
            for c, who in ((a, ALICE), (b, BOB)):
                register(core, c, who, expires=0)


def test_message_goes_along_the_callees_path(core):
    # alice (originating, with the Service-Route) to bob, whose Path names
    # the socket of "his eP-CSCF" (b)
    with registered_pair(core) as (a, b):
        t, box = _answer_in_thread(b, "MESSAGE")
        r = a.message(ALICE[1], BOB[1], "hi bob", extra_headers=[
            "Route: <sip:orig@127.0.0.1:%d;lr>" % core.scscf_port,
            "P-Asserted-Identity: <%s>" % ALICE[1]])
        t.join(6)
        assert r.status == 200, (r, core.logs())
        assert box, "the MESSAGE did not come along bob's Path"
        first, h = _first_line_and_headers(box[0])
        # the Request-URI is bob's contact, the route his stored Path
        assert first == "MESSAGE %s SIP/2.0" % b.contact_uri("bob"), first
        assert h.get("route") == ["<sip:term@%s;lr>" % b.via_sent_by()], h
        assert box[0].endswith("hi bob")
        ci = r.header("Call-ID")
        assert core.scscf_lines("SCSCF-ORIG", ci)
        assert core.scscf_lines("SCSCF-ROUTE", ci)


def test_invite_is_record_routed(core):
    with registered_pair(core) as (a, b):
        t, box = _answer_in_thread(b, "INVITE", status=486)
        r = a.request("INVITE", BOB[1], ALICE[1], BOB[1], headers=[
            "Route: <sip:orig@127.0.0.1:%d;lr>" % core.scscf_port,
            "P-Asserted-Identity: <%s>" % ALICE[1],
            "Contact: <%s>" % a.contact_uri("alice")])
        t.join(6)
        assert r.status == 486, r
        assert box
        _, h = _first_line_and_headers(box[0])
        rr = h.get("record-route", [])
        assert any(re.search(r"sip:127\.0\.0\.1:%d;lr" % core.scscf_port, v)
                   for v in rr), h


def test_originating_from_an_untrusted_address_is_403(core):
    with registered_pair(core) as (a, b), epcscf(core, "::1") as x:
        r = x.message(ALICE[1], BOB[1], extra_headers=[
            "Route: <sip:orig@[::1]:%d;lr>" % core.scscf_port,
            "P-Asserted-Identity: <%s>" % ALICE[1]])
        assert r.status == 403, r
        assert b.wait_request("MESSAGE", timeout=0.5) is None


def test_originating_user_not_registered_is_403(core):
    with registered_pair(core) as (a, b):
        r = a.message(DAVE[1], BOB[1], extra_headers=[
            "Route: <sip:orig@127.0.0.1:%d;lr>" % core.scscf_port,
            "P-Asserted-Identity: <%s>" % DAVE[1]])
        assert r.status == 403, r
        assert b.wait_request("MESSAGE", timeout=0.5) is None


def test_request_for_an_unregistered_user_is_404(core):
    with registered_pair(core) as (a, b):
        r = a.message(ALICE[1], DAVE[1], extra_headers=[
            "Route: <sip:orig@127.0.0.1:%d;lr>" % core.scscf_port,
            "P-Asserted-Identity: <%s>" % ALICE[1]])
        assert r.status == 404, r


# -- the eP-CSCF (kamailio-example/epcscf.cfg) in front of the IMS core ------

@pytest.fixture(scope="module")
def ims_dep(request):
    """The native eP-CSCF forwarding to the IMS S-CSCF (Deployment with
    core="ims": the eP-CSCF's TNA realm is the IMPU's domain)."""
    ims_core_or_skip()
    from harness import Deployment
    d = Path(tempfile.mkdtemp(prefix="wic-ims-dep-"))
    failed = request.session.testsfailed
    dep = Deployment(d, mode="native", core="ims")
    dep.start()
    yield dep
    dep.stop()
    if request.session.testsfailed > failed:
        print("kept for inspection: %s" % d)
        print(dep.logs())
    else:
        shutil.rmtree(d, ignore_errors=True)


def test_token_register_through_the_epcscf_is_a_sar_without_mar(ims_dep):
    from tokens import mint
    dep = ims_dep
    for user, (impi, impu) in (("alice", ALICE), ("carol", CAROL)):
        mark = len(dep.ims.hss_requests())
        with dep.udp() as c:
            r = c.register(impu, ["Bearer " + mint(user=user, impi=impi)],
                           expires=600)
            assert r.status == 200, (r.raw, dep.logs())
            assert r.header("Service-Route") == \
                "<sip:orig@127.0.0.1:%d;lr>" % dep.scscf_port
            asked = dep.ims.hss_requests()[mark:]
            assert [(q["user_name"], q["public_identity"],
                     q["server_assignment_type"]) for q in cx(asked, "SAR")] \
                == [(impi, impu, SAT_REGISTRATION)], asked
            assert cx(asked, "MAR") == []
            (line,) = dep.scscf_lines("SCSCF-TNA", c.call_id)
            assert "impi=%s " % impi in line and \
                "entity=%s " % ISSUER_A in line, line
            assert dep.ims.registered(impu)
            r = c.register(impu, ["Bearer " + mint(user=user, impi=impi)],
                           expires=0)
            assert r.status == 200, r.raw


def test_message_between_wics_through_epcscf_and_ims_core(ims_dep):
    """carol (WebSocket) to alice (UDP): eP-CSCF -> IMS S-CSCF (orig,
    along carol's Service-Route; term, along alice's Path) -> eP-CSCF ->
    alice's own socket."""
    from harness import ORIGIN_A
    from tokens import mint
    dep = ims_dep
    with dep.ws(ORIGIN_A) as c, dep.udp() as a:
        assert c.register(CAROL[1], ["Bearer " + mint(user="carol",
                                                      impi=CAROL[0])],
                          expires=600).status == 200
        assert a.register(ALICE[1], ["Bearer " + mint(user="alice")],
                          expires=600).status == 200
        t, box = _answer_in_thread(a, "MESSAGE")
        r = c.message(CAROL[1], ALICE[1], "hi alice")
        t.join(6)
        assert r.status == 200, (r, dep.logs())
        assert box and box[0].endswith("hi alice"), dep.logs()
        assert "P-Asserted-Identity: <%s>" % CAROL[1] in box[0], box[0]
        ci = r.header("Call-ID")
        (orig,) = dep.scscf_lines("SCSCF-ORIG", ci)
        assert "served=%s " % CAROL[1] in orig, orig
        assert dep.scscf_lines("SCSCF-ROUTE", ci)


# -- the HSS fixture alone ---------------------------------------------------

def _diameter_request(code, avps, app=0, hbh=1):
    from diameter.message import Message, MessageHeader
    h = MessageHeader(command_flags=0xC0, command_code=code,
                      application_id=app, hop_by_hop_identifier=hbh,
                      end_to_end_identifier=hbh)
    return Message(h, avps).as_bytes()


def _diameter_answer(sock):
    import struct
    from diameter.message import Message
    buf = b""
    while len(buf) < 4 or len(buf) < struct.unpack("!I", b"\0" + buf[1:4])[0]:
        data = sock.recv(65536)
        assert data, "HSS closed the connection"
        buf += data
    return Message.from_bytes(buf, plain_msg=True)


def test_hss_fixture_survives_garbage_and_answers_cx():
    ims_core_or_skip()
    import signal
    import socket
    from diameter.message.avp import Avp
    from harness import free_port
    from ims import HssProcess
    d = Path(tempfile.mkdtemp(prefix="wic-hss-"))
    hss = HssProcess(d, free_port()).start()
    try:
        # not Diameter: dropped
        with socket.create_connection(("127.0.0.1", hss.port), 2) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert s.recv(100) == b""
        with socket.create_connection(("127.0.0.1", hss.port), 2) as s:
            # a request whose AVP overruns the message: 5012, not a crash
            bad = bytearray(_diameter_request(280, []))
            bad += b"\x00\x00\x01\x08\x40\xff\xff\xff"
            bad[1:4] = len(bad).to_bytes(3, "big")
            s.sendall(bytes(bad))
            a = _diameter_answer(s)
            assert a.find_avps((268, 0))[0].value == 5012
            # CER: the Cx application as Vendor-Specific-Application-Id
            s.sendall(_diameter_request(257, [
                Avp.new(264, 0, b"scscf.test"), Avp.new(296, 0, b"test"),
                Avp.new(257, 0, "127.0.0.1"), Avp.new(266, 0, 10415),
                Avp.new(269, 0, "t")], hbh=2))
            a = _diameter_answer(s)
            assert a.header.hop_by_hop_identifier == 2
            assert a.find_avps((268, 0))[0].value == 2001
            assert a.find_avps((260, 0), (258, 0))[0].value == 16777216
            # SAR for someone the HSS does not know: 5001
            s.sendall(_diameter_request(301, [
                Avp.new(263, 0, "s;1"), Avp.new(264, 0, b"scscf.test"),
                Avp.new(296, 0, b"test"), Avp.new(1, 0, "mallory@evil.example"),
                Avp.new(601, 10415, "sip:mallory@evil.example"),
                Avp.new(614, 10415, 1)], app=16777216, hbh=3))
            a = _diameter_answer(s)
            assert a.find_avps((297, 0), (298, 0))[0].value == 5001
            assert a.find_avps((606, 10415)) == []
        got = [(q["cmd"], q.get("result")) for q in hss.requests()]
        assert got == [("DWR", 5012), ("CER", 2001), ("SAR", 5001)], got
        hss.proc.send_signal(signal.SIGTERM)
        assert hss.proc.wait(5) == 0
    finally:
        hss.stop()
        shutil.rmtree(d, ignore_errors=True)

"""The seed flow on loopback, shown step by step (scripts/demo.sh runs it
after installing and building what it needs).

An HSS stand-in (tests/ims/hss.py, Diameter Cx), Debian's Kamailio IMS
S-CSCF (kamailio-example/ims/scscf.cfg) and the eP-CSCF with the native
wic_tna module (kamailio-example/epcscf.cfg) are started on free loopback
ports; alice and bob register over secure WebSocket with tokens freshly
minted by `wic-tna mint`, alice sends bob a MESSAGE, then a token is
refused and an issuer is barred at the S-CSCF. The processes are those of
the end-to-end tests (tests/e2e/harness.py, tests/e2e/ims.py); their logs
are kept when a step fails.
"""

import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from harness import CLI, ISSUER_A, ORIGIN_A, Deployment  # noqa: E402

AUD = "ims.example.net"
SCOPE = "webrtc-ims-client-access-to-ims"
DOMAIN = "socialnet.ims.example.net"
KEY = REPO / "tests" / "fixtures" / "keys" / "issuer-a-p256.key"


def say(text):
    print("\n\033[1m==> %s\033[0m" % text, flush=True)


def show(text):
    print("    " + text, flush=True)


class DemoFailed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise DemoFailed(what)


def mint(user, lifetime=600, extra=()):
    """A token from the WWSF of socialnet (`wic-tna mint`, our own CLI)."""
    cmd = [str(CLI), "mint", "--key", str(KEY), "--alg", "ES256",
           "--iss", ISSUER_A, "--kid", "a-es256",
           "--impi", "%s@%s" % (user, DOMAIN),
           "--impu", "sip:%s@%s" % (user, DOMAIN),
           "--aud", AUD, "--scope", SCOPE, "--lifetime", str(lifetime)]
    cmd += list(extra)
    return subprocess.run(cmd, check=True, capture_output=True,
                          text=True).stdout.strip()


def header(raw, name):
    for line in raw.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        n, _, v = line.partition(":")
        if n.strip().lower() == name.lower():
            return v.strip()
    return None


def register(dep, client, user, token, expires=3600):
    impu = "sip:%s@%s" % (user, DOMAIN)
    r = client.register(impu, ["Bearer " + token], expires=expires)
    show("REGISTER %s -> %d %s" % (impu, r.status, r.reason))
    return r


def show_sar(dep, impi):
    time.sleep(0.3)
    sars = [q for q in dep.ims.hss_requests("SAR") if q.get("user_name") == impi]
    mars = [q for q in dep.ims.hss_requests("MAR") if q.get("user_name") == impi]
    for q in sars:
        show("HSS: SAR user=%s impu=%s Server-Assignment-Type=%s -> %s" % (
            q.get("user_name"), q.get("public_identity"),
            q.get("server_assignment_type"), q.get("result")))
    show("HSS: %d MAR for %s (no challenge: the eP-CSCF is a trusted node)"
         % (len(mars), impi))
    expect(sars and not mars, "expected a SAR and no MAR for %s" % impi)


def main():
    tmp = Path(tempfile.mkdtemp(prefix="wic-tna-demo."))
    dep = Deployment(tmp, core="ims")
    ok = False
    try:
        say("starting the HSS stand-in (Diameter Cx), the IMS S-CSCF and the "
            "eP-CSCF on loopback")
        dep.start()
        show("HSS        tcp:127.0.0.1:%d (tests/ims/hss.py)" % dep.ims.hss_port)
        show("S-CSCF     udp:127.0.0.1:%d (kamailio-example/ims/scscf.cfg)"
             % dep.ims.scscf_port)
        show("eP-CSCF    wss://127.0.0.1:%d, ws://127.0.0.1:%d, "
             "udp/tcp:127.0.0.1:%d (kamailio-example/epcscf.cfg)"
             % (dep.ep_wss, dep.ep_ws, dep.ep_sip))

        say("the WWSF issues alice and bob tokens valid for 600 s (wic-tna mint)")
        ta, tb = mint("alice"), mint("bob")
        show("alice: %s..." % ta[:60])

        say("alice's and bob's WICs register over secure WebSocket "
            "(Origin %s), Expires: 3600" % ORIGIN_A)
        with dep.wss(ORIGIN_A) as alice, dep.wss(ORIGIN_A) as bob:
            ra = register(dep, alice, "alice", ta)
            rb = register(dep, bob, "bob", tb)
            expect(ra.status == 200 and rb.status == 200, "registration failed")
            show("granted: %s (capped at the token's lifetime)"
                 % (ra.header("Contact") or ""))
            (fwd,) = dep.scscf_msgs(ra.header("Call-ID"))
            show("what reached the S-CSCF: Authorization: %s"
                 % header(fwd, "Authorization"))
            show("                         Path: %s" % header(fwd, "Path"))
            show_sar(dep, "alice@" + DOMAIN)
            show_sar(dep, "bob@" + DOMAIN)

            say("alice sends bob a MESSAGE, claiming to be "
                "<sip:ceo@%s> in her own P-Asserted-Identity" % DOMAIN)
            got = {}

            def bob_answers():
                req = bob.wait_request("MESSAGE", timeout=8)
                if req:
                    got["req"] = req
                    bob.answer(req, 200)

            t = threading.Thread(target=bob_answers)
            t.start()
            r = alice.message("sip:alice@" + DOMAIN, "sip:bob@" + DOMAIN,
                              "hello bob",
                              extra_headers=["P-Asserted-Identity: "
                                             "<sip:ceo@%s>" % DOMAIN])
            t.join()
            req = got.get("req")
            expect(req is not None, "bob got no MESSAGE")
            show("bob received: %s" % req.split("\r\n", 1)[0])
            show("              From: %s" % header(req, "From"))
            show("              P-Asserted-Identity: %s  (asserted by the "
                 "eP-CSCF)" % header(req, "P-Asserted-Identity"))
            show("              body: %s" % req.split("\r\n\r\n", 1)[1])
            expect(header(req, "P-Asserted-Identity")
                   == "<sip:alice@%s>" % DOMAIN, "wrong P-Asserted-Identity")
            show("alice got bob's answer: %d %s" % (r.status, r.reason))
            expect(r.status == 200, "MESSAGE not answered 200")

            say("an expired token is refused at the eP-CSCF: 401 with a Bearer "
                "challenge, nothing forwarded")
            old = mint("alice", extra=["--iat-offset", "-1200"])
            with dep.wss(ORIGIN_A) as c:
                r = register(dep, c, "alice", old)
            show("WWW-Authenticate: %s" % r.header("WWW-Authenticate"))
            expect(r.status == 401, "expired token not refused")
            expect(dep.scscf_msgs(r.header("Call-ID")) == [],
                   "the expired token's REGISTER reached the S-CSCF")

            say("the operator bars the WWSF at the S-CSCF "
                "(kamcmd wic_tna.bar %s); the eP-CSCF still accepts its "
                "tokens" % ISSUER_A)
            res = dep.ims.bar(ISSUER_A)
            expect(res.returncode == 0, "bar failed: %s" % res.stdout)
            with dep.wss(ORIGIN_A) as c:
                r = register(dep, c, "alice", mint("alice"))
            lines = dep.ims.wait_line("SCSCF-REJECT", r.header("Call-ID"))
            for line in lines:
                show("S-CSCF: " + re.sub(r"^.*(SCSCF-REJECT)", r"\1", line))
            expect(r.status == 403, "barred issuer not refused")
            dep.ims.unbar(ISSUER_A)

        say("eP-CSCF counters (kamcmd wic_tna.stats)")
        # a structure, one member a line
        for line in dep.ep.rpc("wic_tna.stats").stdout.expandtabs(4).splitlines():
            show(line)
        ok = True
    finally:
        say("stopping")
        dep.stop()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("demo failed; logs kept in %s" % tmp, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DemoFailed as e:
        print("demo failed: %s" % e, file=sys.stderr)
        sys.exit(1)

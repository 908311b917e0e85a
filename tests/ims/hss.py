#!/usr/bin/env python3
"""A Cx HSS test fixture: a stand-in for an operator's HSS (Home Subscriber
Server, TS 29.228/29.229), only as big as the wic-tna tests of the IMS
S-CSCF (kamailio-example/ims/scscf.cfg) need. Not an HSS: no
authentication vectors, no persistence, no I-CSCF commands, no
push/registration-termination requests.

It speaks Diameter over TCP (python-diameter 0.9 encodes and decodes the
messages; the connection handling is here) and answers:

  CER/CEA   Result-Code 2001, Vendor-Specific-Application-Id {10415, Cx
            16777216} (cdp counts the peer's applications one short
            without it), Supported-Vendor-Id 10415
  DWR/DWA   2001
  DPR/DPA   2001, then the connection is closed
  SAR/SAA   the subscriber of User-Name (IMPI) and Public-Identity (IMPU)
            from the subscribers file:
              - unknown IMPI, or no IMPI and an unknown IMPU:
                Experimental-Result 5001 DIAMETER_ERROR_USER_UNKNOWN
              - an IMPU not of that IMPI: 5002 IDENTITIES_DONT_MATCH
              - Server-Assignment-Type 1 REGISTRATION, 2 RE_REGISTRATION,
                3 UNREGISTERED_USER, 12 AAA_USER_DATA_REQUEST: 2001 with
                User-Data, an IMSSubscription (CxDataType_Rel7.xsd) with
                all the subscriber's IMPUs in one service profile
              - the de-registration types (4-11): 2001, no User-Data
              - any other type: 5007 DIAMETER_ERROR_IN_ASSIGNMENT_TYPE
  MAR/MAA   always refused: this fixture holds no credentials, so the
            digest (or AKA) path of the S-CSCF never succeeds:
              unknown IMPI: 5001 DIAMETER_ERROR_USER_UNKNOWN
              IMPU not of the IMPI: 5002 IDENTITIES_DONT_MATCH
              else: Experimental-Result 5006
              DIAMETER_ERROR_AUTH_SCHEME_NOT_SUPPORTED
            (Kamailio's ims_auth answers the REGISTER 403 to each.)
  other requests: Result-Code 3001 DIAMETER_COMMAND_UNSUPPORTED (E bit)

Every request received is logged as one JSON line (flushed at once):
  {"cmd": "SAR", "user_name": IMPI, "public_identity": IMPU,
   "server_assignment_type": n, "origin_host": ..., "result": code}
("result" is the Result-Code or Experimental-Result-Code answered, computed
here: python-diameter cannot read an answer that has only an
Experimental-Result). Requests that do not parse are answered 5012
DIAMETER_UNABLE_TO_COMPLY when their header can be read, else the
connection is closed; nothing a peer sends stops the fixture.

Subscribers file (JSON; default: subscribers.json next to this file):
  {"subscribers": [{"impi": "alice@socialnet.ims.example.net",
                    "impus": ["sip:alice@socialnet.ims.example.net"]}, ...]}
IMPUs are compared as written, but for the scheme and host (lower case).

    python3 tests/ims/hss.py --listen 127.0.0.1:3868 --realm ims.example.net \\
        --origin-host hss.ims.example.net --subscribers FILE --log FILE

prints "HSS ready on 127.0.0.1:3868" once it accepts connections, and exits
0 on SIGTERM or SIGINT.
"""

import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading
from xml.sax.saxutils import escape

from diameter.message import Message, MessageHeader
from diameter.message.avp import Avp

HERE = os.path.dirname(os.path.abspath(__file__))

VENDOR_3GPP = 10415
APP_CX = 16777216

# base AVPs (RFC 6733)
AVP_USER_NAME = 1
AVP_HOST_IP_ADDRESS = 257
AVP_AUTH_APPLICATION_ID = 258
AVP_VENDOR_SPECIFIC_APPLICATION_ID = 260
AVP_SESSION_ID = 263
AVP_ORIGIN_HOST = 264
AVP_SUPPORTED_VENDOR_ID = 265
AVP_VENDOR_ID = 266
AVP_FIRMWARE_REVISION = 267
AVP_RESULT_CODE = 268
AVP_PRODUCT_NAME = 269
AVP_AUTH_SESSION_STATE = 277
AVP_ORIGIN_STATE_ID = 278
AVP_EXPERIMENTAL_RESULT = 297
AVP_EXPERIMENTAL_RESULT_CODE = 298
AVP_ORIGIN_REALM = 296
# Cx AVPs (TS 29.229), vendor 10415
AVP_PUBLIC_IDENTITY = 601
AVP_USER_DATA = 606
AVP_SERVER_ASSIGNMENT_TYPE = 614

CMD_CER = 257
CMD_DWR = 280
CMD_DPR = 282
CMD_SAR = 301
CMD_MAR = 303
NAMES = {CMD_CER: "CER", CMD_DWR: "DWR", CMD_DPR: "DPR", 300: "UAR",
         CMD_SAR: "SAR", 302: "LIR", CMD_MAR: "MAR", 304: "RTR", 305: "PPR"}

SUCCESS = 2001
COMMAND_UNSUPPORTED = 3001
UNABLE_TO_COMPLY = 5012
ERROR_USER_UNKNOWN = 5001
ERROR_IDENTITIES_DONT_MATCH = 5002
ERROR_AUTH_SCHEME_NOT_SUPPORTED = 5006
ERROR_IN_ASSIGNMENT_TYPE = 5007

# Server-Assignment-Type (TS 29.229 6.3.15)
SAT_WITH_USER_DATA = {1, 2, 3, 12}   # (re-)registration, unregistered, data
SAT_DEREGISTRATION = set(range(4, 12))

MAX_MESSAGE = 65536
MAX_CONNECTIONS = 16
FLAG_REQUEST = 0x80
FLAG_PROXIABLE = 0x40
FLAG_ERROR = 0x20


def canonical_impu(uri):
    """Scheme and host lower case, the user part as written."""
    uri = uri.strip()
    scheme, sep, rest = uri.partition(":")
    if not sep:
        return uri
    user, at, host = rest.rpartition("@")
    if not at:
        return scheme.lower() + ":" + rest
    return scheme.lower() + ":" + user + "@" + host.lower()


class Subscribers:
    def __init__(self, path):
        with open(path) as f:
            data = json.load(f)
        self.by_impi = {}
        self.by_impu = {}
        for s in data["subscribers"]:
            impi = s["impi"]
            impus = [canonical_impu(u) for u in s["impus"]]
            if not impus:
                raise ValueError("subscriber %s has no IMPU" % impi)
            self.by_impi[impi.lower()] = (impi, impus)
            for u in impus:
                self.by_impu[u] = (impi, impus)

    def check(self, impi, impu):
        """(result code, subscriber or None) for an IMPI and/or IMPU."""
        sub = None
        if impi:
            sub = self.by_impi.get(impi.lower())
            if sub is None:
                return ERROR_USER_UNKNOWN, None
            if impu and canonical_impu(impu) not in sub[1]:
                return ERROR_IDENTITIES_DONT_MATCH, None
            return SUCCESS, sub
        if impu:
            sub = self.by_impu.get(canonical_impu(impu))
            if sub is None:
                return ERROR_USER_UNKNOWN, None
            return SUCCESS, sub
        return ERROR_USER_UNKNOWN, None


def user_data(sub):
    """An IMSSubscription (CxDataType_Rel7.xsd): the IMPI and one service
    profile with every IMPU of the subscriber, none barred."""
    impi, impus = sub
    ids = "".join(
        "<PublicIdentity><BarringIndication>0</BarringIndication>"
        "<Identity>%s</Identity></PublicIdentity>" % escape(u) for u in impus)
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            "<IMSSubscription><PrivateID>%s</PrivateID>"
            "<ServiceProfile>%s</ServiceProfile></IMSSubscription>"
            % (escape(impi), ids)).encode()


def first(msg, code, vendor=0):
    found = msg.find_avps((code, vendor))
    if not found:
        return None
    try:
        v = found[0].value
    except Exception:
        return None
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    return v


class Hss:
    def __init__(self, host, port, realm, origin_host, subscribers, log_path):
        self.host = host
        self.port = port
        self.realm = realm
        self.origin_host = origin_host
        self.subscribers = subscribers
        self.log = open(log_path, "a") if log_path else None
        self.log_lock = threading.Lock()
        self.stopping = threading.Event()
        self.conns = set()
        self.conns_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    # -- log --
    def record(self, entry):
        if not self.log:
            return
        with self.log_lock:
            self.log.write(json.dumps(entry, sort_keys=True) + "\n")
            self.log.flush()

    # -- answers --
    def _avp(self, code, value, vendor=0):
        return Avp.new(code, vendor, value=value)

    def _answer(self, req_header, avps, error=False):
        flags = req_header.command_flags & FLAG_PROXIABLE
        if error:
            flags |= FLAG_ERROR
        h = MessageHeader(version=1, command_flags=flags,
                          command_code=req_header.command_code,
                          application_id=req_header.application_id,
                          hop_by_hop_identifier=req_header.hop_by_hop_identifier,
                          end_to_end_identifier=req_header.end_to_end_identifier)
        return Message(h, avps).as_bytes()

    def _origin(self):
        return [self._avp(AVP_ORIGIN_HOST, self.origin_host.encode()),
                self._avp(AVP_ORIGIN_REALM, self.realm.encode())]

    def _cx_app(self):
        return self._avp(AVP_VENDOR_SPECIFIC_APPLICATION_ID, [
            self._avp(AVP_VENDOR_ID, VENDOR_3GPP),
            self._avp(AVP_AUTH_APPLICATION_ID, APP_CX)])

    def _result(self, code):
        """Result-Code for 2xxx/3xxx and the base 5xxx codes; the Cx errors
        (5001-5011 of TS 29.229) go in an Experimental-Result."""
        if code in (ERROR_USER_UNKNOWN, ERROR_IDENTITIES_DONT_MATCH,
                    ERROR_AUTH_SCHEME_NOT_SUPPORTED, ERROR_IN_ASSIGNMENT_TYPE):
            return self._avp(AVP_EXPERIMENTAL_RESULT, [
                self._avp(AVP_VENDOR_ID, VENDOR_3GPP),
                self._avp(AVP_EXPERIMENTAL_RESULT_CODE, code)])
        return self._avp(AVP_RESULT_CODE, code)

    def _cx_answer(self, msg, code, extra=()):
        avps = []
        sid = first(msg, AVP_SESSION_ID)
        if sid is not None:
            avps.append(self._avp(AVP_SESSION_ID, sid))
        avps.append(self._cx_app())
        avps.append(self._avp(AVP_AUTH_SESSION_STATE, 1))  # NO_STATE_MAINTAINED
        avps += self._origin()
        avps.append(self._result(code))
        avps += list(extra)
        return self._answer(msg.header, avps)

    def handle(self, data, peer_addr):
        """(answer bytes or None, close after sending)."""
        header = MessageHeader.from_bytes(data[:20])
        if not header.command_flags & FLAG_REQUEST:
            return None, False     # an answer: we send no requests
        cmd = header.command_code
        entry = {"cmd": NAMES.get(cmd, str(cmd)), "peer": peer_addr}
        try:
            msg = Message.from_bytes(data, plain_msg=True)
            entry["origin_host"] = first(msg, AVP_ORIGIN_HOST)
        except Exception as e:
            entry.update(result=UNABLE_TO_COMPLY, error="unparsable: %s" % e)
            self.record(entry)
            return self._answer(header, self._origin() + [
                self._avp(AVP_RESULT_CODE, UNABLE_TO_COMPLY)]), False
        close = False
        if cmd == CMD_CER:
            code = SUCCESS
            ip = peer_addr.rsplit(":", 1)[0].strip("[]")
            out = self._answer(header, [
                self._avp(AVP_RESULT_CODE, code)] + self._origin() + [
                self._avp(AVP_HOST_IP_ADDRESS, self.host if self.host not in
                          ("0.0.0.0", "::") else ip),
                self._avp(AVP_VENDOR_ID, VENDOR_3GPP),
                self._avp(AVP_PRODUCT_NAME, "wic-tna test HSS"),
                self._avp(AVP_SUPPORTED_VENDOR_ID, VENDOR_3GPP),
                self._cx_app()])
        elif cmd in (CMD_DWR, CMD_DPR):
            code = SUCCESS
            out = self._answer(header, [
                self._avp(AVP_RESULT_CODE, code)] + self._origin())
            close = cmd == CMD_DPR
        elif cmd == CMD_SAR:
            impi = first(msg, AVP_USER_NAME)
            impu = first(msg, AVP_PUBLIC_IDENTITY, VENDOR_3GPP)
            sat = first(msg, AVP_SERVER_ASSIGNMENT_TYPE, VENDOR_3GPP)
            entry.update(user_name=impi, public_identity=impu,
                         server_assignment_type=sat)
            code, sub = self.subscribers.check(impi, impu)
            extra = []
            if code == SUCCESS:
                if sat in SAT_WITH_USER_DATA:
                    extra.append(self._avp(AVP_USER_DATA, user_data(sub),
                                           VENDOR_3GPP))
                elif sat not in SAT_DEREGISTRATION:
                    code = ERROR_IN_ASSIGNMENT_TYPE
                if impi is None and code == SUCCESS:
                    extra.insert(0, self._avp(AVP_USER_NAME, sub[0]))
            if impi is not None:
                extra.insert(0, self._avp(AVP_USER_NAME, impi))
            out = self._cx_answer(msg, code, extra)
        elif cmd == CMD_MAR:
            impi = first(msg, AVP_USER_NAME)
            impu = first(msg, AVP_PUBLIC_IDENTITY, VENDOR_3GPP)
            entry.update(user_name=impi, public_identity=impu)
            code, _ = self.subscribers.check(impi, impu)
            if code == SUCCESS:
                code = ERROR_AUTH_SCHEME_NOT_SUPPORTED
            # ims_auth reads User-Name and Public-Identity of the MAA before
            # its result (403 "no private identity" without them)
            extra = []
            if impi is not None:
                extra.append(self._avp(AVP_USER_NAME, impi))
            if impu is not None:
                extra.append(self._avp(AVP_PUBLIC_IDENTITY, impu, VENDOR_3GPP))
            out = self._cx_answer(msg, code, extra)
        else:
            code = COMMAND_UNSUPPORTED
            avps = []
            sid = first(msg, AVP_SESSION_ID)
            if sid is not None:
                avps.append(self._avp(AVP_SESSION_ID, sid))
            out = self._answer(header, avps + self._origin() + [
                self._avp(AVP_RESULT_CODE, code)], error=True)
        entry["result"] = code
        self.record(entry)
        return out, close

    # -- connections --
    def serve_connection(self, conn, addr):
        peer = "%s:%d" % (addr[0], addr[1])
        buf = b""
        try:
            conn.settimeout(None)
            while not self.stopping.is_set():
                while len(buf) < 4 or len(buf) < self._length(buf):
                    if len(buf) >= 4 and not 20 <= self._length(buf) <= MAX_MESSAGE:
                        return      # not Diameter, or too big: drop the peer
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                n = self._length(buf)
                if buf[0] != 1:
                    return
                data, buf = buf[:n], buf[n:]
                try:
                    out, close = self.handle(data, peer)
                except Exception as e:   # never let a request stop us
                    self.record({"peer": peer, "error": "internal: %r" % e})
                    out, close = None, False
                if out:
                    conn.sendall(out)
                if close:
                    return
        except OSError:
            return
        finally:
            with self.conns_lock:
                self.conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _length(buf):
        return struct.unpack("!I", b"\0" + buf[1:4])[0]

    def serve_forever(self):
        self.sock.settimeout(0.5)
        while not self.stopping.is_set():
            try:
                conn, addr = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.stopping.is_set():
                    break
                continue
            with self.conns_lock:
                if len(self.conns) >= MAX_CONNECTIONS:
                    conn.close()
                    continue
                self.conns.add(conn)
            threading.Thread(target=self.serve_connection, args=(conn, addr),
                             daemon=True).start()

    def stop(self):
        self.stopping.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self.conns_lock:
            for c in list(self.conns):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Cx HSS test fixture (stand-in for an operator's HSS)")
    ap.add_argument("--listen", default="127.0.0.1:3868", metavar="ADDR:PORT",
                    help="TCP address to accept the S-CSCF's cdp on "
                         "(loopback; port 0: any free port)")
    ap.add_argument("--realm", default="ims.example.net")
    ap.add_argument("--origin-host", default="hss.ims.example.net")
    ap.add_argument("--subscribers",
                    default=os.path.join(HERE, "subscribers.json"))
    ap.add_argument("--log", help="JSON lines, one per request received")
    args = ap.parse_args(argv)

    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]")
    hss = Hss(host, int(port), args.realm, args.origin_host,
              Subscribers(args.subscribers), args.log)

    def stop(signum, frame):
        hss.stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    shown = "[%s]" % host if ":" in host else host
    print("HSS ready on %s:%d" % (shown, hss.port), flush=True)
    hss.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

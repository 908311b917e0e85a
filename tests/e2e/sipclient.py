#!/usr/bin/env python3
"""A small SIP client playing the WebRTC IMS Client (WIC) for the e2e tests
and the demo: REGISTER with an access token, MESSAGE, over UDP or over
WebSocket (subprotocol "sip", RFC 7118) with the `websockets` library.

Library use:
    with UdpClient("127.0.0.1", 5060) as c:
        r = c.register("sip:alice@socialnet.ims.example.net",
                       authorization=["Bearer " + token], expires=600)
        print(r.status, r.header("WWW-Authenticate"))

Command line (used by scripts/demo.sh):
    sipclient.py register --udp 127.0.0.1:5060 --aor sip:alice@... \
        --token TOKEN [--expires 600]
    sipclient.py register --ws ws://127.0.0.1:8080 --origin https://... ...
"""

import argparse
import random
import socket
import string
import sys
import time

DOMAIN = "ims.example.net"


def _rand(n=10):
    return "".join(random.choice(string.ascii_lowercase + string.digits)
                   for _ in range(n))


class Response:
    """A parsed SIP response."""

    def __init__(self, raw):
        self.raw = raw
        head, _, self.body = raw.partition("\r\n\r\n")
        lines = head.split("\r\n")
        first = lines[0].split(" ", 2)
        if len(first) < 2 or not first[0].startswith("SIP/2.0"):
            raise ValueError("not a SIP response: %r" % lines[0])
        self.status = int(first[1])
        self.reason = first[2] if len(first) > 2 else ""
        self.headers = []  # [(name, value)] in order
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and self.headers:
                name, value = self.headers[-1]
                self.headers[-1] = (name, value + " " + line.strip())
                continue
            name, _, value = line.partition(":")
            self.headers.append((name.strip(), value.strip()))

    _COMPACT = {"i": "call-id", "v": "via", "f": "from", "t": "to",
                "m": "contact", "l": "content-length"}

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers
                if n.lower() == name or self._COMPACT.get(n.lower()) == name]

    def header(self, name):
        values = self.header_all(name)
        return values[0] if values else None

    def __repr__(self):
        return "<Response %d %s>" % (self.status, self.reason)


class _Client:
    """Builds requests; subclasses move bytes."""

    transport = "UDP"

    def __init__(self, timeout=5.0):
        self.timeout = timeout
        self.cseq = 0
        self.call_id = _rand(16) + "@wic.test"
        self.tag = _rand(8)
        self.contact_host = "127.0.0.1"
        self.contact_port = 0
        self.pending = []  # requests received while waiting for a reply

    def wait_request(self, method=None, timeout=None):
        """The next request received (of that method), or None."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, raw in enumerate(self.pending):
                if method is None or raw.startswith(method + " "):
                    return self.pending.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            raw = self.recv_raw(left)
            if raw is None:
                continue
            if raw.startswith("SIP/2.0 "):
                continue
            self.pending.append(raw)

    def answer(self, raw_request, status=200, reason="OK", contact_user=None):
        """Answer a received request (Via, From, To, Call-ID, CSeq and
        Record-Route copied; a Contact of this client for contact_user)."""
        head = raw_request.split("\r\n\r\n", 1)[0].split("\r\n")
        keep = []
        for line in head[1:]:
            name = line.split(":", 1)[0].strip().lower()
            if name in ("via", "v", "from", "f", "to", "t", "call-id", "i",
                        "cseq", "record-route"):
                if name in ("to", "t") and ";tag=" not in line:
                    line += ";tag=" + _rand(6)
                keep.append(line)
        if contact_user:
            keep.append("Contact: <%s>" % self.contact_uri(contact_user))
        text = "SIP/2.0 %d %s\r\n%s\r\nContent-Length: 0\r\n\r\n" % (
            status, reason, "\r\n".join(keep))
        self.send_raw(text)

    # -- bytes (subclasses) --
    def send_raw(self, text):
        raise NotImplementedError

    def recv_raw(self, timeout):
        raise NotImplementedError

    def via_sent_by(self):
        raise NotImplementedError

    def contact_uri(self, user):
        raise NotImplementedError

    # -- SIP --
    def request(self, method, ruri, from_uri, to_uri, headers=(), body="",
                call_id=None, cseq=None):
        """Send a request and return the final response (1xx skipped)."""
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        call_id = call_id or self.call_id
        branch = "z9hG4bK-" + _rand(12)
        lines = [
            "%s %s SIP/2.0" % (method, ruri),
            "Via: SIP/2.0/%s %s;branch=%s;rport" % (
                self.transport, self.via_sent_by(), branch),
            "Max-Forwards: 70",
            "From: <%s>;tag=%s" % (from_uri, self.tag),
            "To: <%s>" % to_uri,
            "Call-ID: %s" % call_id,
            "CSeq: %d %s" % (cseq, method),
            "User-Agent: wic-tna-e2e",
        ]
        lines.extend(headers)
        lines.append("Content-Length: %d" % len(body.encode()))
        text = "\r\n".join(lines) + "\r\n\r\n" + body
        self.send_raw(text)
        return self._final(call_id, cseq, method, branch)

    def _final(self, call_id, cseq, method, branch):
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no final response to %s (Call-ID %s)"
                                   % (method, call_id))
            raw = self.recv_raw(left)
            if raw is None:
                continue
            try:
                resp = Response(raw)
            except ValueError:
                # a request: kept for wait_request (e.g. a MESSAGE that
                # came along the Path while we waited)
                self.pending.append(raw)
                continue
            if resp.header("Call-ID") != call_id:
                continue
            if resp.header("CSeq") != "%d %s" % (cseq, method):
                continue
            via = resp.header("Via") or ""
            if "branch=%s" % branch not in via:
                continue
            if resp.status >= 200:
                return resp

    def register(self, aor, authorization=(), expires=None,
                 contact_expires=None, extra_headers=(), user=None,
                 to_uri=None, call_id=None, contacts=None):
        """REGISTER aor. authorization: list of Authorization values (each
        becomes one header). expires: Expires header; contact_expires: the
        Contact's expires parameter. contacts: the Contact header values
        as given (each "{uri}" in them becomes this client's contact URI)
        instead of the one made here; [] sends none."""
        user = user or aor.split(":", 1)[1].split("@", 1)[0]
        contact = "<%s>" % self.contact_uri(user)
        if contact_expires is not None:
            contact += ";expires=%d" % contact_expires
        if contacts is None:
            headers = ["Contact: %s" % contact]
        else:
            headers = ["Contact: %s" % c.replace("{uri}",
                                                 self.contact_uri(user))
                       for c in contacts]
        if expires is not None:
            headers.append("Expires: %d" % expires)
        for value in authorization:
            headers.append("Authorization: %s" % value)
        headers.extend(extra_headers)
        return self.request("REGISTER", "sip:" + DOMAIN, aor, to_uri or aor,
                            headers, call_id=call_id)

    def message(self, from_uri, to_uri, text="hello", extra_headers=()):
        headers = ["Content-Type: text/plain"] + list(extra_headers)
        return self.request("MESSAGE", to_uri, from_uri, to_uri, headers,
                            body=text, call_id=_rand(16) + "@wic.test",
                            cseq=1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass


class UdpClient(_Client):
    transport = "UDP"

    def __init__(self, host, port, timeout=5.0, bind_host=None, bind_port=0):
        super().__init__(timeout)
        self.server = (host, port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((bind_host or host, bind_port))
        self.contact_host, self.contact_port = self.sock.getsockname()[:2]

    def via_sent_by(self):
        host = self.contact_host
        if ":" in host:
            host = "[%s]" % host
        return "%s:%d" % (host, self.contact_port)

    def contact_uri(self, user):
        return "sip:%s@%s;transport=udp" % (user, self.via_sent_by())

    def send_raw(self, text):
        self.sock.sendto(text.encode(), self.server)

    def recv_raw(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65535)
        except socket.timeout:
            return None
        return data.decode(errors="replace")

    def close(self):
        self.sock.close()


class TcpClient(_Client):
    """SIP over TCP: messages framed by Content-Length."""

    transport = "TCP"

    def __init__(self, host, port, timeout=5.0):
        super().__init__(timeout)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.contact_host, self.contact_port = self.sock.getsockname()[:2]
        self.buf = b""

    def via_sent_by(self):
        return "%s:%d" % (self.contact_host, self.contact_port)

    def contact_uri(self, user):
        return "sip:%s@%s;transport=tcp" % (user, self.via_sent_by())

    def send_raw(self, text):
        self.sock.sendall(text.encode())

    def _take(self):
        head, sep, rest = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() in (b"content-length", b"l"):
                length = int(value.strip() or 0)
        if len(rest) < length:
            return None
        self.buf = rest[length:]
        return (head + sep + rest[:length]).decode(errors="replace")

    def recv_raw(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            msg = self._take()
            if msg is not None:
                return msg
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                return None
            if not data:
                raise ConnectionError("connection closed by the proxy")
            self.buf += data

    def closed_by_peer(self, timeout=2.0):
        """True when the proxy closes the connection within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                return False
            except OSError:
                return True
            if not data:
                return True
            self.buf += data
        return False

    def close(self):
        self.sock.close()


class WsClient(_Client):
    """SIP over WebSocket (RFC 7118). Raises websockets' InvalidStatus when
    the handshake is refused (e.g. 403 for an Origin not allowed). A wss://
    URL is checked against cafile."""

    transport = "WS"

    def __init__(self, url, origin, timeout=5.0, cafile=None):
        from websockets.sync.client import connect

        super().__init__(timeout)
        self.host = _rand(10) + ".invalid"
        kw = {}
        if url.startswith("wss:"):
            import ssl
            self.transport = "WSS"
            kw["ssl"] = ssl.create_default_context(cafile=cafile)
        # entered at once (websockets >= 17.1 wants connect() as a context
        # manager); close() leaves it
        self.ws = connect(url, subprotocols=["sip"], origin=origin,
                          open_timeout=timeout, close_timeout=1,
                          **kw).__enter__()
        if self.ws.subprotocol != "sip":
            raise RuntimeError("server did not select subprotocol sip: %r"
                               % self.ws.subprotocol)

    def via_sent_by(self):
        return self.host

    def contact_uri(self, user):
        return "sip:%s@%s;transport=ws" % (user, self.host)

    def send_raw(self, text):
        self.ws.send(text)

    def recv_raw(self, timeout):
        try:
            data = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        if isinstance(data, bytes):
            data = data.decode(errors="replace")
        return data

    def closed_by_peer(self, timeout=2.0):
        """True when the proxy closes the WebSocket within timeout."""
        from websockets.exceptions import ConnectionClosed
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.ws.recv(timeout=max(0.01,
                                                deadline - time.monotonic()))
            except TimeoutError:
                return False
            except ConnectionClosed:
                return True
            if isinstance(data, bytes):
                data = data.decode(errors="replace")
            if not data.startswith("SIP/2.0 "):
                self.pending.append(data)
        return False

    def close(self):
        self.ws.close()


def answers(host, port, timeout=0.5):
    """True when a SIP OPTIONS over UDP to host:port gets a final response
    within timeout (a proxy's readiness probe)."""
    hostport = "%s:%d" % ("[%s]" % host if ":" in host else host, port)
    try:
        with UdpClient(host, port, timeout=timeout) as c:
            c.request("OPTIONS", "sip:" + hostport,
                      "sip:probe@wic.test", "sip:probe@wic.test")
        return True
    except (TimeoutError, OSError):
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    reg = sub.add_parser("register", help="REGISTER and print the response")
    where = reg.add_mutually_exclusive_group(required=True)
    where.add_argument("--udp", metavar="HOST:PORT")
    where.add_argument("--ws", metavar="URL")
    reg.add_argument("--origin", default="https://webrtc.socialnet.example")
    reg.add_argument("--aor", required=True)
    reg.add_argument("--token", help="access token (sent as Bearer)")
    reg.add_argument("--authorization", action="append", default=[],
                     help="a raw Authorization value (repeatable)")
    reg.add_argument("--expires", type=int)
    args = ap.parse_args(argv)

    if args.udp:
        host, _, port = args.udp.rpartition(":")
        client = UdpClient(host.strip("[]"), int(port))
    else:
        client = WsClient(args.ws, args.origin)
    auth = list(args.authorization)
    if args.token:
        auth.append("Bearer " + args.token)
    with client:
        resp = client.register(args.aor, authorization=auth,
                               expires=args.expires)
    print("SIP/2.0 %d %s" % (resp.status, resp.reason))
    for name, value in resp.headers:
        if name.lower() in ("www-authenticate", "contact", "expires"):
            print("%s: %s" % (name, value))
    return 0 if resp.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())

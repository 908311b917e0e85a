"""A JWKS + RFC 7662 introspection server on 127.0.0.1 for the remote
trust e2e tests and measurements: a thread of the test process, its
answers switched by the test, every request counted.

    srv = RemoteServer(); srv.start()
    srv.url("/jwks"), srv.url("/introspect")
    srv.jwks_kids = ["r2"]; srv.intro_mode = "down"; srv.hits["/jwks"]
"""

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt  # PyJWT

from tokens import AUDIENCE, SCOPE, identity

REMOTE_ISS = "https://remote.example"
AS_ISS = "https://as.example"
CLIENT_ID = "ep-cscf"
CLIENT_SECRET = "e2e-secret"


def secret(kid):
    return ("secret-of-%s-0123456789abcdef0123456789abcdef" % kid).encode()


def jwks(kids):
    return {"keys": [{"kty": "oct", "kid": k,
                      "k": base64.urlsafe_b64encode(secret(k)).rstrip(b"=").decode()}
                     for k in kids]}


def mint_remote(kid, user="alice", lifetime=300):
    """An HS256 token of REMOTE_ISS signed with the JWKS key `kid`."""
    impi, impu = identity("a", user)
    now = int(time.time())
    claims = {"iss": REMOTE_ISS, "aud": AUDIENCE, "iat": now,
              "exp": now + lifetime, "scope": SCOPE, "impi": impi,
              "impu": [impu]}
    return jwt.encode(claims, secret(kid), algorithm="HS256",
                      headers={"kid": kid, "typ": "at+jwt"})


class RemoteServer:
    def __init__(self):
        self.jwks_kids = ["r1"]
        self.max_age = 2
        self.intro_mode = "up"     # up | down (503) | slow
        self.intro_lifetime = 300
        self.hits = {}
        self.lock = threading.Lock()
        self.httpd = None

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.httpd.server_address[1], path)

    def count(self, path):
        with self.lock:
            return self.hits.get(path, 0)

    def start(self):
        srv = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status, body, headers=()):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _hit(self):
                with srv.lock:
                    srv.hits[self.path] = srv.hits.get(self.path, 0) + 1

            def do_GET(self):
                self._hit()
                if self.path != "/jwks":
                    return self._send(404, {})
                self._send(200, jwks(srv.jwks_kids),
                           [("Cache-Control", "max-age=%d" % srv.max_age)])

            def do_POST(self):
                self._hit()
                n = int(self.headers.get("Content-Length", "0"))
                form = self.rfile.read(n).decode()
                if srv.intro_mode == "down":
                    return self._send(503, None)
                if srv.intro_mode == "slow":
                    time.sleep(2)
                want = "Basic " + base64.b64encode(
                    ("%s:%s" % (CLIENT_ID, CLIENT_SECRET)).encode()).decode()
                if self.headers.get("Authorization") != want:
                    return self._send(401, {"error": "invalid_client"})
                token = dict(p.split("=", 1) for p in form.split("&")).get("token", "")
                if not token.startswith("ref-") or token.startswith("ref-inactive"):
                    return self._send(200, {"active": False})
                user = token.split("-")[1]
                impi, impu = identity("a", user)
                now = int(time.time())
                self._send(200, {
                    "active": True, "iss": AS_ISS, "aud": AUDIENCE,
                    "scope": SCOPE, "impi": impi, "impu": [impu],
                    "iat": now, "exp": now + srv.intro_lifetime,
                    "client_id": "wwsf"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()


def config_transform(srv, workdir, min_refresh=1, breaker_failures=3,
                     breaker_cooldown=30):
    """Edits of the example configuration: a cache_dir, an issuer whose
    keys come from srv's /jwks, and an introspection issuer."""
    (workdir / "client.secret").write_text(CLIENT_SECRET + "\n")

    def t(text):
        text = 'cache_dir = "%s"\n' % (workdir / "jwks-cache") + text
        return text + '''
[[issuer]]
iss = "%(riss)s"
add_authorization_entity = false
impi_patterns = ["*@socialnet.ims.example.net"]
impu_patterns = ["sip:*@socialnet.ims.example.net"]

  [[issuer.key]]
  jwks_url = "%(jwks)s"
  algorithms = ["HS256"]
  min_refresh = %(minr)d
  refetch_interval = 1

[[issuer]]
iss = "%(as)s"
add_authorization_entity = false
impi_patterns = ["*@socialnet.ims.example.net"]
impu_patterns = ["sip:*@socialnet.ims.example.net"]

  [issuer.introspection]
  endpoint = "%(intro)s"
  client_id = "%(cid)s"
  client_secret_file = "%(secret)s"
  timeout_ms = 300
  token_prefix = "ref-"
  breaker_failures = %(bf)d
  breaker_cooldown = %(bc)d
''' % {"riss": REMOTE_ISS, "jwks": srv.url("/jwks"), "minr": min_refresh,
       "as": AS_ISS, "intro": srv.url("/introspect"), "cid": CLIENT_ID,
       "secret": workdir / "client.secret", "bf": breaker_failures,
       "bc": breaker_cooldown}
    return t

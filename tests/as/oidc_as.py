"""A real OAuth 2.0 authorization server for the tests: tests/as/server.mjs
(the certified oidc-provider, pinned by tests/as/package-lock.json) as a
child process on 127.0.0.1, driven over HTTP.

    as_ = OidcAs().start()          # pytest.skip()s without node or npm ci
    as_.issuer, as_.jwks_uri, as_.introspection_endpoint   # from discovery
    as_.jwt_token("alice@socialnet.ims.example.net",
                  "sip:alice@socialnet.ims.example.net")    # RFC 9068 JWT
    as_.opaque_token(impi, impu)    # a reference token (introspection)
    as_.revoke(token); as_.rotate_keys(); as_.stop()

Install once: npm ci --prefix tests/as (scripts/install-deps.sh).
Never listens anywhere but 127.0.0.1; talks to it without any HTTP proxy.
"""

import base64
import json
import os
import re
import select
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER = HERE / "server.mjs"
NODE_MODULES = HERE / "node_modules"

SCOPE = "webrtc-ims-client-access-to-ims"
AUDIENCE = "https://epcscf.ims.example.net"
WWSF_CLIENT = ("wwsf", "wwsf-secret-0123456789abcdef")
EPCSCF_CLIENT = ("ep-cscf", "ep-cscf-secret-0123456789abcdef")
MIN_NODE = (20, 18)  # oidc-provider 9 uses URL.parse (Node 20.18 / 22.1)

_READY = "WIC-TNA-AS READY "
# no HTTP proxy, whatever the environment says: loopback only
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def unavailable():
    """Why the authorization server cannot run here, or None."""
    node = shutil.which("node")
    if not node:
        return "node (Node.js >= %d.%d) is not installed" % MIN_NODE
    try:
        out = subprocess.run([node, "--version"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return "node --version failed: %s" % e
    m = re.match(r"v(\d+)\.(\d+)", out)
    if not m or (int(m.group(1)), int(m.group(2))) < MIN_NODE:
        return "node %s is too old for oidc-provider 9 (need >= %d.%d)" % ((out,) + MIN_NODE)
    if not (NODE_MODULES / "oidc-provider" / "package.json").is_file():
        return "%s is missing (run: npm ci --prefix tests/as)" % NODE_MODULES
    return None


def decode_jwt(token):
    """(header, payload) of a JWS compact token, unverified."""
    def part(p):
        return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    h, p, _ = token.split(".")
    return part(h), part(p)


class AsError(Exception):
    """The authorization server answered an error (status, body)."""

    def __init__(self, status, body):
        super().__init__("HTTP %d: %s" % (status, body))
        self.status = status
        self.body = body


class OidcAs:
    """One oidc-provider process. ttl: default access token lifetime (s);
    alg: JWS algorithm of its JWT access tokens (ES256, ES384, RS256,
    PS256, EdDSA); jwks_max_age: Cache-Control max-age of /jwks; log: a
    file for its stderr, kept (default: a temp file that stop() removes);
    logs() reads it."""

    def __init__(self, ttl=300, alg="ES256", audience=AUDIENCE, jwks_max_age=60,
                 port=0, log=None):
        self.ttl = ttl
        self.alg = alg
        self.audience = audience
        self.jwks_max_age = jwks_max_age
        self.port = port
        self.log_path = Path(log) if log else None
        self.proc = None
        self.ready = None
        self.discovery = None
        self.startup_seconds = None

    # ---- process ------------------------------------------------------

    def start(self, timeout=15):
        """Start it and wait for its ready line; pytest.skip() with the
        reason when node or tests/as/node_modules is missing."""
        why = unavailable()
        if why:
            import pytest
            pytest.skip(why)
        if self.log_path is None:
            import tempfile
            fd, name = tempfile.mkstemp(prefix="wic-tna-as-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
            self._own_log = True
        t0 = time.monotonic()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [shutil.which("node"), str(SERVER), "--port", str(self.port),
             "--ttl", str(self.ttl), "--alg", self.alg,
             "--audience", self.audience,
             "--jwks-max-age", str(self.jwks_max_age),
             "--wwsf-secret", WWSF_CLIENT[1],
             "--epcscf-secret", EPCSCF_CLIENT[1],
             "--exit-with-stdin"],
            cwd=str(HERE), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log)
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                log = self.logs()
                self.stop()
                raise RuntimeError("the authorization server did not start:\n" + log)
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                c = os.read(self.proc.stdout.fileno(), 1)
                if not c:
                    continue
                line += c
        text = line.decode()
        if not text.startswith(_READY):
            log = self.logs()
            self.stop()
            raise RuntimeError("unexpected first line %r:\n%s" % (text, log))
        self.ready = json.loads(text[len(_READY):])
        self.port = self.ready["port"]
        self.discovery = self._get_json(self.ready["discovery"])
        assert self.discovery["issuer"] == self.ready["issuer"], self.discovery
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self):
        p, self.proc = self.proc, None
        if p is not None:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            for f in (p.stdin, p.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None
        if getattr(self, "_own_log", False):
            # a temp file of ours: gone with the server (pass log= to keep it)
            self.log_path.unlink(missing_ok=True)
            self.log_path, self._own_log = None, False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def logs(self):
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, AttributeError):
            return ""

    # ---- what discovery says ---------------------------------------------

    @property
    def issuer(self):
        return self.discovery["issuer"]

    @property
    def jwks_uri(self):
        return self.discovery["jwks_uri"]

    @property
    def introspection_endpoint(self):
        return self.discovery["introspection_endpoint"]

    @property
    def revocation_endpoint(self):
        return self.discovery["revocation_endpoint"]

    @property
    def token_endpoint(self):
        return self.discovery["token_endpoint"]

    @property
    def resources(self):
        """{"jwt": ..., "opaque": ..., "other": ...}: the resource
        indicators of JWT tokens for the eP-CSCF, opaque tokens for it,
        and JWT tokens for another API (another aud)."""
        return self.ready["resources"]

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    # ---- HTTP -------------------------------------------------------------

    def _request(self, url, form=None, client=None, method=None):
        data = None
        headers = {"Accept": "application/json"}
        if form is not None:
            data = urllib.parse.urlencode(form, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if client:
            # RFC 6749 2.3.1: each form-encoded, then HTTP Basic
            user, pw = (urllib.parse.quote_plus(x) for x in client)
            headers["Authorization"] = "Basic " + base64.b64encode(
                ("%s:%s" % (user, pw)).encode()).decode()
        req = urllib.request.Request(url, data=data, headers=headers,
                                     method=method)
        try:
            with _OPENER.open(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def _get_json(self, url):
        status, body = self._request(url)
        if status != 200:
            raise AsError(status, body)
        return json.loads(body)

    def jwks(self):
        return self._get_json(self.jwks_uri)

    # ---- tokens -----------------------------------------------------------

    def token_response(self, impi=None, impu=None, scope=SCOPE, resource=None,
                       ttl=None, client=WWSF_CLIENT):
        """The token endpoint's JSON answer to a client_credentials request
        of the WWSF. impi/impu (a string or a list) become the token's
        claims (test-only request parameters standing in for the WWSF's
        user session); scope None asks for none; resource defaults to the
        eP-CSCF's JWT resource; ttl (s) overrides the lifetime."""
        form = [("grant_type", "client_credentials"),
                ("resource", resource or self.resources["jwt"])]
        if scope:
            form.append(("scope", scope))
        if impi is not None:
            form.append(("impi", impi))
        if impu is not None:
            for u in [impu] if isinstance(impu, str) else impu:
                form.append(("impu", u))
        if ttl is not None:
            form.append(("ttl", str(int(ttl))))
        status, body = self._request(self.token_endpoint, form, client)
        if status != 200:
            raise AsError(status, body)
        return json.loads(body)

    def jwt_token(self, impi, impu, scope=SCOPE, resource=None, ttl=None):
        """An RFC 9068 JWT access token for the eP-CSCF (or `resource`)."""
        return self.token_response(impi, impu, scope, resource, ttl)["access_token"]

    def opaque_token(self, impi, impu, scope=SCOPE, ttl=None):
        """An opaque (reference) access token for the eP-CSCF."""
        return self.token_response(impi, impu, scope, self.resources["opaque"],
                                   ttl)["access_token"]

    def introspect(self, token, client=EPCSCF_CLIENT):
        """RFC 7662, as the eP-CSCF asks."""
        status, body = self._request(
            self.introspection_endpoint,
            [("token", token), ("token_type_hint", "access_token")], client)
        if status != 200:
            raise AsError(status, body)
        return json.loads(body)

    def revoke(self, token, client=WWSF_CLIENT):
        """RFC 7009, by the client the token was issued to."""
        status, body = self._request(
            self.revocation_endpoint,
            [("token", token), ("token_type_hint", "access_token")], client)
        if status != 200:
            raise AsError(status, body)

    def rotate_keys(self, keep_old=True):
        """A new signing key signs from now on; the previous one stays
        published (keep_old) or is dropped. Returns the new kid."""
        status, body = self._request(
            self.url("/_test/rotate?keep_old=%d" % bool(keep_old)), form=[],
            method="POST")
        if status != 200:
            raise AsError(status, body)
        return json.loads(body)["kid"]

    def write_client_secret(self, path):
        """The eP-CSCF's client secret file (client_secret_file)."""
        Path(path).write_text(EPCSCF_CLIENT[1] + "\n")
        return Path(path)

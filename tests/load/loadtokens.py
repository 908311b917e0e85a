"""Authorization values for the load test, minted with PyJWT: valid tokens
of every key form of both issuers, and hostile ones. Each row of a sipp
injection file is one REGISTER: (row id, To/From IMPU, Authorization value,
contact user). The row id names the token's class, which decides what the
eP-CSCF must answer (see CLASSES).

Valid tokens are unique (their own jti and signature), so each one is fully
verified once by the worker that gets it; "refresh" rows repeat a token sent
earlier by the same client (the cached path of a re-REGISTER).
"""

import base64
import hashlib
import hmac
import json
import random
import time
from pathlib import Path

import jwt  # PyJWT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness import ISSUER_A, ISSUER_B, KEYS

SCOPE = "webrtc-ims-client-access-to-ims"
AUDIENCE = "ims.example.net"
DOMAIN = {"a": "socialnet.ims.example.net", "b": "gamenet.ims.example.net"}
ISS = {"a": ISSUER_A, "b": ISSUER_B}

# the key of issuer A that the rotation removes, and the one it adds
OLD_KID = "a-es256"
NEW_KID = "a-es256-rotated"

# Expectation of a class: "accept" always, "refuse" always, or "old"
# (accepted while the old key is configured) / "new" (accepted once the
# rotated key is configured).
CLASSES = {
    # valid
    "v-es256-old": "old",      # issuer A, ES256, kid a-es256 (rotated out)
    "v-es256-new": "new",      # issuer A, ES256, kid a-es256-rotated (rotated in)
    "v-ed": "accept",          # A EdDSA / B EdDSA from the JWKS
    "v-rs256": "accept",       # A RS256 (PEM) / B RS256 (JWKS)
    "v-ps256": "accept",       # A PS256 (PEM) / B PS256 (JWKS)
    "v-cert": "accept",        # A RS256 with the X.509 certificate key
    "v-es384": "accept",       # A ES384
    "v-es256": "accept",       # B ES256 (JWKS)
    "v-hs256": "accept",       # HS256 with the issuer's secret
    "v-form-param": "accept",  # Bearer access_token="..."
    "v-form-bare": "accept",   # bare JWT (accept_bare_token = true)
    "v-refresh": "accept",     # the same token as an earlier row (EdDSA)
    "v-refresh-old": "old",    # the same token as an earlier v-es256-old row:
                               # cached by a worker before the rotation
    # hostile
    "h-tampered": "refuse",     # one signature character changed
    "h-expired": "refuse",      # exp 10 minutes ago
    "h-not-yet": "refuse",      # nbf in 10 minutes
    "h-lifetime": "refuse",     # exp - iat over the issuer's maximum
    "h-aud": "refuse",          # aud of another network
    "h-scope": "refuse",        # scope without the IMS one
    "h-alg-none": "refuse",     # alg none, no signature
    "h-hs-confusion": "refuse", # HS256 keyed with the issuer's public key PEM
    "h-other-key": "refuse",    # the other issuer's private key, our kid
    "h-unknown-iss": "refuse",  # iss nobody configured, signed by it
    "h-forged-iss": "refuse",   # iss of the other issuer, signed by ours
    "h-impi-pool": "refuse",    # IMPI outside the issuer's pool
    "h-to-mismatch": "refuse",  # valid token of another user, To ours
    "h-too-large": "refuse",    # 9 KiB token
    "h-garbage": "refuse",      # random bytes in base64url, or not at all
    "h-basic": "refuse",        # another scheme
}

# The reason names (doc/protocol.md) a refusal of each class must give: the check
# meant for it refused it, not some other one. (A 9 KiB token is larger than
# Kamailio's pv buffer too: the native module reads a lone-variable argument
# directly, so the library's max_token_size rule answers.)
REASONS = {
    "v-es256-old": {"unknown_key"},   # after the rotation
    "v-refresh-old": {"unknown_key"},
    "v-es256-new": {"unknown_key"},   # before it
    "h-tampered": {"bad_signature"},
    "h-expired": {"expired"},
    "h-not-yet": {"not_yet_valid"},
    "h-lifetime": {"lifetime_too_long"},
    "h-aud": {"wrong_audience"},
    "h-scope": {"insufficient_scope"},
    "h-alg-none": {"malformed_token", "unsupported_algorithm"},
    "h-hs-confusion": {"unsupported_algorithm", "bad_signature"},
    "h-other-key": {"bad_signature"},
    "h-unknown-iss": {"unknown_issuer"},
    "h-forged-iss": {"bad_signature"},
    "h-impi-pool": {"impi_outside_pool"},
    "h-to-mismatch": {"to_impu_not_in_token"},
    "h-too-large": {"token_too_large"},
    "h-garbage": {"malformed_token", "malformed_request"},
    "h-basic": {"missing_token"},
}

VALID_A = ["v-es256-old", "v-es256-old", "v-ed", "v-rs256", "v-ps256",
           "v-cert", "v-es384", "v-hs256", "v-form-param", "v-form-bare",
           "v-refresh", "v-refresh-old", "v-es256-new"]
VALID_B = ["v-es256", "v-es256", "v-ed", "v-rs256", "v-ps256", "v-hs256",
           "v-form-param", "v-form-bare", "v-refresh", "v-refresh"]
HOSTILE = ["h-tampered", "h-expired", "h-not-yet", "h-lifetime", "h-aud",
           "h-scope", "h-alg-none", "h-hs-confusion", "h-other-key",
           "h-unknown-iss", "h-forged-iss", "h-impi-pool", "h-to-mismatch",
           "h-too-large", "h-garbage", "h-basic"]
HOSTILE_SHARE = 0.4


def expectation(cls):
    return CLASSES[cls]


def _pem(path):
    return serialization.load_pem_private_key(Path(path).read_bytes(), None)


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_rotation_key(workdir):
    """A fresh P-256 key for the rotation: (private key, public PEM path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pub = Path(workdir) / "issuer-a-rotated.pub.pem"
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, pub


class Minter:
    def __init__(self, rotated_key, seed=1):
        self.rng = random.Random(seed)
        self.keys = {
            "a": {"a-es256": ("ES256", _pem(KEYS / "issuer-a-p256.key")),
                  NEW_KID: ("ES256", rotated_key),
                  "a-ed": ("EdDSA", _pem(KEYS / "issuer-a-ed25519.key")),
                  "a-rsa": ("RS256", _pem(KEYS / "issuer-a-rsa.key")),
                  "a-cert": ("RS256", _pem(KEYS / "issuer-a-rsa.key")),
                  "a-es384": ("ES384", _pem(KEYS / "issuer-a-p384.key")),
                  "a-hs256": ("HS256",
                              (KEYS / "issuer-a-hmac.secret").read_bytes().strip())},
            "b": {"b-es256": ("ES256", _pem(KEYS / "issuer-b-p256.key")),
                  "b-ed": ("EdDSA", _pem(KEYS / "issuer-b-ed25519.key")),
                  "b-rsa": ("RS256", _pem(KEYS / "issuer-b-rsa.key")),
                  "b-hs256": ("HS256",
                              (KEYS / "issuer-b-hmac.secret").read_bytes().strip())},
        }
        # the key hostile rows are made with (kid, alg, private key, public
        # PEM): one the rotation keeps, so that they meet the same checks
        # before and after it
        self.hostile_key = {
            "a": ("a-es384", "ES384", self.keys["a"]["a-es384"][1],
                  (KEYS / "issuer-a-p384.pub.pem").read_bytes()),
            "b": ("b-es256", "ES256", self.keys["b"]["b-es256"][1],
                  (KEYS / "issuer-b-p256.pub.pem").read_bytes()),
        }
        # the other issuer's private key of the same curve
        self.foreign_key = {"a": _pem(KEYS / "issuer-b-p384.key"),
                            "b": _pem(KEYS / "issuer-a-p256.key")}
        self.serial = 0
        # (pool, user) -> tokens already sent, for the refresh rows
        self.sent = {}

    def claims(self, issuer, user, now, lifetime=3000, **over):
        self.serial += 1
        d = DOMAIN[issuer]
        c = {"iss": ISS[issuer], "aud": AUDIENCE, "iat": now,
             "exp": now + lifetime, "scope": SCOPE,
             "impi": "%s@%s" % (user, d), "impu": ["sip:%s@%s" % (user, d)],
             "sub": "load-%s" % user, "jti": "load-%d-%d" % (now, self.serial)}
        c.update(over)
        return c

    def sign(self, claims, issuer, kid, alg=None):
        default_alg, key = self.keys[issuer][kid]
        return jwt.encode(claims, key, algorithm=alg or default_alg,
                          headers={"kid": kid, "typ": "at+jwt"})

    def _raw(self, header, claims, sig=b""):
        h = _b64(json.dumps(header, separators=(",", ":")).encode())
        p = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return "%s.%s.%s" % (h, p, _b64(sig))

    def authorization(self, cls, issuer, user, now):
        """The Authorization value of one row of class cls for a client
        registering as user of issuer."""
        other = "b" if issuer == "a" else "a"
        es_kid = "a-es256" if issuer == "a" else "b-es256"
        h_kid, h_alg, h_key, h_pub = self.hostile_key[issuer]

        def hostile(claims):
            return jwt.encode(claims, h_key, algorithm=h_alg,
                              headers={"kid": h_kid, "typ": "at+jwt"})

        rsa_kid = "a-rsa" if issuer == "a" else "b-rsa"
        ed_kid = "a-ed" if issuer == "a" else "b-ed"
        hs_kid = "a-hs256" if issuer == "a" else "b-hs256"
        c = self.claims(issuer, user, now)
        if cls == "v-es256-old":
            tok = self.sign(c, "a", OLD_KID)
        elif cls == "v-es256-new":
            tok = self.sign(c, "a", NEW_KID)
        elif cls == "v-es256":
            tok = self.sign(c, issuer, es_kid)
        elif cls == "v-ed":
            tok = self.sign(c, issuer, ed_kid)
        elif cls == "v-rs256":
            tok = self.sign(c, issuer, rsa_kid)
        elif cls == "v-ps256":
            tok = self.sign(c, issuer, rsa_kid, alg="PS256")
        elif cls == "v-cert":
            tok = self.sign(c, "a", "a-cert")
        elif cls == "v-es384":
            tok = self.sign(c, "a", "a-es384")
        elif cls == "v-hs256":
            tok = self.sign(c, issuer, hs_kid)
        elif cls == "v-form-param":
            tok = self.sign(c, issuer, ed_kid)
            return 'Bearer access_token="%s"' % tok
        elif cls == "v-form-bare":
            tok = self.sign(c, issuer, ed_kid)
            return tok
        elif cls in ("v-refresh", "v-refresh-old"):
            pool = "old" if cls == "v-refresh-old" else "ed"
            seen = self.sent.get((pool, user))
            if seen:
                return "Bearer " + self.rng.choice(seen)
            tok = self.sign(c, issuer, OLD_KID if pool == "old" else ed_kid)
        elif cls == "h-tampered":
            tok = hostile(c)
            head, payload, sig = tok.split(".")
            i = self.rng.randrange(2, len(sig) - 2)
            ch = "A" if sig[i] != "A" else "B"
            tok = ".".join([head, payload, sig[:i] + ch + sig[i + 1:]])
        elif cls == "h-expired":
            c.update(iat=now - 900, exp=now - 600)
            tok = hostile(c)
        elif cls == "h-not-yet":
            c.update(nbf=now + 600)
            tok = hostile(c)
        elif cls == "h-lifetime":
            c.update(exp=now + 9000)
            tok = hostile(c)
        elif cls == "h-aud":
            c.update(aud="ims.other-operator.example")
            tok = hostile(c)
        elif cls == "h-scope":
            c.update(scope="openid profile")
            tok = hostile(c)
        elif cls == "h-alg-none":
            tok = self._raw({"alg": "none", "typ": "at+jwt", "kid": h_kid}, c)
        elif cls == "h-hs-confusion":
            header = {"alg": "HS256", "typ": "at+jwt", "kid": h_kid}
            unsigned = self._raw(header, c)[:-1]  # drop the trailing '.'
            mac = hmac.new(h_pub, unsigned.encode(), hashlib.sha256).digest()
            tok = unsigned + "." + _b64(mac)
        elif cls == "h-other-key":
            tok = jwt.encode(c, self.foreign_key[issuer], algorithm=h_alg,
                             headers={"kid": h_kid, "typ": "at+jwt"})
        elif cls == "h-unknown-iss":
            c.update(iss="https://wwsf.attacker.example")
            tok = hostile(c)
        elif cls == "h-forged-iss":
            # claims naming the other issuer (and an identity of its pool),
            # signed with our key under the other issuer's kid
            oc = self.claims(other, user, now)
            o_kid, o_alg, _, _ = self.hostile_key[other]
            tok = jwt.encode(oc, self.foreign_key[other], algorithm=o_alg,
                             headers={"kid": o_kid, "typ": "at+jwt"})
            # the To stays ours: refused for the signature, and for the To
        elif cls == "h-impi-pool":
            c.update(impi="%s@%s" % (user, DOMAIN[other]))
            tok = hostile(c)
        elif cls == "h-to-mismatch":
            c = self.claims(issuer, "victim-of-" + user, now)
            tok = hostile(c)
        elif cls == "h-too-large":
            c.update(pad="x" * 9000)
            tok = self.sign(c, issuer, hs_kid)
        elif cls == "h-garbage":
            kind = self.rng.randrange(4)
            if kind == 0:
                tok = _b64(self.rng.randbytes(self.rng.randrange(10, 600)))
            elif kind == 1:
                tok = ".".join(_b64(self.rng.randbytes(self.rng.randrange(1, 200)))
                               for _ in range(3))
            elif kind == 2:
                tok = "eyJ" + "".join(self.rng.choice("!$%&*+-/=?^_{|}~")
                                      for _ in range(80))
            else:
                tok = "..."
        elif cls == "h-basic":
            return "Basic " + base64.b64encode(b"%s:secret" % user.encode()).decode()
        else:
            raise ValueError(cls)
        pool = {"v-ed": "ed", "v-refresh": "ed", "v-es256-old": "old",
                "v-refresh-old": "old"}.get(cls)
        if pool:
            seen = self.sent.setdefault((pool, user), [])
            seen.append(tok)
            del seen[:-8]
        return "Bearer " + tok


def client_rows(minter, issuer, user, n, phase, index0=0, now=None):
    """n rows for one client (one sipp instance, one UDP socket, one IMPU):
    a deterministic shuffle of valid and hostile classes."""
    now = now or int(time.time())
    valid = VALID_A if issuer == "a" else VALID_B
    rng = minter.rng
    impu = "sip:%s@%s" % (user, DOMAIN[issuer])
    rows = []
    for i in range(n):
        if rng.random() < HOSTILE_SHARE:
            cls = HOSTILE[rng.randrange(len(HOSTILE))]
        else:
            cls = valid[rng.randrange(len(valid))]
        auth = minter.authorization(cls, issuer, user, now)
        assert ";" not in auth and "\n" not in auth and "\r" not in auth
        rid = "%s.%s.%s.%d" % (phase, user, cls, index0 + i)
        rows.append((rid, impu, auth, user))
    return rows


def write_injection(path, rows):
    """sipp -inf file: fields [field0] row id, [field1] IMPU (To and From),
    [field2] Authorization value, [field3] contact user; used in order."""
    with open(path, "w") as f:
        f.write("SEQUENTIAL\n")
        for r in rows:
            f.write(";".join(r) + "\n")


def row_class(rid):
    return rid.split(".")[2]

"""Access tokens for the e2e tests: minted independently with PyJWT, or with
our CLI (`wic-tna mint`)."""

import subprocess
import time

import jwt  # PyJWT

from harness import CLI, ISSUER_A, ISSUER_B, KEYS

SCOPE = "webrtc-ims-client-access-to-ims"
AUDIENCE = "ims.example.net"

ISSUERS = {
    "a": {"iss": ISSUER_A, "kid": "a-es256", "key": KEYS / "issuer-a-p256.key",
          "domain": "socialnet.ims.example.net"},
    "b": {"iss": ISSUER_B, "kid": "b-es256", "key": KEYS / "issuer-b-p256.key",
          "domain": "gamenet.ims.example.net"},
}


def identity(issuer="a", user="alice"):
    d = ISSUERS[issuer]["domain"]
    return "%s@%s" % (user, d), "sip:%s@%s" % (user, d)


def mint(issuer="a", user="alice", impi=None, impus=None, iss=None, aud=AUDIENCE,
         scope=SCOPE, lifetime=300, iat_offset=0, nbf_offset=None,
         exp_offset=None, kid=None, alg="ES256", key_issuer=None, typ="at+jwt",
         sub="web-user-1", extra=None, drop=()):
    """A JWT signed with PyJWT. key_issuer signs with another issuer's key
    (bad signature); drop removes claims."""
    d = ISSUERS[issuer]
    k = ISSUERS[key_issuer or issuer]
    default_impi, default_impu = identity(issuer, user)
    now = int(time.time())
    claims = {
        "iss": iss or d["iss"],
        "aud": aud,
        "iat": now + iat_offset,
        "exp": now + (exp_offset if exp_offset is not None else lifetime),
        "scope": scope,
        "impi": impi or default_impi,
        "impu": impus if impus is not None else [default_impu],
        "sub": sub,
        "jti": "jti-%d-%s" % (now, user),
    }
    if nbf_offset is not None:
        claims["nbf"] = now + nbf_offset
    claims.update(extra or {})
    for name in drop:
        claims.pop(name, None)
    headers = {"kid": kid or k["kid"]}
    if typ:
        headers["typ"] = typ
    return jwt.encode(claims, k["key"].read_bytes(), algorithm=alg,
                      headers=headers)


def mint_cli(issuer="a", user="alice", lifetime=300, impus=None, scope=SCOPE,
             aud=AUDIENCE, extra_args=()):
    """A JWT from `wic-tna mint`."""
    d = ISSUERS[issuer]
    impi, impu = identity(issuer, user)
    cmd = [str(CLI), "mint", "--key", str(d["key"]), "--alg", "ES256",
           "--iss", d["iss"], "--kid", d["kid"], "--impi", impi,
           "--aud", aud, "--scope", scope, "--lifetime", str(lifetime)]
    for u in (impus or [impu]):
        cmd += ["--impu", u]
    cmd += list(extra_args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, "wic-tna mint failed: %s" % r.stderr
    return r.stdout.strip()


def tamper(token):
    """Flip a character of the signature."""
    head, payload, sig = token.split(".")
    c = "A" if sig[5] != "A" else "B"
    return ".".join([head, payload, sig[:5] + c + sig[6:]])

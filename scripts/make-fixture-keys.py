#!/usr/bin/env python3
"""Build tests/fixtures/keys/issuer-b.jwks.json from issuer B's public PEM
keys with jwcrypto (an implementation independent of wic-tna).

The PEM keys themselves were made once with openssl (see README, 'Test keys'):
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 | openssl pkcs8 -topk8 -nocrypt
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 (P-384) ...
  openssl genpkey -algorithm ED25519 ...
"""
import json, pathlib
from jwcrypto import jwk

d = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "keys"
keys = []
for kid, f in [("b-rsa", "issuer-b-rsa.pub.pem"), ("b-es256", "issuer-b-p256.pub.pem"), ("b-ed", "issuer-b-ed25519.pub.pem")]:
    k = jwk.JWK.from_pem((d / f).read_bytes())
    e = json.loads(k.export_public())
    e["kid"] = kid
    e["use"] = "sig"
    keys.append(e)
# An encryption key is in real-world sets too: it must be skipped.
enc = json.loads(jwk.JWK.from_pem((d / "issuer-b-p384.pub.pem").read_bytes()).export_public())
enc.update({"kid": "b-enc", "use": "enc"})
keys.append(enc)
(d / "issuer-b.jwks.json").write_text(json.dumps({"keys": keys}, indent=2) + "\n")
print("wrote", d / "issuer-b.jwks.json")

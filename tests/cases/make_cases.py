#!/usr/bin/env python3
"""Write the shared verification cases, with tokens made by PyJWT (an
implementation independent of wic-tna) from the fixture keys, for
config/wic-tna.toml. Used by the Rust tests and the C harness.

Output: one case a line, fields separated by TAB:
  name  status  reason  challenge  authorization  to  impi  tna  setup
`challenge` is `-` (no WWW-Authenticate), or a prefix the WWW-Authenticate
value must start with; `to` is `-` for no To check; `impi` and `tna` are
`-` for rejections; `setup` is `-` or `bar=<iss>` (bar that issuer first).
Times are relative to now, so the file must be used at once.
"""
import base64, hashlib, hmac, json, pathlib, sys, time
import jwt  # PyJWT

ROOT = pathlib.Path(__file__).resolve().parents[2]
K = ROOT / "tests" / "fixtures" / "keys"
A = "https://wwsf.socialnet.example"
B = "https://wwsf.gamenet.example"
REALM = "ims.example.net"
SCOPE = "webrtc-ims-client-access-to-ims"
AUD = "ims.example.net"
NOW = int(time.time())
IMPI_A = "alice@socialnet.ims.example.net"
IMPU_A = "sip:alice@socialnet.ims.example.net"
IMPI_B = "bob@gamenet.ims.example.net"
IMPU_B = "sip:bob@gamenet.ims.example.net"
TNA = ('Digest username="{impi}", realm="ims.example.net", uri="sip:ims.example.net", nonce="", '
       'response="", integrity-protected=auth-done, authorization-entity="{iss}"')
CH_MISSING = f'Bearer realm="{REALM}", scope="{SCOPE}", authz_server="https://wwsf.socialnet.example/authorize"'
CH_INVALID_TOKEN = f'Bearer realm="{REALM}", error="invalid_token", error_description="'
CH_INVALID_REQUEST = f'Bearer realm="{REALM}", error="invalid_request"'
CH_SCOPE = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{SCOPE}"'


def key(name):
    return (K / name).read_bytes()


def secret(name):
    return (K / name).read_bytes().strip()


def claims(iss=A, impi=IMPI_A, impu=IMPU_A, **over):
    c = {"iss": iss, "aud": AUD, "scope": SCOPE, "impi": impi, "impu": impu,
         "sub": "web-user-42", "iat": NOW, "exp": NOW + 600}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def tok(alg, keyfile, kid, c, hmac_key=False, typ="at+jwt"):
    k = secret(keyfile) if hmac_key else key(keyfile)
    return jwt.encode(c, k, algorithm=alg, headers={"kid": kid, "typ": typ})


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def raw(header, payload, sign):
    si = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    return si + "." + b64(sign(si.encode()))


cases = []


def case(name, status, reason, challenge, auth, to=IMPU_A, impi="-", tna="-", setup="-"):
    cases.append([name, str(status), reason, challenge, auth, to or "-", impi, tna, setup])


def ok(name, auth, impi=IMPI_A, iss=A, to=IMPU_A):
    case(name, 200, "ok", "-", auth, to, impi, TNA.format(impi=impi, iss=iss))


# --- accepted, every algorithm, both issuers -----------------------------
for alg, f, kid, h in [("HS256", "issuer-a-hmac.secret", "a-hs256", True),
                       ("HS384", "issuer-a-hmac.secret", "a-hs256", True),
                       ("HS512", "issuer-a-hmac.secret", "a-hs256", True),
                       ("RS256", "issuer-a-rsa.key", "a-rsa", False),
                       ("RS512", "issuer-a-rsa.key", "a-rsa", False),
                       ("PS256", "issuer-a-rsa.key", "a-rsa", False),
                       ("PS384", "issuer-a-rsa.key", "a-rsa", False),
                       ("RS256", "issuer-a-rsa.key", "a-cert", False),
                       ("ES256", "issuer-a-p256.key", "a-es256", False),
                       ("ES384", "issuer-a-p384.key", "a-es384", False),
                       ("EdDSA", "issuer-a-ed25519.key", "a-ed", False)]:
    ok(f"accept_a_{alg}_{kid}", "Bearer " + tok(alg, f, kid, claims(), h))
for alg, f, kid, h in [("RS256", "issuer-b-rsa.key", "b-rsa", False),
                       ("PS256", "issuer-b-rsa.key", "b-rsa", False),
                       ("ES256", "issuer-b-p256.key", "b-es256", False),
                       ("EdDSA", "issuer-b-ed25519.key", "b-ed", False),
                       ("HS256", "issuer-b-hmac.secret", "b-hs256", True)]:
    ok(f"accept_b_{alg}_{kid}", "Bearer " + tok(alg, f, kid, claims(B, IMPI_B, IMPU_B), h),
       impi=IMPI_B, iss=B, to=IMPU_B)
t = tok("ES256", "issuer-a-p256.key", "a-es256", claims(impu=[IMPU_A, "tel:+15550100"]))
ok("accept_two_impus_to_second", "Bearer " + t, to="tel:+1-555-0100")
ok("accept_access_token_param", 'Bearer access_token="%s"' % tok("RS256", "issuer-a-rsa.key", "a-rsa", claims()))
ok("accept_bare_token", tok("EdDSA", "issuer-a-ed25519.key", "a-ed", claims()))
# RFC 3261 19.1.4: scheme and host in any case, the user part
# case-sensitive with its unreserved escapes decoded.
ok("accept_to_name_addr", "Bearer " + tok("HS256", "issuer-a-hmac.secret", "a-hs256", claims(), True),
   to='"Alice" <SIP:alice@SocialNet.IMS.example.net>;tag=1')
ok("accept_to_user_escaped", "Bearer " + tok("HS256", "issuer-a-hmac.secret", "a-hs256", claims(), True),
   to="sip:%61lic%65@socialnet.ims.example.net")
ok("accept_typ_jwt", "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(), typ="JWT"))

good = tok("ES256", "issuer-a-p256.key", "a-es256", claims())

# --- doc/protocol.md failure rows -----------------------------------------
case("no_token_digest", 401, "missing_token", CH_MISSING, 'Digest username="alice", realm="x"')
case("malformed_bearer_only", 400, "malformed_request", CH_INVALID_REQUEST, "Bearer")
case("malformed_two_tokens", 400, "malformed_request", CH_INVALID_REQUEST, "Bearer a.b.c d.e.f")
case("malformed_empty_access_token", 400, "malformed_request", CH_INVALID_REQUEST, 'Bearer access_token=""')
h, p, s = good.split(".")
tampered = h + "." + b64(json.dumps(claims(impi="mallory@socialnet.ims.example.net")).encode()) + "." + s
case("bad_signature_tampered", 401, "bad_signature", CH_INVALID_TOKEN, "Bearer " + tampered)
case("bad_signature_other_key_same_kid", 401, "bad_signature", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-b-p256.key", "a-es256", claims()))
case("expired", 401, "expired", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(iat=NOW - 200, exp=NOW - 31)))
# A registration (the cases ask for 600 s) with the token past exp but
# within the leeway, or with less than min_registration_expires (60 s)
# left: expired, not a registration of 0 s (a de-registration).
case("expired_within_leeway_registration", 401, "expired", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(exp=NOW - 20, iat=NOW - 100)))
case("expired_too_little_left_for_registration", 401, "expired", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(exp=NOW + 30)))
case("to_user_other_case", 403, "to_impu_not_in_token", "-",
     "Bearer " + good, to="sip:Alice@socialnet.ims.example.net")
case("not_yet_valid", 401, "not_yet_valid", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(nbf=NOW + 100)))
case("issued_in_future", 401, "issued_in_future", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(iat=NOW + 100, exp=NOW + 600)))
case("lifetime_too_long", 401, "lifetime_too_long", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(exp=NOW + 7200)))
case("unknown_issuer", 401, "unknown_issuer", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(iss="https://evil.example")))
case("unknown_kid", 401, "unknown_key", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "nope", claims()))
case("wrong_audience", 401, "wrong_audience", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(aud="other.example.net")))
case("audience_array_without_ours", 401, "wrong_audience", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(aud=["x", "y"])))
case("audience_missing", 401, "wrong_audience", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(aud=None)))
case("wrong_typ", 401, "wrong_token_type", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(), typ="dpop+jwt"))
case("scope_missing_value", 403, "insufficient_scope", CH_SCOPE,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(scope="openid profile")))
case("scope_near_miss", 403, "insufficient_scope", CH_SCOPE,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(scope=SCOPE + "-x")))
case("issuer_barred", 403, "issuer_barred", "-",
     "Bearer " + tok("ES256", "issuer-b-p256.key", "b-es256", claims(B, IMPI_B, IMPU_B)), to=IMPU_B,
     setup="bar=" + B)
case("impi_outside_pool", 403, "impi_outside_pool", "-",
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(impi="alice@gamenet.ims.example.net")))
case("impu_outside_pool", 403, "impu_outside_pool", "-",
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(impu="sip:alice@gamenet.ims.example.net")),
     to="sip:alice@gamenet.ims.example.net")
case("to_impu_not_in_token", 403, "to_impu_not_in_token", "-",
     "Bearer " + good, to="sip:carol@socialnet.ims.example.net")
case("invalid_impi_quote", 401, "invalid_impi", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(impi='a"b@socialnet.ims.example.net')))
case("invalid_impi_crlf", 401, "invalid_impi", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-es256", claims(impi="a\r\nVia: x@socialnet.ims.example.net")))

# --- issuer A's key never validates issuer B's token --------------------
case("cross_issuer_kid_of_a", 401, "unknown_key", CH_INVALID_TOKEN,
     "Bearer " + tok("RS256", "issuer-a-rsa.key", "a-rsa", claims(B, IMPI_B, IMPU_B)), to=IMPU_B)
case("cross_issuer_a_key_b_kid", 401, "bad_signature", CH_INVALID_TOKEN,
     "Bearer " + tok("RS256", "issuer-a-rsa.key", "b-rsa", claims(B, IMPI_B, IMPU_B)), to=IMPU_B)
case("cross_issuer_a_secret_b_kid", 401, "bad_signature", CH_INVALID_TOKEN,
     "Bearer " + tok("HS256", "issuer-a-hmac.secret", "b-hs256", claims(B, IMPI_B, IMPU_B), True), to=IMPU_B)

# --- algorithm confusion --------------------------------------------------
for n, a in [("alg_none", "none"), ("alg_None", "None"), ("alg_NONE", "NONE")]:
    case(n, 401, "unsupported_algorithm", CH_INVALID_TOKEN,
         "Bearer " + raw({"alg": a, "kid": "a-es256"}, claims(), lambda si: b"x"))
pub = key("issuer-a-rsa.pub.pem")
case("hs256_with_rsa_public_key", 401, "unsupported_algorithm", CH_INVALID_TOKEN,
     "Bearer " + raw({"alg": "HS256", "kid": "a-rsa", "typ": "at+jwt"}, claims(),
                     lambda si: hmac.new(pub, si, hashlib.sha256).digest()))
case("es256_token_on_rsa_kid", 401, "unsupported_algorithm", CH_INVALID_TOKEN,
     "Bearer " + tok("ES256", "issuer-a-p256.key", "a-rsa", claims()))

out = sys.stdout if len(sys.argv) < 2 else open(sys.argv[1], "w")
for c in cases:
    for f in c:
        assert "\t" not in f and "\n" not in f.replace("\r\n", ""), c[0]
    out.write("\t".join(c) + "\n")

#!/usr/bin/env bash
# Seed the fuzz corpora: valid tokens of every algorithm (minted for the
# fixed time the verify target uses), and the header forms.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
W=target/release/wic-tna; K=tests/fixtures/keys; IAT=1699999900
mkdir -p fuzz/corpus/{header,verify,config,scscf}
i=0
for spec in "HS256 a-hs256 issuer-a-hmac.secret" "RS256 a-rsa issuer-a-rsa.key" "PS256 a-rsa issuer-a-rsa.key" \
            "ES256 a-es256 issuer-a-p256.key" "ES384 a-es384 issuer-a-p384.key" "EdDSA a-ed issuer-a-ed25519.key"; do
  set -- $spec
  t=$($W mint --key $K/$3 --alg $1 --kid $2 --iss https://wwsf.socialnet.example --impi alice@socialnet.ims.example.net \
      --impu sip:alice@socialnet.ims.example.net --impu tel:+15550100 --iat $IAT --lifetime 600)
  printf 'Bearer %s\xffsip:alice@socialnet.ims.example.net' "$t" > fuzz/corpus/verify/tok$i
  printf 'Bearer access_token="%s"' "$t" > fuzz/corpus/header/tok$i
  printf '%s' "$t" > fuzz/corpus/header/bare$i
  i=$((i+1))
done
cp config/wic-tna.toml fuzz/corpus/config/example.toml
printf 'Digest username="alice@socialnet.ims.example.net", realm="ims.example.net", uri="sip:ims.example.net", nonce="", response="", integrity-protected=auth-done, authorization-entity="https://a"' > fuzz/corpus/scscf/tna
printf 'Digest username="a@b", integrity-protected="auth-done"' > fuzz/corpus/scscf/quoted
echo "seeded fuzz/corpus"

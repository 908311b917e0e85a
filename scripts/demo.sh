#!/usr/bin/env bash
# wic-tna demo: the seed flow on loopback. WebRTC IMS Clients register
# through a Kamailio eP-CSCF (native wic_tna module) with OAuth 2.0 access
# tokens; Debian's Kamailio IMS S-CSCF registers them with the HSS without
# a challenge (Trusted Node Authentication); they can then reach each other.
#
#   bash scripts/demo.sh
#
# 1. installs what it needs (scripts/install-deps.sh) and builds the module
# 2. starts an HSS stand-in (tests/ims/hss.py), the IMS S-CSCF
#    (kamailio-example/ims/scscf.cfg) and the eP-CSCF
#    (kamailio-example/epcscf.cfg) on free loopback ports, in a temp dir
# 3. alice and bob register over secure WebSocket with tokens minted by
#    `wic-tna mint`: the TNA header and Path that reached the S-CSCF, the
#    HSS's SAR and no MAR
# 4. alice sends bob a MESSAGE with a P-Asserted-Identity of her own
#    choosing; bob receives the identity the eP-CSCF asserts
# 5. an expired token gets 401 and its Bearer challenge; an issuer barred
#    at the S-CSCF is refused there although the eP-CSCF accepts its token
# 6. stops everything it started (logs kept when a step fails)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "installing dependencies and building (scripts/install-deps.sh)"
bash scripts/install-deps.sh
say "building the Kamailio module (kamailio-example/module/build.sh)"
bash kamailio-example/module/build.sh >/dev/null

exec python3 scripts/demo.py

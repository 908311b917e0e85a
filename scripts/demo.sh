#!/usr/bin/env bash
# wic-tna demo: a WebRTC IMS Client registers through a Kamailio eP-CSCF
# (native wic_tna module) to a Kamailio S-CSCF with an OAuth 2.0 access
# token, on loopback only.
#
#   bash scripts/demo.sh
#
# 1. installs what it needs (scripts/install-deps.sh) and builds the module
# 2. starts the S-CSCF and the eP-CSCF on free loopback ports (temp dir)
# 3. mints a token with `wic-tna mint` and registers alice over UDP
# 4. shows the TNA header that reached the S-CSCF and the registered
#    contact with its expiry (kamcmd ul.dump)
# 5. shows a rejected (expired) token and its Bearer challenge
# 6. stops everything it started
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "installing dependencies and building (scripts/install-deps.sh)"
bash scripts/install-deps.sh
say "building the Kamailio module (kamailio-example/module/build.sh)"
bash kamailio-example/module/build.sh >/dev/null

KAMAILIO=/usr/sbin/kamailio
KAMCMD=/usr/sbin/kamcmd
CLI=$repo/target/release/wic-tna
MODULE=$repo/build/wic_tna/wic_tna.so
CONFIG=$repo/config/wic-tna.toml
PY=python3

tmp=$(mktemp -d /tmp/wic-tna-demo.XXXXXX)
pids=()
cleanup() {
    local rc=$?
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ $rc -ne 0 ]; then
        echo "demo failed (exit $rc); logs kept in $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

read -r EP_SIP EP_WS EP_WSS EP_CORE SCSCF_PORT < <(cd tests/e2e && $PY -c \
    'from harness import free_port; print(*(free_port() for _ in range(5)))')

# a throw-away certificate for the eP-CSCF's secure WebSocket listener
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 1 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$tmp/epcscf.key" -out "$tmp/epcscf.crt" 2>/dev/null

start_kamailio() { # name cfg defines...
    local name=$1 cfg=$2
    shift 2
    mkdir -p "$tmp/$name"
    local args=(-DD -E -f "$cfg" -Y "$tmp/$name" -P "$tmp/$name/kamailio.pid"
                -w "$tmp/$name" -m 128 -M 8
                -A "CTL_SOCKET=\"unix:$tmp/$name/ctl.sock\""
                -A "WIC_TNA_CONFIG=\"$CONFIG\"" -A "WIC_TNA_MODULE=\"$MODULE\"")
    local d
    for d in "$@"; do args+=(-A "$d"); done
    "$KAMAILIO" "${args[@]}" >"$tmp/$name.log" 2>&1 &
    pids+=($!)
    local i
    for i in $(seq 1 100); do
        if "$KAMCMD" -s "unix:$tmp/$name/ctl.sock" core.uptime >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then
            cat "$tmp/$name.log" >&2
            echo "$name did not start" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "$name not ready" >&2
    return 1
}

say "starting the S-CSCF (udp:127.0.0.1:$SCSCF_PORT) and the eP-CSCF (udp/tcp:127.0.0.1:$EP_SIP, ws:127.0.0.1:$EP_WS, wss:127.0.0.1:$EP_WSS; core side udp:127.0.0.1:$EP_CORE)"
start_kamailio scscf kamailio-example/scscf.cfg "SCSCF_PORT=$SCSCF_PORT"
start_kamailio epcscf kamailio-example/epcscf.cfg "EP_SIP_PORT=$EP_SIP" \
    "EP_WS_PORT=$EP_WS" "EP_WSS_PORT=$EP_WSS" "EP_CORE_PORT=$EP_CORE" \
    "SCSCF_PORT=$SCSCF_PORT" "TLS_CERT=\"$tmp/epcscf.crt\"" \
    "TLS_KEY=\"$tmp/epcscf.key\"" "WIC_TNA_STATE_FILE=\"$tmp/epcscf.state\""
echo "eP-CSCF runs libwic_tna $("$KAMCMD" -s "unix:$tmp/epcscf/ctl.sock" wic_tna.version)"

ISS=https://wwsf.socialnet.example
IMPI=alice@socialnet.ims.example.net
IMPU=sip:alice@socialnet.ims.example.net
mint() {
    "$CLI" mint --key tests/fixtures/keys/issuer-a-p256.key --alg ES256 \
        --iss "$ISS" --kid a-es256 --impi "$IMPI" --impu "$IMPU" \
        --aud ims.example.net --scope webrtc-ims-client-access-to-ims "$@"
}

say "the WWSF issues alice a token valid for 600 s (wic-tna mint)"
TOKEN=$(mint --lifetime 600)
echo "$TOKEN" | cut -c1-72 | sed 's/$/.../'

say "alice's WIC sends REGISTER (Expires: 3600) with Authorization: Bearer <token>"
$PY tests/e2e/sipclient.py register --udp "127.0.0.1:$EP_SIP" --aor "$IMPU" \
    --token "$TOKEN" --expires 3600

say "what reached the S-CSCF: one Authorization, the TNA header"
sleep 0.2
grep -o 'auth_count=[0-9]* auth=\[Digest[^]]*\]' "$tmp/scscf.log" | tail -n 1 \
    | sed 's/ auth=\[/\nAuthorization: /; s/\]$//'

say "the contact registered at the S-CSCF, expiry capped at the token's lifetime (kamcmd ul.dump)"
"$KAMCMD" -s "unix:$tmp/scscf/ctl.sock" ul.dump \
    | grep -E '^\s*(AoR|Address|Expires):' | sed 's/^\s*/  /'

say "an expired token is refused at the eP-CSCF: 401 with a Bearer challenge, nothing forwarded"
OLD=$(mint --lifetime 600 --iat-offset -1200)
$PY tests/e2e/sipclient.py register --udp "127.0.0.1:$EP_SIP" --aor "$IMPU" \
    --token "$OLD" --expires 3600 || true

say "eP-CSCF counters (kamcmd wic_tna.stats)"
"$KAMCMD" -s "unix:$tmp/epcscf/ctl.sock" wic_tna.stats

say "stopping"

#!/usr/bin/env bash
# The alert rules of monitoring/: syntax (promtool check rules) and unit
# tests with synthetic series (promtool test rules), firing and not firing.
# promtool comes with Debian's prometheus package (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")"
command -v promtool >/dev/null || { echo "monitoring/test.sh: no promtool (apt-get install prometheus)" >&2; exit 1; }
promtool check rules wic-tna-rules.yml
promtool test rules wic-tna-rules.test.yml

"""Print one access token (tokens.mint) on stdout: the token source of the
browser WICs (tests/browser/wic.mjs runs this for each GET /token?... of a
page, with the query's parameters as --name value).

    python3 tests/e2e/mint_token.py --issuer a --user alice --lifetime 300

Every token gets its own jti (a refresh within the same second must not
look like a replay)."""

import argparse
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tokens import mint  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--issuer", default="a", choices=["a", "b"],
                   help="whose key and claims (tokens.ISSUERS)")
    p.add_argument("--user", default="alice", help="user part of IMPI/IMPU")
    p.add_argument("--lifetime", type=int, default=300, help="seconds")
    p.add_argument("--impu", action="append", default=None,
                   help="an IMPU claim (repeat); default: the user's SIP URI")
    # the page may add its own parameters (e.g. a cache buster): ignored
    args, _unknown = p.parse_known_args(argv)
    token = mint(issuer=args.issuer, user=args.user, lifetime=args.lifetime,
                 impus=args.impu,
                 extra={"jti": "jti-browser-%s" % uuid.uuid4().hex})
    sys.stdout.write(token + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``ecrctl http-token NAME --roles ROLE…``: a new bearer token for an ``[[http.client]]``.

Made here, never sent anywhere: the token is printed once (ecrd keeps only its SHA-256),
with the TOML lines to paste into ecrd's config, then ``ecrctl reload``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
from typing import Any, Final

from ecrd.ctl_out import EXIT_OK
from ecrd.http_config import NAME_RE, ROLES

TOKEN_BYTES: Final = 32  # 256 bits, URL-safe base64: 43 characters of A-Z a-z 0-9 - _


def client_name(value: str) -> str:
    if not NAME_RE.match(value):
        raise argparse.ArgumentTypeError("letters, digits, '.', '_' or '-' (at most 64)")
    return value


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "http-token", help="a new bearer token for an HTTP client, and the [[http.client]] lines"
    )
    p.add_argument("name", type=client_name, help="the client's name (roles, audit, limits)")
    p.add_argument("--roles", nargs="+", choices=ROLES, required=True, help="its roles")


def cmd_http_token(args: argparse.Namespace) -> int:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    entry = {
        "name": args.name,
        "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
        "roles": sorted(set(args.roles), key=ROLES.index),
    }
    # The name is of NAME_RE's characters, the hash hex: JSON's strings are TOML's here.
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items())
    lines = f"[[http.client]]\n{lines}"
    if args.json:
        print(json.dumps({**entry, "token": token, "toml": lines}))
        return EXIT_OK
    print(f"token for {args.name} (shown once: ecrd keeps only its SHA-256):\n\n  {token}\n")
    print("Add to the config file, then `ecrctl reload`:\n")
    print(lines, end="")
    return EXIT_OK

"""``ecrctl http-token``: a new token, said once, and TOML lines that [http] takes as they
are, whose hash is the token's."""

from __future__ import annotations

import hashlib
import json
import tomllib

import pytest

from ecrd import ctl
from ecrd.http_config import parse_http


def test_the_printed_lines_are_a_client_whose_hash_is_the_printed_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert ctl.main(["http-token", "web-pos", "--roles", "sell", "read"]) == 0
    out = capsys.readouterr().out
    token = out.split("\n\n")[1].strip()
    lines = out[out.index("[[http.client]]") :]
    table = tomllib.loads(lines)["http"]
    cfg = parse_http({"listen": "127.0.0.1:8765", **table})
    assert cfg is not None
    (client,) = cfg.clients
    assert (client.name, client.roles) == ("web-pos", frozenset({"read", "sell"}))
    assert client.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert 'roles = ["read", "sell"]' in lines


def test_each_token_is_new_and_json_says_it_all(capsys: pytest.CaptureFixture[str]) -> None:
    tokens = set()
    for _ in range(2):
        assert ctl.main(["--json", "http-token", "office", "--roles", "admin"]) == 0
        said = json.loads(capsys.readouterr().out)
        assert said["token_sha256"] == hashlib.sha256(said["token"].encode()).hexdigest()
        assert len(said["token"]) >= 43
        tokens.add(said["token"])
    assert len(tokens) == 2


@pytest.mark.parametrize("argv", [["bad name", "--roles", "sell"], ["x", "--roles", "root"],
                                  ["x"]])  # fmt: skip
def test_a_bad_name_or_role_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        ctl.main(["http-token", *argv])
    assert exit_.value.code == 2

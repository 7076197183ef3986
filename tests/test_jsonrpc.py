"""The socket's line framing and JSON-RPC parsing, without sockets."""

from __future__ import annotations

import json

from ecrd.api import jsonrpc
from ecrd.api.jsonrpc import LineReader, Request, TooLong, parse


def test_lines_come_out_whole_in_any_chunking() -> None:
    data = b'{"a":1}\n{"b":2}\r\n\n{"c":3}\n'
    for size in range(1, len(data) + 1):
        reader = LineReader(cap=100)
        out = []
        for i in range(0, len(data), size):
            out += reader.feed(data[i : i + size])
        assert out == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


def test_an_oversized_line_is_reported_once_and_the_next_line_survives() -> None:
    reader = LineReader(cap=10)
    out = reader.feed(b"x" * 25)
    out += reader.feed(b"y" * 25 + b'\n{"ok":1}\n')
    assert isinstance(out[0], TooLong)
    assert out[1:] == [b'{"ok":1}']
    assert len(out) == 2


def test_oversized_line_in_one_chunk() -> None:
    out = LineReader(cap=10).feed(b"z" * 50 + b"\n" + b"[]\n")
    assert isinstance(out[0], TooLong) and out[1] == b"[]"


def test_a_valid_request_parses() -> None:
    req = parse(b'{"jsonrpc":"2.0","id":7,"method":"ping"}')
    assert req == Request(method="ping", params={}, id=7, is_notification=False)


def test_a_notification_has_no_id() -> None:
    req = parse(b'{"jsonrpc":"2.0","method":"ping"}')
    assert isinstance(req, Request) and req.is_notification


def code_of(line: bytes) -> int:
    reply = parse(line)
    assert isinstance(reply, dict)
    json.dumps(reply)  # always serialisable
    return int(reply["error"]["code"])


def test_bad_lines_get_the_standard_codes() -> None:
    assert code_of(b"{") == jsonrpc.PARSE_ERROR
    assert code_of(b"\xff\xfe") == jsonrpc.PARSE_ERROR
    assert code_of(b"[]") == jsonrpc.INVALID_REQUEST  # an empty batch: one error
    assert code_of(b"42") == jsonrpc.INVALID_REQUEST
    assert code_of(b'{"jsonrpc":"1.0","id":1,"method":"ping"}') == jsonrpc.INVALID_REQUEST
    assert code_of(b'{"jsonrpc":"2.0","id":1}') == jsonrpc.INVALID_REQUEST
    assert code_of(b'{"jsonrpc":"2.0","id":{},"method":"ping"}') == jsonrpc.INVALID_REQUEST
    assert code_of(b'{"jsonrpc":"2.0","id":true,"method":"ping"}') == jsonrpc.INVALID_REQUEST
    assert (
        code_of(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}') == jsonrpc.INVALID_PARAMS
    )


def test_errors_keep_the_request_id_when_it_is_readable() -> None:
    reply = parse(b'{"jsonrpc":"1.0","id":"abc","method":"ping"}')
    assert isinstance(reply, dict) and reply["id"] == "abc"


def test_a_batch_is_its_members_each_a_request_or_its_own_error() -> None:
    batch = parse(b'[1, {"jsonrpc":"2.0","id":1,"method":"ping"}, {"jsonrpc":"2.0","method":"x"}]')
    assert isinstance(batch, jsonrpc.Batch)
    error, request, notification = batch.members
    assert isinstance(error, dict) and error["error"]["code"] == jsonrpc.INVALID_REQUEST
    assert isinstance(request, Request) and request.id == 1
    assert isinstance(notification, Request) and notification.is_notification


def test_a_notification_by_position_is_never_answered() -> None:
    assert parse(b'{"jsonrpc":"2.0","method":"sum","params":[1,2]}') is None

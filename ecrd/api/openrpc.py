"""The API as an OpenRPC 1.2.6 document, made from the declarations the server validates
with (``api/declarations.py``), the roles it checks (``api/roles.py``) and the error tree
(``ecrd/errors.py``): ``document()``. It is served (``GET /openrpc.json``), kept in
``docs/openrpc.json`` (``python -m ecrd.docgen openrpc``; a test says the file is
current), and the clients' types and error classes are made from it.

Extensions: ``x-roles`` on a method, the role it needs (``[access]``; an empty list: any
caller who can connect), and on an error ``data.reason``, the stable string clients
switch on (several reasons share a code).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, Final

from ecrd import __version__, errors
from ecrd.api import jsonrpc
from ecrd.api.declarations import SCHEMAS, SPECS
from ecrd.api.params import MethodSpec
from ecrd.api.roles import ROLES

OPENRPC_VERSION: Final = "1.2.6"
# The reasons of the JSON-RPC framing and of the connection, below the methods
# (api/jsonrpc.py, api/server.py); what each means: docs/api.md, "Errors".
PROTOCOL_ERRORS: Final = (
    (jsonrpc.PARSE_ERROR, "parse_error"),
    (jsonrpc.INVALID_REQUEST, "invalid_request"),
    (jsonrpc.INVALID_REQUEST, "line_too_long"),
    (jsonrpc.METHOD_NOT_FOUND, "method_not_found"),
    (jsonrpc.INTERNAL_ERROR, "internal_error"),
    (-32000, "too_many_clients"),
)
DESCRIPTION: Final = (
    "ecrd's JSON-RPC 2.0 API: one JSON text per line on the Unix socket "
    "(/run/ecrd/ecrd.sock), or POST /rpc and the WebSocket /ws of the HTTP endpoint. "
    "Params are by name; an unknown one is invalid_params. x-roles: the role a method "
    "needs ([access]; sell, refund and admin include read; none: anyone who can connect). "
    "Every error has data.reason, the stable string to switch on. docs/api.md tells the "
    "whole story."
)


def error_reasons() -> list[tuple[int, str]]:
    """Every reason an error can carry, with its code: in code order (-32700 first), the
    reason of a class before the more precise ones it may carry."""
    found = [*PROTOCOL_ERRORS]
    for cls in errors.ApiError.__subclasses__():
        found += [(cls.code, reason) for reason in (cls.reason, *cls.also)]
    return sorted(found, key=lambda e: e[0])  # stable: a class's own reason first


def _method(spec: MethodSpec) -> dict[str, Any]:
    role = ROLES.get(spec.name)
    return {
        "name": spec.name,
        "summary": spec.summary,
        "paramStructure": "by-name",
        "params": [
            {
                "name": p.name,
                "description": p.describe(),
                "required": p.required,
                "schema": p.schema(),
            }
            for p in spec.params
        ],
        "result": {"name": "result", "schema": spec.result},
        "x-roles": [role] if role else [],
    }


@cache
def _document() -> str:
    doc = {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": "ecrd", "version": __version__, "description": DESCRIPTION},
        "servers": [
            {"name": "socket", "url": "unix:/run/ecrd/ecrd.sock"},
            {"name": "http", "url": "http://127.0.0.1:8765/rpc"},
        ],
        "methods": [_method(spec) for spec in SPECS.values()],
        "components": {
            "schemas": SCHEMAS,
            "errors": {
                reason: {"code": code, "message": reason, "data": {"reason": reason}}
                for code, reason in error_reasons()
            },
        },
    }
    return json.dumps(doc)


def document() -> dict[str, Any]:
    """The OpenRPC document (a fresh copy: the caller may change it)."""
    result: dict[str, Any] = json.loads(_document())
    return result


def text() -> str:
    """The document as ``docs/openrpc.json`` holds it."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"

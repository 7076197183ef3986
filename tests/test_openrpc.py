"""The OpenRPC document and the code agree: it is made from the declarations the server
validates with, the committed files made from it are current, it names every method and
every error reason there is (docs/api.md's table too), and every bound it states is one
the validator enforces, at the bound and one step past it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ecrd import errors
from ecrd.api import openrpc
from ecrd.api.declarations import SPECS
from ecrd.api.methods import METHODS
from ecrd.api.params import Param
from ecrd.api.roles import ROLES
from ecrd.docgen import api_files

ROOT = Path(__file__).resolve().parents[1]
DOC = openrpc.document()
API_MD = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")


def test_the_committed_document_and_the_clients_made_from_it_are_current() -> None:
    assert api_files.stale(ROOT) == [], "run: python -m ecrd.docgen openrpc"


def test_the_committed_document_is_the_one_served() -> None:
    assert json.loads((ROOT / "docs" / "openrpc.json").read_text()) == DOC


def test_every_method_is_in_the_document_and_every_method_there_exists() -> None:
    assert [m["name"] for m in DOC["methods"]] == list(METHODS)
    assert set(SPECS) == set(METHODS)


def test_each_method_is_served_with_its_own_declaration() -> None:
    for name, (_, spec) in METHODS.items():
        assert spec is SPECS[name]


def test_the_document_is_openrpc_1_2_6_with_by_name_params() -> None:
    assert DOC["openrpc"] == "1.2.6"
    assert {"title", "version"} <= set(DOC["info"])
    for method in DOC["methods"]:
        assert method["paramStructure"] == "by-name"
        assert {"name", "params", "result"} <= set(method)
        names = [p["name"] for p in method["params"]]
        assert len(names) == len(set(names)), method["name"]


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_every_reference_in_the_document_resolves() -> None:
    found = refs(DOC)
    assert found
    for ref in found:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in DOC["components"]["schemas"], ref


def test_x_roles_is_the_role_the_server_checks() -> None:
    for method in DOC["methods"]:
        role = ROLES.get(method["name"])
        assert method["x-roles"] == ([role] if role else []), method["name"]


def documented_reasons() -> dict[str, int]:
    """docs/api.md's error table: each reason with its code."""
    table = API_MD.split("## Errors", 1)[1].split("## The transaction record", 1)[0]
    found = {}
    for row in re.findall(r"^\| (-32\d+) \| ([^|]+) \|", table, flags=re.MULTILINE):
        for reason in re.findall(r"`([a-z_]+)`", row[1]):
            found[reason] = int(row[0])
    return found


def test_the_documents_error_reasons_are_those_of_the_api_doc_with_their_codes() -> None:
    served = {reason: e["code"] for reason, e in DOC["components"]["errors"].items()}
    assert served == documented_reasons()


def test_every_error_class_of_the_tree_is_in_the_document() -> None:
    served = DOC["components"]["errors"]
    for cls in errors.ApiError.__subclasses__():
        for reason in (cls.reason, *cls.also):
            assert served[reason]["code"] == cls.code
            assert served[reason]["data"] == {"reason": reason}


# -- every bound the document states, enforced -------------------------------------------


def params() -> list[tuple[str, Param]]:
    return [(spec.name, p) for spec in SPECS.values() for p in spec.params]


def fits_and_breaks(param: Param) -> tuple[list[Any], list[Any]]:
    """Values the schema allows (at its bounds) and values one step past them, from the
    JSON Schema alone."""
    schema = param.schema()
    if "oneOf" in schema:
        return ["ABC123", {"pairCode": "ABC123"}], [7, [], True]
    kind = schema["type"]
    if "enum" in schema or kind == "array":
        choices = schema.get("enum") or schema["items"]["enum"]
        good = [[choices[0]], list(choices)] if kind == "array" else list(choices)
        return good, [["nope"], "x"] if kind == "array" else ["nope", choices[0].swapcase()]
    if kind in ("integer", "number"):
        low, high = schema["minimum"], schema["maximum"]
        good, bad = [low, high], [low - 1, high + 1, str(low), True]
        return (good, [*bad, low + 0.5]) if kind == "integer" else (good, bad)
    if kind == "boolean":
        return [True, False], ["yes", 1]
    if kind == "object":
        return [{}, {"a": "b"}], [[], "x", {"a": "b\n"}]
    return _strings(schema)


EXAMPLES = {  # a value that passes each format's own rule (its pattern or its words)
    "^(0|[1-9][0-9]{0,7})\\.[0-9]{2}$": (["0.01", "99999999.99"], ["0.00", "1.0", "1e3"]),
    "^[A-Z]{3}$": (["HKD"], ["hkd", "HK", "HKDD"]),
    "^/": (["/var/lib/ecrd/backup/x"], ["backup/x"]),
}


def _strings(schema: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    if "pattern" in schema:
        good, bad = EXAMPLES[schema["pattern"]]
        return good, [*bad, 7]
    if schema.get("format") == "date-time":
        return ["2026-11-27T00:00:00+08:00"], ["yesterday", "2026-11-27T00:00:00", 7]
    top = schema["maxLength"]
    return ["a", "a" * top], ["", "a" * (top + 1), 7, "a\x1bb"]


@pytest.mark.parametrize(("method", "param"), params(), ids=lambda v: getattr(v, "name", v))
def test_the_validator_takes_what_the_schema_allows_and_refuses_the_rest(
    method: str, param: Param
) -> None:
    spec = SPECS[method]
    base = {p.name: fits_and_breaks(p)[0][0] for p in spec.params if p.required}
    good, bad = fits_and_breaks(param)
    for value in good:
        spec.validate({**base, param.name: value})
    for value in bad:
        with pytest.raises(errors.InvalidParams) as caught:
            spec.validate({**base, param.name: value})
        assert caught.value.data["field"].split(".")[0] == param.name, value


@pytest.mark.parametrize("method", list(SPECS))
def test_a_required_param_is_required_and_an_unknown_one_refused(method: str) -> None:
    spec = SPECS[method]
    base = {p.name: fits_and_breaks(p)[0][0] for p in spec.params if p.required}
    for name in base:
        with pytest.raises(errors.InvalidParams) as caught:
            spec.validate({k: v for k, v in base.items() if k != name})
        assert caught.value.data["field"] == name
    with pytest.raises(errors.InvalidParams) as caught:
        spec.validate({**base, "typo": 1})
    assert caught.value.data["field"] == "typo"
    documented = {p["name"]: p["required"] for m in DOC["methods"] if m["name"] == method
                  for p in m["params"]}  # fmt: skip
    assert documented == {p.name: p.required for p in spec.params}

"""The light Python client (clients/python, ``ecrd_client``): the standard library only, one
typed method per declared method, one exception class per reason, and the results it
gets from a real daemon on a real socket are the shapes the declarations say."""

from __future__ import annotations

import ast
import inspect
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
import trio
from http_stack import TOKENS, start_http_stack
from stack import Stack, config_data, start_stack

from ecrd.api.declarations import SCHEMAS, SPECS
from ecrd.api.openrpc import document
from ecrd.docgen.pyclient import class_name, method_name

CLIENT = Path(__file__).resolve().parents[1] / "clients" / "python"
sys.path.insert(0, str(CLIENT))
import ecrd_client  # noqa: E402

HEAVY = ("trio", "httpx", "Crypto", "serial", "prometheus_client", "attrs", "h11", "ecrd")


def test_importing_it_pulls_in_none_of_the_daemons_dependencies() -> None:
    code = "import ecrd_client, sys; print(sorted(sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(CLIENT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    loaded = {name.split(".")[0] for name in ast.literal_eval(out)}
    assert "ecrd_client" in loaded
    assert loaded.isdisjoint(HEAVY), loaded & set(HEAVY)


def python_3_9() -> str | None:
    """A python3.9 that runs (a version manager's shim may be on PATH without one)."""
    exe = shutil.which("python3.9")
    if exe is None:
        return None
    ran = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"],
                         capture_output=True, text=True)  # fmt: skip
    return exe if ran.returncode == 0 and ran.stdout.strip() == "(3, 9)" else None


def test_it_runs_on_python_3_9_with_every_type_it_declares_resolvable() -> None:
    exe = python_3_9()
    if exe is None:
        pytest.skip("needs python3.9, the oldest Python it supports")
    code = (
        "import typing, ecrd_client as c\n"
        "for name in c.__all__:\n"
        "    obj = getattr(c, name)\n"
        "    if isinstance(obj, type) and issubclass(obj, dict): typing.get_type_hints(obj)\n"
        "for name in dir(c.Methods):\n"
        "    if not name.startswith('_'): typing.get_type_hints(getattr(c.Methods, name))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(CLIENT)}
    subprocess.run([exe, "-c", code], env=env, check=True)


def test_its_source_imports_the_standard_library_only() -> None:
    for path in sorted((CLIENT / "ecrd_client").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )  # fmt: skip
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in ("ecrd_client", "__future__"), (
                    f"{path.name} imports {name}"
                )


def test_its_package_declares_no_dependency() -> None:
    import tomllib

    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == []


def test_one_typed_method_per_declared_method_with_the_declared_params() -> None:
    for name, spec in SPECS.items():
        method = getattr(ecrd_client.Client, method_name(name))
        sig = inspect.signature(method)
        params = [p for p in sig.parameters.values() if p.name != "self"]
        assert [p.name for p in params] == [
            *(p.name for p in spec.params if p.required),
            *(p.name for p in spec.params if not p.required),
        ], name
        for p in params:
            required = next(d.required for d in spec.params if d.name == p.name)
            assert (p.default is inspect.Parameter.empty) == required, (name, p.name)


def test_one_exception_class_per_reason_under_one_base() -> None:
    for reason, err in document()["components"]["errors"].items():
        cls = getattr(ecrd_client, class_name(reason))
        assert issubclass(cls, ecrd_client.EcrdError)
        raised = ecrd_client.error_from({"code": err["code"], "message": "m",
                                         "data": {"reason": reason, "field": "x"}})  # fmt: skip
        assert type(raised) is cls and raised.reason == reason and raised.data["field"] == "x"


def test_a_reason_it_does_not_know_yet_gets_the_class_of_its_code() -> None:
    raised = ecrd_client.error_from({"code": -32013, "data": {"reason": "malformed_envelope"}})
    assert isinstance(raised, ecrd_client.TerminalError) and raised.reason == "malformed_envelope"
    unknown = ecrd_client.error_from({"code": -31999, "data": {"reason": "new"}})
    assert type(unknown) is ecrd_client.EcrdError and unknown.reason == "new"


# -- the results, against a real daemon ---------------------------------------------------


def mismatches(value: Any, schema: dict[str, Any], at: str = "result") -> list[str]:
    """Where ``value`` is not of the (declared subset of) JSON Schema ``schema``."""
    if "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    json_type = {bool: "boolean", int: "integer", float: "number", str: "string",
                 list: "array", dict: "object", type(None): "null"}[type(value)]  # fmt: skip
    if kinds and json_type not in kinds and not (json_type == "integer" and "number" in kinds):
        return [f"{at}: {json_type}, not {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{at}: {value!r} is not one of {schema['enum']}"]
    found = []
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += mismatches(item, schema["items"], f"{at}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        found += [f"{at}: no {k}" for k in schema.get("required", []) if k not in value]
        more = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                found += mismatches(item, props[key], f"{at}.{key}")
            elif more is False:
                found.append(f"{at}: {key} is not declared")
            elif isinstance(more, dict):
                found += mismatches(item, more, f"{at}.{key}")
    return found


@pytest.fixture
async def stack(nursery: trio.Nursery, tmp_path: Path) -> Stack:
    return await start_stack(nursery, tmp_path)


async def on_thread(fn: Callable[[], Any]) -> Any:
    """The client blocks: it runs on a thread, the daemon on this loop."""
    return await trio.to_thread.run_sync(fn)


def declared(name: str, result: Any) -> Any:
    assert mismatches(result, SPECS[name].result) == [], name
    return result


async def test_a_sale_and_its_record_through_the_typed_methods(stack: Stack) -> None:
    ecr = await on_thread(lambda: ecrd_client.Client(stack.socket, timeout=30))
    with ecr:
        declared("ping", await on_thread(ecr.ping))
        sn = stack.terminal("lan").sn
        paired = await on_thread(lambda: ecr.terminal_pair("lan-1", stack.terminal("lan").pin1))
        assert declared("terminal.pair", paired)["device_sn"] == sn
        tx = await on_thread(lambda: ecr.sale("lan-1", "10.20", "HKD", reference_id="light-1"))
        assert declared("sale", tx)["state"] == "succeeded" and tx["reference_id"] == "light-1"
        again = await on_thread(lambda: ecr.sale("lan-1", "10.20", "HKD", reference_id="light-1"))
        assert again["state"] == "succeeded" and stack.charges("lan", "light-1") == 1
        declined = await on_thread(lambda: ecr.sale("lan-1", "1.91", "HKD", reference_id="d-1"))
        assert declared("sale", declined)["state"] == "failed"
        got = await on_thread(lambda: ecr.transaction_get("light-1"))
        assert declared("transaction.get", got)["history"]
        page = await on_thread(lambda: ecr.transaction_list(terminal="lan-1", limit=10))
        assert {t["reference_id"] for t in declared("transaction.list", page)} == {
            "light-1", "d-1"}  # fmt: skip
        declared("status", await on_thread(ecr.status))
        declared("terminal.list", await on_thread(ecr.terminal_list))
        declared("terminal.info", await on_thread(lambda: ecr.terminal_info("lan-1")))
        declared("terminal.trace", await on_thread(lambda: ecr.terminal_trace("lan-1", tail=5)))
        declared("metrics", await on_thread(ecr.metrics))
        declared("journal.audit", await on_thread(lambda: ecr.journal_audit(limit=5)))
        refund = await on_thread(lambda: ecr.refund("lan-1", "1.00", "HKD", "light-1"))
        assert declared("refund", refund)["state"] == "succeeded"


async def test_the_admin_results_are_the_declared_shapes(stack: Stack) -> None:
    (stack.tmp / "ecrd.toml").write_text(tomli_w.dumps(config_data(stack.description, stack.tmp)))
    backups = stack.tmp / "backups"
    backups.mkdir(mode=0o700)
    ecr = await on_thread(lambda: ecrd_client.Client(stack.socket, timeout=30))
    with ecr:
        declared("config.reload", await on_thread(ecr.config_reload))
        await on_thread(lambda: ecr.terminal_pair("lan-1", stack.terminal("lan").pin1))
        copy = str(backups / "journal.sqlite3")
        backup = await on_thread(lambda: ecr.journal_backup(copy, with_pairings=True))
        assert declared("journal.backup", backup)["pairings"] == copy + ".pairings.toml"
        declared("terminal.unpair", await on_thread(lambda: ecr.terminal_unpair("lan-1")))


async def test_each_error_is_its_reasons_class(stack: Stack) -> None:
    ecr = await on_thread(lambda: ecrd_client.Client(stack.socket, timeout=30))
    with ecr:
        with pytest.raises(ecrd_client.NotPaired):
            await on_thread(lambda: ecr.sale("serial-1", "1.00", "HKD"))
        await on_thread(lambda: ecr.terminal_pair("lan-1", stack.terminal("lan").pin1))
        with pytest.raises(ecrd_client.InvalidParams) as bad:
            await on_thread(lambda: ecr.sale("lan-1", "1.0", "HKD"))
        assert bad.value.data["field"] == "amount" and bad.value.code == -32602
        with pytest.raises(ecrd_client.TerminalNotFound):
            await on_thread(lambda: ecr.terminal_info("nope"))
        with pytest.raises(ecrd_client.TransactionNotFound):
            await on_thread(lambda: ecr.transaction_get("never"))
        with pytest.raises(ecrd_client.MethodNotFound):
            await on_thread(lambda: ecr.call("nope"))
        with pytest.raises(ecrd_client.OriginalNotFound):
            await on_thread(lambda: ecr.refund("lan-1", "1.00", "HKD", "never-sold"))


async def test_events_after_subscribe(stack: Stack) -> None:
    ecr = await on_thread(lambda: ecrd_client.Client(stack.socket, timeout=30))
    other = await on_thread(lambda: ecrd_client.Client(stack.socket, timeout=30))
    with ecr, other:
        subscribed = await on_thread(lambda: ecr.subscribe(topics=["transaction.state"]))
        assert declared("subscribe", subscribed) == {"subscribed": ["transaction.state"]}
        await on_thread(lambda: other.terminal_pair("lan-1", stack.terminal("lan").pin1))
        await on_thread(lambda: other.sale("lan-1", "2.00", "HKD", reference_id="ev-1"))

        def until_settled() -> list[dict[str, Any]]:
            seen = []
            for event in ecr.iter_events():
                seen.append(event)
                if event.get("state") == "succeeded":
                    return seen

            raise AssertionError("the events ended")

        events = await on_thread(until_settled)
    assert [e["reference_id"] for e in events] == ["ev-1"] * len(events)
    assert {"pending", "succeeded"} <= {e["state"] for e in events}
    for event in events:
        assert mismatches(event, {"$ref": "#/components/schemas/Event"}) == []


async def test_over_the_http_endpoint_with_a_bearer_token(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    hs = await start_http_stack(nursery, tmp_path)
    till = ecrd_client.Client.http(f"{hs.url}/rpc", TOKENS["web-pos"], timeout=30)
    declared("ping", await on_thread(till.ping))
    with pytest.raises(ecrd_client.NotPaired):
        await on_thread(lambda: till.sale("lan-1", "1.00", "HKD", reference_id="h-0"))
    with pytest.raises(ecrd_client.PermissionDenied) as denied:
        await on_thread(lambda: till.terminal_pair("lan-1", hs.stack.terminal("lan").pin1))
    assert denied.value.data["role"] == "admin"
    office = ecrd_client.Client.http(f"{hs.url}/rpc", TOKENS["office"], timeout=30)
    await on_thread(lambda: office.terminal_pair("lan-1", hs.stack.terminal("lan").pin1))
    tx = await on_thread(lambda: till.sale("lan-1", "4.20", "HKD", reference_id="h-1"))
    assert declared("sale", tx)["state"] == "succeeded" and hs.stack.charges("lan", "h-1") == 1
    async with httpx.AsyncClient() as web:
        served = (await web.get(f"{hs.url}/openrpc.json")).json()
    assert served == document()  # GET /openrpc.json: the document, as made here
    stranger = ecrd_client.Client.http(f"{hs.url}/rpc", "not-a-token", timeout=30)
    with pytest.raises(ecrd_client.HttpRefused) as refused:
        await on_thread(stranger.ping)
    assert refused.value.status == 401

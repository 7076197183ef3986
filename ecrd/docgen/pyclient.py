"""The light Python client's generated module (``clients/python/ecrd_client/_api.py``),
made from the OpenRPC document: one exception class per error reason, a ``TypedDict`` per
closed result shape, and one typed method per API method.

``api_files`` puts the text through ``ruff format`` (the project's style), so the committed
file passes the format check and a test can compare it with a fresh one byte for byte.
"""

from __future__ import annotations

import keyword
from typing import Any

HEAD = '''"""Made by ``python -m ecrd.docgen openrpc`` from docs/openrpc.json: do not edit.

The API's methods, typed (``Methods``, which ``Client`` completes with a transport),
the shapes of their results, and one exception class per error reason.
"""

from typing import Any, Literal, Optional, TypedDict, Union, cast

from ecrd_client._base import EcrdError
'''


def class_name(reason: str) -> str:
    """``timeout_outcome_unknown`` -> ``TimeoutOutcomeUnknown``."""
    return "".join(part.capitalize() for part in reason.split("_"))


def method_name(name: str) -> str:
    """``terminal.pair`` -> ``terminal_pair``."""
    python = name.replace(".", "_")
    return python + "_" if keyword.iskeyword(python) else python


def py_type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[1]
    if "oneOf" in schema:
        return "Union[" + ", ".join(py_type(s) for s in schema["oneOf"]) + "]"
    kind = schema.get("type")
    if isinstance(kind, list):
        (base,) = [k for k in kind if k != "null"]
        return f"Optional[{py_type({**schema, 'type': base})}]"
    if kind == "string" and "enum" in schema:
        return "Literal[" + ", ".join(f'"{v}"' for v in schema["enum"]) + "]"
    if kind == "array":
        return f"list[{py_type(schema.get('items', {}))}]"
    if kind == "object":
        values = schema.get("additionalProperties")
        return f"dict[str, {py_type(values) if isinstance(values, dict) else 'Any'}]"
    simple = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}
    return simple.get(str(kind), "Any")


def _errors(doc: dict[str, Any]) -> list[str]:
    out = ["", ""]
    by_code: dict[int, str] = {}
    for reason, err in doc["components"]["errors"].items():
        name = class_name(reason)
        by_code.setdefault(err["code"], name)
        out += [
            f"class {name}(EcrdError):",
            f'    """``{reason}`` ({err["code"]}): docs/api.md, "Errors"."""',
            "",
            f'    reason_ = "{reason}"',
            "",
            "",
        ]
    out.append("BY_REASON: dict[str, type[EcrdError]] = {")
    out += [f'    "{r}": {class_name(r)},' for r in doc["components"]["errors"]]
    out += ["}", "# A reason this client does not know yet: the class of the first with its code."]
    out.append("BY_CODE: dict[int, type[EcrdError]] = {")
    out += [f"    {code}: {name}," for code, name in by_code.items()]
    out.append("}")
    return out


def _shapes(doc: dict[str, Any]) -> list[str]:
    """The open shapes first (aliases of a dict), then the closed ones in the document's
    order (which names a shape before a shape that holds it): Python 3.9 evaluates them."""
    out: list[str] = []
    schemas = doc["components"]["schemas"]
    open_ = [n for n, s in schemas.items() if s.get("additionalProperties") or not s["properties"]]
    for name in open_:
        out += ["", "", f"{name} = dict[str, Any]  # {schemas[name]['description']} (open)"]
    for name, schema in schemas.items():
        if name in open_:
            continue
        props = schema["properties"]
        required = [k for k in props if k in schema["required"]]
        optional = [k for k in props if k not in schema["required"]]
        base = f"_{name}Keys" if optional else name
        out += ["", "", f"class {base}(TypedDict):", f'    """{schema["description"]}"""', ""]
        out += [f"    {k}: {py_type(props[k])}" for k in required]
        if optional:
            out += ["", "", f"class {name}({base}, total=False):", ""]
            out += [f"    {k}: {py_type(props[k])}" for k in optional]
    return out


def _method(method: dict[str, Any]) -> list[str]:
    params = method["params"]
    sig = ["self"] + [f"{p['name']}: {py_type(p['schema'])}" for p in params if p["required"]]
    optional = [p for p in params if not p["required"]]
    if optional:
        sig += ["*", *(f"{p['name']}: Optional[{py_type(p['schema'])}] = None" for p in optional)]
    result = py_type(method["result"]["schema"])
    roles = ", ".join(method["x-roles"]) or "none"
    given = ", ".join(f'"{p["name"]}": {p["name"]}' for p in params)
    return [
        "",
        f"    def {method_name(method['name'])}({', '.join(sig)}) -> {result}:",
        f'        """{method["summary"]}.',
        "",
        f'        ``{method["name"]}``, role: {roles}."""',
        f'        return cast({result}, self.call("{method["name"]}", {{{given}}}))',
    ]


def module(doc: dict[str, Any]) -> str:
    """The module's text, before ``ruff format`` (``api_files`` runs it)."""
    names = [*(class_name(r) for r in doc["components"]["errors"]), "BY_REASON", "BY_CODE",
             *doc["components"]["schemas"], "Methods"]  # fmt: skip
    lines = [HEAD.rstrip("\n"), *_errors(doc), *_shapes(doc), "", ""]
    names.sort(key=lambda n: (not n.isupper(), n))  # constants first, as ruff sorts them
    lines += ["__all__ = [", *(f'    "{n}",' for n in names), "]", "", ""]
    lines += [
        "class Methods:",
        '    """One typed method per API method; ``call`` drops the params that are None."""',
        "",
        "    def call(self, method: str, params: Optional[dict[str, Any]] = None) -> Any:",
        "        raise NotImplementedError",
    ]
    for method in doc["methods"]:
        lines += _method(method)
    return "\n".join(lines) + "\n"

"""The TypeScript client's generated sources, made from the OpenRPC document
(``docs/openrpc.json``): ``src/types.ts`` (the result shapes, each method's params, the
``Api`` map of method to params and result), ``src/methods.ts`` (one typed method per API
method, over an abstract ``call``) and ``src/errors.ts`` (one class per error reason)."""

from __future__ import annotations

import json
from typing import Any

HEAD = "// Made by `python -m ecrd.docgen openrpc` from docs/openrpc.json: do not edit.\n"


def class_name(reason: str) -> str:
    return "".join(part.capitalize() for part in reason.split("_"))


def method_name(name: str) -> str:
    """``terminal.pair`` -> ``terminalPair``."""
    first, *rest = name.replace(".", "_").split("_")
    return first + "".join(part.capitalize() for part in rest)


def params_name(name: str) -> str:
    m = method_name(name)
    return m[0].upper() + m[1:] + "Params"


def ts_type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[1]
    if "oneOf" in schema:
        return " | ".join(ts_type(s) for s in schema["oneOf"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join("null" if k == "null" else ts_type({**schema, "type": k}) for k in kind)
    if kind == "string" and "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if kind == "array":
        items = schema.get("items")
        return f"Array<{ts_type(items)}>" if items else "unknown[]"
    if kind == "object":
        values = schema.get("additionalProperties")
        return f"{{ [key: string]: {ts_type(values) if isinstance(values, dict) else 'unknown'} }}"
    return {"string": "string", "integer": "number", "number": "number", "boolean": "boolean"}.get(
        str(kind), "unknown"
    )


def _key(name: str) -> str:
    return name if name.isidentifier() else json.dumps(name)


def _interface(
    name: str, doc: str, fields: list[tuple[str, bool, str, str]], open_: bool
) -> str:  # fmt: skip
    """``fields``: each one's name, whether it is required, its type and what it is."""
    lines = [f"/** {doc} */", f"export interface {name} {{"]
    for key, required, kind, what in fields:
        lines += [f"  /** {what} */"] * bool(what)
        lines.append(f"  {_key(key)}{'' if required else '?'}: {kind};")
    if open_:
        lines.append("  [key: string]: unknown;")
    return "\n".join([*lines, "}"])


def types(doc: dict[str, Any]) -> str:
    parts = [HEAD]
    for name, schema in doc["components"]["schemas"].items():
        props = schema.get("properties", {})
        fields = [(k, k in schema["required"], ts_type(v), "") for k, v in props.items()]
        parts.append(
            _interface(name, schema["description"], fields, schema["additionalProperties"])
        )
    api = ["/** Each method's params and result. */", "export interface Api {"]
    for method in doc["methods"]:
        fields = [(p["name"], p["required"], ts_type(p["schema"]), p["description"])
                  for p in method["params"]]  # fmt: skip
        summary = f"{method['summary']} ({method['name']})"
        parts.append(_interface(params_name(method["name"]), summary, fields, False))
        result = ts_type(method["result"]["schema"])
        api.append(
            f"  {json.dumps(method['name'])}: {{ params: {params_name(method['name'])}; "
            f"result: {result} }};"
        )
    parts.append("\n".join([*api, "}"]))
    parts.append("export type MethodName = keyof Api;")
    roles = ",\n".join(
        f"  {json.dumps(m['name'])}: {json.dumps(m['x-roles'])}" for m in doc["methods"]
    )
    parts.append(
        "/** The role each method needs ([access]; []: anyone who can connect). */\n"
        "export const ROLES: { readonly [M in MethodName]: readonly string[] } = "
        f"{{\n{roles},\n}};"
    )
    return "\n\n".join(parts) + "\n"


def methods(doc: dict[str, Any]) -> str:
    names = sorted({params_name(m["name"]) for m in doc["methods"]})
    names += sorted(
        {ts_type(m["result"]["schema"]).removeprefix("Array<").removesuffix(">")
         for m in doc["methods"]} - {"string"}
    )  # fmt: skip
    lines = [
        HEAD,
        f'import type {{ Api, MethodName, {", ".join(sorted(set(names)))} }} from "./types.js";',
        "",
        "/** One typed method per API method, over the transport's `call`. */",
        "export abstract class Methods {",
        '  abstract call<M extends MethodName>(method: M, params: Api[M]["params"]): '
        'Promise<Api[M]["result"]>;',
    ]
    for m in doc["methods"]:
        pname, result = params_name(m["name"]), ts_type(m["result"]["schema"])
        optional = not any(p["required"] for p in m["params"])
        arg = f"params: {pname}{' = {}' if optional else ''}"
        lines += [
            "",
            f"  /** {m['summary']} (role: {', '.join(m['x-roles']) or 'none'}) */",
            f"  {method_name(m['name'])}({arg}): Promise<{result}> {{",
            f"    return this.call({json.dumps(m['name'])}, params);",
            "  }",
        ]
    return "\n".join([*lines, "}"]) + "\n"


ERRORS_BASE = """
/** A JSON-RPC error object as ecrd sends it. */
export interface RpcError {
  code: number;
  message: string;
  data?: { reason?: string; [key: string]: unknown };
}

/** An error reply from ecrd: `reason` is the stable string to switch on (the class is the
 * reason's own, e.g. `TimeoutOutcomeUnknown`); `data` holds the rest (`data.transaction`
 * for money errors). */
export class EcrdError extends Error {
  static readonly reason: string = "error";
  readonly code: number;
  readonly reason: string;
  readonly data: { [key: string]: unknown };

  constructor(error: RpcError) {
    super(`${error.message} [${error.data?.reason ?? "error"}]`);
    this.name = new.target.name;
    this.code = error.code;
    this.reason = error.data?.reason ?? (new.target as typeof EcrdError).reason;
    this.data = error.data ?? {};
  }
}

/** The connection ended (or never opened) before the reply came. A payment sent goes on:
 * fetch its outcome with transactionGet (same reference_id) before charging again. */
export class ConnectionLost extends EcrdError {
  static override readonly reason: string = "connection_lost";
  constructor(why: string) {
    super({ code: -32000, message: why, data: { reason: "connection_lost" } });
  }
}

/** The HTTP endpoint refused the request before it reached the API (401: no good token;
 * 403: an origin or host it does not allow; 413: too large). */
export class HttpRefused extends EcrdError {
  static override readonly reason: string = "http_refused";
  readonly status: number;
  constructor(status: number, body: string) {
    super({ code: -32000, message: `HTTP ${status}: ${body.slice(0, 200)}`,
            data: { reason: "http_refused", status } });
    this.status = status;
  }
}
"""


def errors(doc: dict[str, Any]) -> str:
    lines = [HEAD + ERRORS_BASE]
    by_code: dict[int, str] = {}
    for reason, err in doc["components"]["errors"].items():
        name = class_name(reason)
        by_code.setdefault(err["code"], name)
        lines += [
            f'/** `{reason}` ({err["code"]}): docs/api.md, "Errors". */',
            f"export class {name} extends EcrdError {{",
            f"  static override readonly reason: string = {json.dumps(reason)};",
            "}",
            "",
        ]
    lines.append("export const BY_REASON: { readonly [reason: string]: typeof EcrdError } = {")
    lines += [f"  {reason}: {class_name(reason)}," for reason in doc["components"]["errors"]]
    lines += [
        "};",
        "",
        "/** A reason this client does not know yet: the first class with its code. */",
    ]
    lines.append("export const BY_CODE: { readonly [code: number]: typeof EcrdError } = {")
    lines += [f"  [{code}]: {name}," for code, name in by_code.items()]
    lines += [
        "};",
        "",
        "/** The exception of an error reply: its reason's class, else its code's, else the",
        " * base. */",
        "export function errorFrom(error: RpcError): EcrdError {",
        '  const cls = BY_REASON[error.data?.reason ?? ""] ?? BY_CODE[error.code] ?? EcrdError;',
        "  return new cls(error);",
        "}",
    ]
    return "\n".join(lines) + "\n"

"""A sandbox worker: one process runs one call of admin-installed code, then exits.

Started by `inference_proxy.functions.sandbox` as `python -I -c <boot> --memory-mb N
--cpu-seconds S --max-processes P [--parent-pid P]` with a clean environment, inside
bubblewrap (the boot line puts the proxy's own code first on sys.path, then calls
`main`). It limits itself (address space, CPU, processes of its user namespace, file
size), dies with the proxy, waits for one Call on stdin, and answers with
frames on what was stdout; the code's own prints go to stderr so they cannot corrupt the
protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import re
import resource
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, BinaryIO

import msgspec

from common.parent_death import die_with_parent
from inference_proxy.functions.sandbox_protocol import (
    Call,
    Chunk,
    Failure,
    Frame,
    Result,
    encode,
    framed,
    read_call,
)


class SourceInvalid(Exception):
    """The source does not define what its kind needs."""


class _Out:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def send(self, frame: Frame) -> None:
        self._stream.write(framed(encode(frame)))
        self._stream.flush()


def limit_resources(memory_mb: int, cpu_seconds: int, max_processes: int = 0) -> None:
    """Address-space, CPU-time, process and file-size limits (the hard ones too, so the
    code cannot raise them again); the proxy enforces the wall-clock one. Inside its own
    user namespace, RLIMIT_NPROC counts this worker's processes and threads only."""
    if memory_mb > 0:
        size = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    if cpu_seconds > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    if max_processes > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def load_module(plugin_id: str, source: str) -> types.ModuleType:
    name = f"ragway_plugin_{plugin_id}"
    module = types.ModuleType(name)
    module.__file__ = f"<{plugin_id}>"
    sys.modules[name] = module  # dataclasses and typing look classes' modules up here
    code = compile(source, f"<{plugin_id}>", "exec")
    exec(code, module.__dict__)  # running admin-installed code is the point
    return module


def _class(module: types.ModuleType, name: str) -> type:
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise SourceInvalid(f"The source defines no class `{name}`")
    return cls


def _extras(fn: Callable[..., Any], user: dict[str, Any]) -> dict[str, Any]:
    """Open WebUI's optional reserved arguments we can offer (`__user__`)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    return {"__user__": user} if "__user__" in params else {}


def with_valves(instance: Any, valves: dict[str, Any]) -> Any:
    """Open WebUI's way: an instance with `valves` and a `Valves` class gets the admin's
    values (None values left out, so defaults apply)."""
    if valves and hasattr(instance, "valves") and hasattr(instance, "Valves"):
        instance.valves = instance.Valves(**{k: v for k, v in valves.items() if v is not None})
    return instance


def _valves_class(module: types.ModuleType) -> Any:
    """The plugin's `Valves` (a pydantic model nested in Pipe or Tools), or None."""
    for name in ("Pipe", "Tools", "Filter"):
        valves = getattr(getattr(module, name, None), "Valves", None)
        if isinstance(valves, type):
            return valves
    return None


def valves_spec(module: types.ModuleType) -> dict[str, Any] | None:
    valves = _valves_class(module)
    if valves is None:
        return None
    if not hasattr(valves, "model_json_schema"):
        raise SourceInvalid("`Valves` must be a pydantic model (`class Valves(BaseModel)`)")
    schema: dict[str, Any] = valves.model_json_schema()
    return schema


def valves_check(module: types.ModuleType, values: dict[str, Any]) -> dict[str, Any]:
    """The values as the plugin's Valves class accepts them; SourceInvalid naming each
    field and the rule it breaks, never the value given (it may be a secret)."""
    valves = _valves_class(module)
    if valves is None:
        raise SourceInvalid("The plugin defines no `Valves`")
    try:
        model = valves(**{k: v for k, v in values.items() if v is not None})
    except Exception as exc:
        errors = getattr(exc, "errors", None)
        if callable(errors):
            detail = "; ".join(
                f"{'.'.join(map(str, item['loc'])) or 'valves'}: {item['msg']}"
                for item in errors(include_input=False, include_url=False)
            )
        else:
            detail = type(exc).__name__
        raise SourceInvalid(f"Invalid valves: {detail}") from None
    dumped: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True)
    return dumped


def pipe_method(
    module: types.ModuleType, valves: dict[str, Any] | None = None
) -> Callable[..., Any]:
    cls = _class(module, "Pipe")
    fn = getattr(with_valves(cls(), valves or {}), "pipe", None)
    if not callable(fn):
        raise SourceInvalid("class `Pipe` has no method `pipe(self, body)`")
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if not p.name.startswith("__") and p.kind is not p.VAR_KEYWORD
    ]
    if not params:
        raise SourceInvalid("`Pipe.pipe` must take the request body: `pipe(self, body)`")
    return typing.cast(Callable[..., Any], fn)


# --- tool specs -------------------------------------------------------------------------

_PARAM_SPHINX = re.compile(r"^\s*:param\s+(?:\w+\s+)?(\w+)\s*:\s*(.*)$")
_PARAM_GOOGLE = re.compile(r"^\s+(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description (text before any parameter section) and per-parameter text."""
    description: list[str] = []
    params: dict[str, str] = {}
    section = "description"
    for line in doc.splitlines():
        stripped = line.strip()
        sphinx = _PARAM_SPHINX.match(line)
        if sphinx:
            params[sphinx.group(1)] = sphinx.group(2).strip()
            section = "params"
            continue
        if stripped.startswith(":"):
            section = "other"
            continue
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            section = "google"
            continue
        if stripped.endswith(":") and stripped[:-1] in ("Returns", "Raises", "Yields"):
            section = "other"
            continue
        if section == "description":
            description.append(stripped)
        elif section == "google":
            google = _PARAM_GOOGLE.match(line)
            if google:
                params[google.group(1)] = google.group(2).strip()
    text = " ".join(part for part in description if part).strip()
    return text, params


def _public_methods(cls: type) -> list[tuple[str, Callable[..., Any]]]:
    found: list[tuple[str, Callable[..., Any]]] = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        fn = value.__func__ if isinstance(value, staticmethod | classmethod) else value
        if inspect.isfunction(fn):
            found.append((name, fn))
    return found


def tool_specs(module: types.ModuleType) -> list[dict[str, Any]]:
    """OpenAI function specs for the public methods of class `Tools`."""
    cls = _class(module, "Tools")
    cls()  # its __init__ must work: every call makes one
    specs = []
    for name, fn in _public_methods(cls):
        doc = inspect.getdoc(fn)
        if not doc:
            raise SourceInvalid(f"`Tools.{name}` needs a docstring (it becomes the description)")
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:
            raise SourceInvalid(f"`Tools.{name}`: type hints do not resolve: {exc}") from None
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.name not in ("self", "cls") and not p.name.startswith("__")
        ]
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise SourceInvalid(f"`Tools.{name}` cannot take *args or **kwargs")
            if p.name not in hints:
                raise SourceInvalid(f"`Tools.{name}`: parameter `{p.name}` needs a type hint")
        try:
            schemas, components = msgspec.json.schema_components(
                [hints[p.name] for p in params], ref_template="#/$defs/{name}"
            )
        except (TypeError, ValueError) as exc:
            raise SourceInvalid(f"`Tools.{name}`: unsupported parameter type: {exc}") from None
        description, param_docs = parse_docstring(doc)
        properties: dict[str, Any] = {}
        for p, schema in zip(params, schemas, strict=True):
            properties[p.name] = (
                {**schema, "description": param_docs[p.name]} if p.name in param_docs else schema
            )
        parameters: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "required": [p.name for p in params if p.default is p.empty],
        }
        if components:
            parameters["$defs"] = components
        specs.append({"name": name, "description": description, "parameters": parameters})
    if not specs:
        raise SourceInvalid("class `Tools` has no public methods")
    return specs


# --- running ----------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A pipe's or tool's return value as the text the model or caller gets."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        choices = value.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            part = choices[0].get("delta") or choices[0].get("message") or {}
            if isinstance(part, dict):
                return str(part.get("content") or "")
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


async def _drive(result: Any, out: _Out) -> None:
    if inspect.isawaitable(result):
        result = await result
    if inspect.isasyncgen(result):
        async for piece in result:
            out.send(Chunk(text=_text(piece)))
        out.send(Result())
    elif inspect.isgenerator(result) or isinstance(result, list | tuple):
        for piece in result:
            out.send(Chunk(text=_text(piece)))
        out.send(Result())
    else:
        out.send(Result(text=_text(result)))


def run_call(call: Call, out: _Out) -> None:
    module = load_module(call.plugin_id, call.source)
    if call.op == "inspect_pipe":
        pipe_method(module)
        out.send(Result())
    elif call.op == "inspect_tools":
        out.send(Result(specs=tool_specs(module)))
    elif call.op == "valves_spec":
        out.send(Result(data=valves_spec(module)))
    elif call.op == "valves_check":
        out.send(Result(data=valves_check(module, call.valves)))
    elif call.op == "pipe":
        fn = pipe_method(module, call.valves)
        asyncio.run(_drive(fn(call.body or {}, **_extras(fn, call.user)), out))
    else:
        names = dict(_public_methods(_class(module, "Tools")))
        if call.method not in names:
            raise SourceInvalid(f"The tool has no method `{call.method}`")
        fn = getattr(with_valves(_class(module, "Tools")(), call.valves), call.method)
        result = fn(**call.arguments, **_extras(fn, call.user))
        asyncio.run(_drive(result, out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--cpu-seconds", type=int, default=0)
    parser.add_argument("--max-processes", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)
    if args.parent_pid:
        die_with_parent(args.parent_pid)  # a call left running must not outlive the proxy
    # the protocol keeps the real stdout; fd 1 (prints, child processes) goes to stderr
    out = _Out(os.fdopen(os.dup(1), "wb", buffering=0))
    os.dup2(2, 1)
    call = read_call(sys.stdin.buffer)  # idles here until the proxy hands out this worker
    if call is None:
        return 0
    limit_resources(args.memory_mb, args.cpu_seconds, args.max_processes)
    try:
        run_call(call, out)
    except SourceInvalid as exc:
        out.send(Failure(type="SourceInvalid", message=str(exc), invalid=True))
    except SyntaxError as exc:
        detail = f"{exc.msg} (line {exc.lineno})" if exc.lineno else str(exc.msg)
        invalid = call.op.startswith(("inspect", "valves"))
        out.send(Failure(type="SyntaxError", message=detail, invalid=invalid))
    except BaseException as exc:  # whatever the admin's code raises goes back
        invalid = call.op.startswith(("inspect", "valves"))
        out.send(Failure(type=type(exc).__name__, message=str(exc)[:2000], invalid=invalid))
    return 0


if __name__ == "__main__":
    sys.exit(main())

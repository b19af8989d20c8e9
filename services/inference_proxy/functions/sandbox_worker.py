"""A sandbox worker: one process runs one call of admin-installed code, then exits.

Started by `inference_proxy.functions.sandbox` as `python -I -c <boot> --memory-mb N
--cpu-seconds S --parent-pid P` with a clean environment (the boot line puts the
proxy's own code first on sys.path, then calls `main`). It limits itself
(address space, CPU), dies with the proxy, waits for one Call on stdin, and answers with
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


def limit_resources(memory_mb: int, cpu_seconds: int) -> None:
    """Address-space and CPU-time limits; the proxy enforces the wall-clock one."""
    if memory_mb > 0:
        size = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))
    if cpu_seconds > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
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


def pipe_method(module: types.ModuleType) -> Callable[..., Any]:
    cls = _class(module, "Pipe")
    fn = getattr(cls(), "pipe", None)
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
    elif call.op == "pipe":
        fn = pipe_method(module)
        asyncio.run(_drive(fn(call.body or {}, **_extras(fn, call.user)), out))
    else:
        names = dict(_public_methods(_class(module, "Tools")))
        if call.method not in names:
            raise SourceInvalid(f"The tool has no method `{call.method}`")
        fn = getattr(_class(module, "Tools")(), call.method)
        result = fn(**call.arguments, **_extras(fn, call.user))
        asyncio.run(_drive(result, out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--cpu-seconds", type=int, default=0)
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
    limit_resources(args.memory_mb, args.cpu_seconds)
    try:
        run_call(call, out)
    except SourceInvalid as exc:
        out.send(Failure(type="SourceInvalid", message=str(exc), invalid=True))
    except SyntaxError as exc:
        detail = f"{exc.msg} (line {exc.lineno})" if exc.lineno else str(exc.msg)
        invalid = call.op.startswith("inspect")
        out.send(Failure(type="SyntaxError", message=detail, invalid=invalid))
    except BaseException as exc:  # whatever the admin's code raises goes back
        invalid = call.op.startswith("inspect")
        out.send(Failure(type=type(exc).__name__, message=str(exc)[:2000], invalid=invalid))
    return 0


if __name__ == "__main__":
    sys.exit(main())

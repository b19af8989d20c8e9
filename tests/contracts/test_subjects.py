"""The subject table: every subject is declared once, and the code uses only those.

`contracts.subjects.ALL_SUBJECTS` is where the per-service NATS permissions come from,
so these tests hold the code to it: no module spells a subject of its own, each service
uses only the subjects declared for it, and each service serves what it owns.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from contracts import subjects
from contracts.endpoint import Endpoint, Event, WorkQueue

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "libs" / "contracts" / "subjects.py"
# what a NATS subject of ragway's looks like (`ragway.<family>.<verb>`, the nats.micro and
# JetStream system subjects, the ingest stream's names)
SUBJECT_LIKE = re.compile(
    r"^(ragway\.[a-z_]+[.*]|\$SRV\.|\$JS\.EVENT|RAGWAY_INGEST|ragway-ingestion)"
)
PACKAGE_SERVICE = {
    "auth": subjects.AUTH_SERVICE,
    "gateway": subjects.GATEWAY_SERVICE,
    "inference_proxy": subjects.INFERENCE_SERVICE,
    "ingestion": subjects.INGESTION_SERVICE,
    "retrieval": subjects.RETRIEVAL_SERVICE,
}


def source_files() -> Iterator[Path]:
    for top in ("libs", "services", "bench"):
        yield from (ROOT / top).rglob("*.py")


def strings_in(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every string literal (f-string pieces included), docstrings left out."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            yield node.lineno, node.value


def names_used(tree: ast.AST) -> set[str]:
    """Names taken from `contracts.subjects` (`subjects.X`, `from contracts.subjects import X`)."""
    used: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "subjects"
        ):
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module == "contracts.subjects":
            used.update(alias.name for alias in node.names)
    return used


def participants(declared: object) -> set[str]:
    if isinstance(declared, Endpoint):
        return {declared.owner, *declared.callers}
    if isinstance(declared, Event):
        return {declared.owner, *declared.publishers, *declared.subscribers}
    if isinstance(declared, WorkQueue):
        return {declared.owner, *declared.publishers}
    raise AssertionError(f"not a declaration: {declared!r}")


def test_every_subject_is_declared_once_with_a_known_owner() -> None:
    seen = [item.subject for item in subjects.ALL_SUBJECTS]
    assert len(seen) == len(set(seen)), "a subject is declared twice"
    known = {*subjects.BACKEND_SERVICES, subjects.GATEWAY_SERVICE, subjects.NATS_SERVER}
    for item in subjects.ALL_SUBJECTS:
        assert item.owner in known, item
        assert participants(item) <= known, item
        tokens = item.subject.split(".")
        assert all(tokens) and ">" not in item.subject, item.subject
        assert "*" not in item.subject[:-1], f"only a last `*` token: {item.subject}"


def test_every_kind_of_subject_is_in_the_table() -> None:
    kinds = {type(item) for item in subjects.ALL_SUBJECTS}
    assert kinds == {Endpoint, Event, WorkQueue}
    assert subjects.AUTH_SIGNIN in subjects.ALL_SUBJECTS
    assert subjects.CHAT_CANCEL in subjects.ALL_SUBJECTS
    assert subjects.INGEST_JOBS in subjects.ALL_SUBJECTS


def test_no_module_spells_a_subject_outside_the_table() -> None:
    stray: list[str] = []
    for path in source_files():
        if path == TABLE:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, text in strings_in(tree):
            if SUBJECT_LIKE.match(text):
                stray.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert stray == [], "subjects belong in contracts/subjects.py"


def test_each_service_uses_only_the_subjects_declared_for_it() -> None:
    declared = {
        name: value
        for name, value in vars(subjects).items()
        if isinstance(value, Endpoint | Event | WorkQueue)
    }
    wrong: list[str] = []
    for package, service in PACKAGE_SERVICE.items():
        for path in (ROOT / "services" / package).rglob("*.py"):
            for name in names_used(ast.parse(path.read_text())) & declared.keys():
                if service not in participants(declared[name]):
                    wrong.append(f"{path.relative_to(ROOT)} uses {name} ({service})")
    assert wrong == []


def test_each_service_serves_exactly_the_endpoints_it_owns() -> None:
    served: dict[str, set[str]] = defaultdict(set)
    for package, service in PACKAGE_SERVICE.items():
        for path in (ROOT / "services" / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "serve"
                    and node.args
                    and isinstance(node.args[0], ast.Attribute)
                    and isinstance(node.args[0].value, ast.Name)
                    and node.args[0].value.id == "subjects"
                ):
                    served[service].add(getattr(subjects, node.args[0].attr).subject)
    for service in PACKAGE_SERVICE.values():
        owned = {endpoint.subject for endpoint in subjects.endpoints_of(service)}
        assert served[service] == owned, service


def test_a_wildcard_event_takes_one_token() -> None:
    assert subjects.CHAT_CANCEL.subject_for("abc") == "ragway.chat.cancel.abc"
    assert subjects.CHAT_CANCEL.token_of("ragway.chat.cancel.abc") == "abc"
    for bad in ("", "a.b", "*", ">"):
        try:
            subjects.CHAT_CANCEL.subject_for(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted as a token")
    try:
        subjects.AUTH_EVENTS.subject_for("x")
    except ValueError:
        pass
    else:
        raise AssertionError("a fixed subject took a token")

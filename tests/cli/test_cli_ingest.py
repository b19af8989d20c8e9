"""`ragway ingest`, `chat`, `files` and `knowledge` against a live ragway with RAG."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.support.live import OPENAI_MODEL, Account, Cli, Stack, wait_completed

HANDBOOK = {
    "handbook/keys.md": "# API keys\n\nRotate an API key with `ragway keys create`: the old key "
    "stops working at once. The platypus team rotates keys every ninety days.\n",
    "handbook/deep/backups.md": "# Backups\n\nThe NATS JetStream store is snapshotted nightly "
    "to the cold archive in the basement of building seven.\n",
    "handbook/deep/notes.txt": "plain text that the *.md glob leaves out\n",
    "handbook/.drafts/secret.md": "# Draft\n\nHidden directories are skipped.\n",
}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "handbook"


async def file_ids_of(cli: Cli, account: Account) -> dict[str, str]:
    listed = await cli("files", "ls", "--json", key=account.api_key)
    assert listed.exit_code == 0, listed.output
    return {record["hash"]: record["id"] for record in json.loads(listed.stdout)}


async def test_ingest_uploads_a_tree_waits_for_processing_and_fills_a_new_collection(
    ragway: Stack, cli: Cli, user: Account, tmp_path: Path
) -> None:
    root = write_tree(tmp_path, HANDBOOK)
    result = await cli(
        "ingest", str(root), "--knowledge", "handbook", "--glob", "*.md", key=user.api_key
    )
    assert result.exit_code == 0, result.output
    assert "2 ok, 0 failed" in result.stdout
    assert "Created knowledge collection handbook" in result.stderr
    ids = await file_ids_of(cli, user)
    expected = {
        hashlib.sha256(HANDBOOK[name].encode()).hexdigest()
        for name in ("handbook/keys.md", "handbook/deep/backups.md")
    }
    assert set(ids) == expected  # notes.txt (glob) and .drafts (hidden) left out
    for file_id in ids.values():
        record = await wait_completed(ragway, user, file_id, seconds=1)
        assert record["data"]["status"] == "completed"
    listed = await cli("knowledge", "ls", "--json", key=user.api_key)
    [collection] = [k for k in json.loads(listed.stdout) if k["name"] == "handbook"]
    assert set(collection["data"]["file_ids"]) == set(ids.values())


async def test_running_ingest_again_uploads_nothing_twice(
    ragway: Stack, cli: Cli, user: Account, tmp_path: Path
) -> None:
    root = write_tree(tmp_path, HANDBOOK)
    first = await cli("ingest", str(root), "--knowledge", "kb", "--glob", "*.md", key=user.api_key)
    assert first.exit_code == 0, first.output
    before = await file_ids_of(cli, user)
    (root / "copy-of-keys.md").write_text(HANDBOOK["handbook/keys.md"])
    (root / "new.md").write_text("# New\n\nA page added between the two runs.\n")
    second = await cli("ingest", str(root), "--knowledge", "kb", "--glob", "*.md", key=user.api_key)
    assert second.exit_code == 0, second.output
    assert "already uploaded" in second.stdout and "4 ok, 0 failed" in second.stdout
    after = await file_ids_of(cli, user)
    assert len(after) == len(before) + 1  # only new.md; the copy has known content
    assert {k: after[k] for k in before} == before


async def test_a_file_that_fails_is_reported_with_its_reason_and_a_non_zero_exit(
    ragway: Stack, cli: Cli, user: Account, tmp_path: Path
) -> None:
    (tmp_path / "good.md").write_text("# Fine\n\nThis one is readable.\n")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\nthis is not really a pdf\n")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    result = await cli("ingest", str(tmp_path), key=user.api_key)
    assert result.exit_code == 1
    assert "1 ok, 2 failed" in result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "done" in rows[str(tmp_path / "good.md")]
    assert "failed" in rows[str(tmp_path / "broken.pdf")]
    assert "Unsupported: Images are not supported" in rows[str(tmp_path / "photo.png")]


async def test_chat_streams_the_answer_and_lists_the_collection_sources(
    ragway: Stack, cli: Cli, user: Account, tmp_path: Path
) -> None:
    root = write_tree(tmp_path, HANDBOOK)
    ingested = await cli(
        "ingest", str(root), "--knowledge", "docs", "--glob", "*.md", key=user.api_key
    )
    assert ingested.exit_code == 0, ingested.output
    result = await cli(
        "chat",
        "-m",
        OPENAI_MODEL,
        "--knowledge",
        "docs",
        "How often are keys rotated?",
        key=user.api_key,
    )
    assert result.exit_code == 0, result.output
    answer, _, sources = result.stdout.partition("\nSources:\n")
    # the fake model echoes its prompt: the retrieved chunk reached the model
    assert "platypus team rotates keys every ninety days" in answer
    assert "[1] keys.md: # API keys" in sources
    # where the chunk lies: its heading path and its characters in the extracted text
    assert "\n      API keys · chars 0-" in "\n" + sources


async def test_chat_with_one_file_and_without_streaming(
    ragway: Stack, cli: Cli, user: Account, tmp_path: Path
) -> None:
    (tmp_path / "backups.md").write_text(HANDBOOK["handbook/deep/backups.md"])
    ingested = await cli("ingest", str(tmp_path / "backups.md"), key=user.api_key)
    assert ingested.exit_code == 0, ingested.output
    [file_id] = (await file_ids_of(cli, user)).values()
    result = await cli(
        "chat",
        "--no-stream",
        "-m",
        OPENAI_MODEL,
        "--file",
        file_id,
        "Where are backups kept?",
        key=user.api_key,
    )
    assert result.exit_code == 0, result.output
    assert "building seven" in result.stdout and "[1] backups.md" in result.stdout


async def test_chat_with_an_unknown_model_fails_in_one_line(cli: Cli, user: Account) -> None:
    result = await cli("chat", "-m", "no-such-model", "hello", key=user.api_key)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "Model not found" in result.stderr


async def test_files_and_knowledge_can_be_listed_and_removed(
    ragway: Stack, cli: Cli, user: Account, tmp_path: Path
) -> None:
    (tmp_path / "a.md").write_text("# A\n\nalpha\n")
    assert (await cli("ingest", str(tmp_path), "--no-wait", key=user.api_key)).exit_code == 0
    [file_id] = (await file_ids_of(cli, user)).values()
    table = await cli("files", "ls", key=user.api_key)
    assert file_id in table.stdout and "a.md" in table.stdout
    removed = await cli("files", "rm", file_id, key=user.api_key)
    assert removed.exit_code == 0, removed.output
    assert await file_ids_of(cli, user) == {}
    created = await cli("knowledge", "create", "scratch", key=user.api_key)
    assert created.exit_code == 0, created.output
    knowledge_id = created.stdout.strip()
    table = await cli("knowledge", "ls", key=user.api_key)
    assert knowledge_id in table.stdout and "private" in table.stdout
    assert (await cli("knowledge", "rm", "scratch", key=user.api_key)).exit_code == 0
    listed = await cli("knowledge", "ls", "--json", key=user.api_key)
    assert knowledge_id not in {k["id"] for k in json.loads(listed.stdout)}
    missing = await cli("files", "rm", file_id, key=user.api_key)
    assert missing.exit_code == 1 and missing.stderr.startswith("Error: Not found")

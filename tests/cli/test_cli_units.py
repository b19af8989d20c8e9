"""The CLI's pure parts: config precedence and permissions, file walking, source lines."""

from __future__ import annotations

import stat
import time
from pathlib import Path

from ragway_cli.chat import source_lines
from ragway_cli.config import DEFAULT_URL, StoredConfig, load_config, resolve, save_config
from ragway_cli.ingest import best_by_hash
from ragway_cli.walk import collect


def test_the_environment_key_wins_over_the_stored_one_and_the_option_over_every_url() -> None:
    stored = StoredConfig(url="http://stored:1", api_key="sk-stored")
    env = {"RAGWAY_URL": "http://env:2/", "RAGWAY_API_KEY": "sk-env"}
    connection = resolve(None, env, stored)
    assert (connection.url, connection.credential) == ("http://env:2", "sk-env")
    assert resolve("http://option:3", env, stored).url == "http://option:3"
    from_config = resolve(None, {}, stored)
    assert (from_config.url, from_config.credential) == ("http://stored:1", "sk-stored")
    assert resolve(None, {}, StoredConfig()).url == DEFAULT_URL


def test_an_expired_session_token_is_not_used() -> None:
    expired = StoredConfig(token="jwt", token_expires_at=int(time.time()) - 1)
    assert resolve(None, {}, expired).credential == ""
    valid = StoredConfig(token="jwt", token_expires_at=int(time.time()) + 60)
    assert resolve(None, {}, valid).credential == "jwt"


def test_the_config_is_written_owner_only_even_over_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "ragway" / "config.json"
    path.parent.mkdir()
    path.write_text("{}")
    path.chmod(0o644)
    save_config(path, StoredConfig(url="http://x:1", api_key="sk-secret"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config(path).api_key == "sk-secret"
    path.write_text("not json")
    assert load_config(path) == StoredConfig()


def test_collect_takes_named_files_and_matching_visible_files_under_directories(
    tmp_path: Path,
) -> None:
    for name in ("a.md", "b.txt", "sub/c.md", ".hidden/d.md", "sub/.e.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    found = collect([tmp_path, tmp_path / "b.txt", tmp_path / "a.md"], "*.md")
    assert found == [tmp_path / "a.md", tmp_path / "sub" / "c.md", tmp_path / "b.txt"]


def test_best_by_hash_prefers_completed_files_and_ignores_failed_ones() -> None:
    files = [
        {"id": "1", "hash": "h1", "data": {"status": "pending"}},
        {"id": "2", "hash": "h1", "data": {"status": "completed"}},
        {"id": "3", "hash": "h2", "data": {"status": "failed"}},
    ]
    best = best_by_hash(files)
    assert best["h1"]["id"] == "2" and "h2" not in best


def test_source_lines_number_chunks_across_sources() -> None:
    sources = [
        {
            "source": {"type": "collection", "id": "k", "name": "kb"},
            "document": ["first chunk", "second   chunk\nwith lines"],
            "metadata": [{"name": "a.md"}, {"name": "b.md"}],
        },
        {"source": {"type": "file", "id": "f", "name": "c.md"}, "document": ["x" * 200]},
    ]
    lines = source_lines(sources)
    assert lines[:2] == ["[1] a.md: first chunk", "[2] b.md: second chunk with lines"]
    assert lines[2].startswith("[3] c.md: xxx") and lines[2].endswith("…") and len(lines[2]) < 100


def test_each_source_line_says_where_its_chunk_lies() -> None:
    sources = [
        {
            "source": {"type": "collection", "id": "k", "name": "kb"},
            "document": ["revenue grew", "rotate keys", "plain", "across"],
            "metadata": [
                {
                    "name": "r.pdf",
                    "page": 2,
                    "page_label": "iii",
                    "start_index": 10,
                    "end_index": 22,
                },
                {
                    "name": "k.md",
                    "headings": ["# Guide", "## Keys"],
                    "start_index": 0,
                    "end_index": 11,
                },
                {"name": "p.txt"},
                {"name": "r.pdf", "page": 3, "page_end": 4, "start_index": 40, "end_index": 90},
            ],
        }
    ]
    assert source_lines(sources) == [
        "[1] r.pdf: revenue grew",
        "    p. iii · chars 10-22",
        "[2] k.md: rotate keys",
        "    Guide > Keys · chars 0-11",
        "[3] p.txt: plain",
        "[4] r.pdf: across",
        "    pp. 4-5 · chars 40-90",
    ]

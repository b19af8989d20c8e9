"""Every snippet of the README's "Use it from…" section (docs/usage/snippets/, included
verbatim in README.md) runs here against a live ragway: curl, Python
(openai SDK and requests), JavaScript (node's fetch) and the `ragway` CLI."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.live import OPENAI_MODEL, Account, Stack, ragway_command, run_process

USAGE = Path(__file__).resolve().parents[2] / "docs" / "usage"
SNIPPETS = USAGE / "snippets"
HANDBOOK = "# Keys\n\nThe platypus team rotates API keys every ninety days.\n"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "handbook.md").write_text(HANDBOOK)
    (tmp_path / "handbook").mkdir()
    (tmp_path / "handbook" / "keys.md").write_text(HANDBOOK)
    return tmp_path


def snippet_env(stack: Stack, account: Account, workdir: Path) -> dict[str, str]:
    return {
        "RAGWAY_URL": stack.url,
        "RAGWAY_API_KEY": account.api_key,
        "RAGWAY_MODEL": OPENAI_MODEL,
        "XDG_CONFIG_HOME": str(workdir / "config"),
        "PATH": f"{Path(ragway_command()[0]).parent}:/usr/local/bin:/usr/bin:/bin",
        "NO_COLOR": "1",
        "COLUMNS": "160",
    }


@pytest.mark.parametrize("name", sorted(p.name for p in SNIPPETS.iterdir()))
def test_the_readme_section_includes_each_snippet_verbatim(name: str) -> None:
    section = (USAGE.parent.parent / "README.md").read_text()
    assert (SNIPPETS / name).read_text().strip() in section


async def test_the_curl_snippet(ragway: Stack, user: Account, workdir: Path) -> None:
    assert shutil.which("curl"), "curl is needed for the curl snippet"
    code, out, err = await run_process(
        ["bash", "-euo", "pipefail", str(SNIPPETS / "curl.sh")],
        snippet_env(ragway, user, workdir),
        cwd=workdir,
    )
    assert code == 0, err
    compact = out.replace(" ", "")
    assert '"id":"gpt-fake"' in compact
    assert "Echo: Why is the sky blue?" in out
    assert out.count("data: ") > 3 and "data: [DONE]" in out
    assert '"filename":"handbook.md"' in compact and '"status":"pending"' in compact


async def test_the_openai_sdk_snippet(stack: Stack, user: Account, workdir: Path) -> None:
    code, out, err = await run_process(
        [sys.executable, str(SNIPPETS / "openai_sdk.py")],
        snippet_env(stack, user, workdir),
        workdir,
    )
    assert code == 0, err
    assert out == "Echo: Why is the sky blue?\nEcho: Tell me a story.\n"


async def test_the_requests_rag_snippet(ragway: Stack, user: Account, workdir: Path) -> None:
    code, out, err = await run_process(
        [sys.executable, str(SNIPPETS / "requests_rag.py")],
        snippet_env(ragway, user, workdir),
        workdir,
    )
    assert code == 0, err
    assert "The platypus team rotates API keys every ninety days." in out  # the fake echoes
    assert out.rstrip().endswith("source: handbook.md")
    status, collections = await ragway.call("GET", "/api/v1/knowledge/", headers=user.key_auth)
    assert status == 200 and [k["access_control"] for k in collections] != [None]


async def test_the_javascript_fetch_snippet(stack: Stack, user: Account, workdir: Path) -> None:
    node = shutil.which("node")
    assert node, "node (v18+) is needed for the fetch snippet"
    code, out, err = await run_process(
        [node, str(SNIPPETS / "fetch.mjs")], snippet_env(stack, user, workdir), workdir
    )
    assert code == 0, err
    assert out == "Echo: Why is the sky blue?\nEcho: Tell me a story.\n"


async def test_the_cli_snippet(ragway: Stack, user: Account, workdir: Path) -> None:
    env = snippet_env(ragway, user, workdir)
    code, out, err = await run_process(
        ["bash", "-euo", "pipefail", str(SNIPPETS / "cli.sh")], env, workdir
    )
    assert code == 0, err
    assert "Logged in to" in out and OPENAI_MODEL in out
    assert "1 ok, 0 failed" in out
    answer = out.split("1 ok, 0 failed", 1)[1]
    assert "rotates API keys every ninety days" in answer and "[1] keys.md" in answer
    config = json.loads((workdir / "config" / "ragway" / "config.json").read_text())
    assert config["api_key"] == user.api_key


async def test_the_preset_snippet(ragway: Stack, user: Account, workdir: Path) -> None:
    code, out, err = await run_process(
        [sys.executable, str(SNIPPETS / "preset.py")], snippet_env(ragway, user, workdir), workdir
    )
    assert code == 0, err
    assert "The platypus team rotates API keys every ninety days." in out  # the fake echoes
    assert out.rstrip().endswith("source: handbook")
    status, models = await ragway.call("GET", "/api/models", headers=user.key_auth)
    assert status == 200
    entry = next(m for m in models["data"] if m["id"] == "handbook-helper")
    assert entry["info"]["base_model_id"] == OPENAI_MODEL and entry["owned_by"] == "openai"


async def test_the_embeddings_snippet(ragway: Stack, user: Account, workdir: Path) -> None:
    code, out, err = await run_process(
        [sys.executable, str(SNIPPETS / "embeddings.py")],
        snippet_env(ragway, user, workdir),
        workdir,
    )
    assert code == 0, err
    best, sizes = out.splitlines()
    assert best == "The platypus team rotates API keys every ninety days."
    assert sizes.startswith("384 dimensions, ") and sizes.endswith(" tokens")


async def test_the_batch_snippet(ragway: Stack, user: Account, workdir: Path) -> None:
    code, out, err = await run_process(
        ["bash", "-euo", "pipefail", str(SNIPPETS / "batch.sh")],
        snippet_env(ragway, user, workdir),
        cwd=workdir,
    )
    assert code == 0, err
    decoder = json.JSONDecoder()  # curl prints the two replies back to back
    embedded, end = decoder.raw_decode(out)
    added, _ = decoder.raw_decode(out, end)
    assert [item["index"] for item in embedded["data"]] == [0, 1]
    assert len(embedded["data"][0]["embedding"]) == 384
    outcomes = [result["status"] for result in added["results"]]
    assert outcomes == ["added", "added", "failed"]
    assert len(added["files"]) == 2 and added["warnings"]["errors"]

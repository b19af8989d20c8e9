import time
from pathlib import Path
from tests.cli.live import Account, Cli, Stack


async def test_measure(ragway: Stack, cli: Cli, user: Account, tmp_path: Path) -> None:
    for i in range(60):
        (tmp_path / f"doc{i}.md").write_text(f"# Doc {i}\n\n" + ("word%d " % i) * 400)
    for conc in ("1", "8"):
        root = tmp_path / conc
    t = time.monotonic()
    r = await cli("ingest", str(tmp_path), "--concurrency", "8", key=user.api_key)
    t1 = time.monotonic() - t
    t = time.monotonic()
    r2 = await cli("ingest", str(tmp_path), key=user.api_key)
    t2 = time.monotonic() - t
    print(f"\nMEASURE first run 60 files: {t1:.2f}s exit={r.exit_code}; re-run: {t2:.2f}s exit={r2.exit_code}")

"""Which local files an ingest run covers, and their content hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ragway_cli.errors import CliError

HASH_CHUNK = 1024 * 1024


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def collect(paths: list[Path], glob: str) -> list[Path]:
    """Files named directly, plus those under named directories matching `glob` (hidden
    files and directories skipped), each once, in a stable order."""
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_file():
            found.setdefault(path, None)
        elif path.is_dir():
            for candidate in sorted(path.rglob(glob)):
                if candidate.is_file() and not _hidden(candidate, path):
                    found.setdefault(candidate, None)
        else:
            raise CliError(f"No such file or directory: {path}")
    return list(found)


def sha256_of(path: Path) -> str:
    """Hex sha256 of the file's bytes, as the server records it in `hash`."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while piece := file.read(HASH_CHUNK):
            digest.update(piece)
    return digest.hexdigest()

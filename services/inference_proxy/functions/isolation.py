"""How a sandbox worker is walled off from the proxy and the host: bubblewrap.

Each worker runs in new user, pid, ipc, uts, cgroup and (unless the plugin's network
valve is on) network namespaces, as uid/gid 65534 inside, with all capabilities dropped,
in a session of its own (no TIOCSTI into a terminal), and dies with the proxy. Its root
is an empty tmpfs holding read-only binds of only what Python and the worker need (the
interpreter's prefix, the virtualenv, the proxy's code folders, /usr and a few files of
/etc), its own /proc (it sees its own processes only), a minimal /dev and a small /tmp.
Nothing else of the host is there: no data dir, no home, no other process's /proc.

When the proxy runs as root, the worker is also started as a separate host uid (65534 by
default; util-linux's `setpriv` switches before bubblewrap starts, since uvloop's
subprocess has no `user=`): under root, RLIMIT_NPROC is not enforced and files owned by
root would be its.
RLIMIT_NPROC is set by the worker inside its new user namespace, so it bounds the
processes of that one worker (the kernel counts per user namespace), not all workers.

`mode="none"` runs workers as plain processes (the old behaviour): only for hosts where
user namespaces cannot be had, by an explicit admin choice (RAGWAY_SANDBOX_ISOLATION=none).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

IsolationMode = Literal["bwrap", "none"]
INSIDE_UID = 65534
WORKDIR = "/tmp"
# read by Python, the resolver and TLS; none of them holds a secret
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/alternatives",
)
ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SETPRIV = "/usr/bin/setpriv"


class IsolationBroken(Exception):
    """Workers cannot be isolated on this host (the reason says why)."""


@dataclass(frozen=True, slots=True)
class Isolation:
    mode: IsolationMode = "bwrap"
    bwrap_path: str = "/usr/bin/bwrap"
    host_uid: int = 65534  # the host uid workers run as when the proxy is root
    tmp_mb: int = 64

    @property
    def switches_uid(self) -> bool:
        return self.mode == "bwrap" and os.geteuid() == 0 and self.host_uid != 0

    def command(
        self, worker: Sequence[str], *, network: bool, code_roots: Sequence[str]
    ) -> list[str]:
        """`worker` (a python command line) as it is started under this isolation."""
        if self.mode == "none":
            return list(worker)
        bwrap = [self.bwrap_path, *bwrap_options(network, code_roots, self.tmp_mb), "--", *worker]
        if self.worker_uid is None:
            return bwrap
        uid = str(self.worker_uid)
        return [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *bwrap]

    async def probe(self, worker: Sequence[str], code_roots: Sequence[str]) -> None:
        """Start one isolated `worker` (a python command that exits 0) or say why it fails."""
        if self.mode == "none":
            return
        if not os.access(self.bwrap_path, os.X_OK):
            raise IsolationBroken(
                f"bubblewrap is not installed at {self.bwrap_path} (Debian package "
                "`bubblewrap`; `make system-packages`)"
            )
        if self.worker_uid is not None and not os.access(SETPRIV, os.X_OK):
            raise IsolationBroken(f"{SETPRIV} (util-linux) is missing: it drops root for workers")
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command(worker, network=False, code_roots=code_roots),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=minimal_environment(),
            )
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        except (OSError, TimeoutError) as exc:
            raise IsolationBroken(f"bubblewrap could not start: {exc}") from None
        if process.returncode != 0:
            reason = stderr.decode("utf-8", "replace").strip()[-500:]
            raise IsolationBroken(
                f"bubblewrap failed (exit {process.returncode}): {reason or 'no message'}; "
                "user namespaces may be disabled on this host"
            )

    @property
    def worker_uid(self) -> int | None:
        """The host uid (and gid) a worker starts as; None: the proxy's own."""
        return self.host_uid if self.switches_uid else None


def bwrap_options(network: bool, code_roots: Sequence[str], tmp_mb: int) -> list[str]:
    options = [
        "--unshare-user",
        "--uid",
        str(INSIDE_UID),
        "--gid",
        str(INSIDE_UID),
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        *([] if network else ["--unshare-net"]),
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(tmp_mb * 1024 * 1024),
        "--tmpfs",
        WORKDIR,
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for link in ROOT_LINKS:
        if Path(link).is_symlink():
            options += ["--symlink", os.readlink(link), link]
        elif Path(link).is_dir():
            options += ["--ro-bind", link, link]
    for name in ETC_FILES:
        options += ["--ro-bind-try", name, name]
    for folder in python_paths(code_roots):
        options += ["--ro-bind", folder, folder]
    return [*options, "--chdir", WORKDIR]


def python_paths(code_roots: Sequence[str]) -> list[str]:
    """The interpreter, the virtualenv and the code folders the worker imports from, each
    under its own name and its real one (symlinks are followed inside the sandbox too)."""
    found: list[str] = []
    candidates = [
        sys.base_prefix,
        sys.prefix,
        str(Path(sys.executable).parent),
        str(Path(os.path.realpath(sys.executable)).parent),
        *code_roots,
    ]
    for candidate in candidates:
        for path in (os.path.abspath(candidate), os.path.realpath(candidate)):
            if path in ("/", "/usr") or not os.path.isdir(path) or path in found:
                continue
            if any(path.startswith(parent + "/") for parent in found):
                continue
            found = [p for p in found if not p.startswith(path + "/")] + [path]
    return found


def minimal_environment(home: str = WORKDIR) -> dict[str, str]:
    """Only what Python needs: none of the proxy's variables (keys, URLs) are inherited."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": home,
        "TMPDIR": home,
        "PYTHONDONTWRITEBYTECODE": "1",
    }

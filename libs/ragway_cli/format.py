"""Human-readable cells: sizes, times, statuses."""

from __future__ import annotations

import datetime as dt
from typing import Any


def size(value: Any) -> str:
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return ""


def when(epoch: Any) -> str:
    try:
        stamp = dt.datetime.fromtimestamp(float(epoch))
    except (TypeError, ValueError, OverflowError, OSError):
        return ""
    return stamp.strftime("%Y-%m-%d %H:%M")


STATUS_STYLE = {"completed": "green", "done": "green", "failed": "red", "processing": "yellow"}


def status(value: str) -> str:
    style = STATUS_STYLE.get(value)
    return f"[{style}]{value}[/]" if style else value

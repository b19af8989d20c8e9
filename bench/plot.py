"""Draw bench/gateway_overhead.png from the figures the benchmarks kept in bench/out/.

    .venv/bin/python bench/plot.py      (needs the `bench` extra: pip install -e '.[bench]')

Left: streamed completions/s against concurrent clients, direct to the backend, through
ragway and through Open WebUI (when `make bench-anchors` ran). Right: time to first token
(p50) for the same runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"


def rows(name: str, workload: str) -> list[dict[str, Any]]:
    path = OUT / f"{name}.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return sorted(
        (r for r in data["rows"] if r["workload"] == workload), key=lambda r: r["clients"]
    )


def main() -> None:
    fig, (rate_ax, ttft_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = [("ragway", rows("gateway_overhead", "chat"))]
    series.append(("Open WebUI", rows("openwebui_anchor", "chat")))
    direct = series[0][1]
    if direct:
        clients = [r["clients"] for r in direct]
        rate_ax.plot(clients, [r["direct"]["rate"] for r in direct], "k--o", label="direct")
        ttft_ax.plot(clients, [r["direct"]["ttft_p50"] for r in direct], "k--o", label="direct")
    for label, data in series:
        if not data:
            continue
        clients = [r["clients"] for r in data]
        rate_ax.plot(clients, [r["via"]["rate"] for r in data], "-o", label=label)
        ttft_ax.plot(clients, [r["via"]["ttft_p50"] for r in data], "-o", label=label)
    for ax in (rate_ax, ttft_ax):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.grid(alpha=0.3)
        ax.legend()
    rate_ax.set_ylabel("streamed completions/s (20 tokens, zero-delay backend)")
    ttft_ax.set_ylabel("time to first token, p50 (ms)")
    ttft_ax.set_yscale("log")
    fig.suptitle("Gateway overhead on 2 shared cores (bench/gateway_overhead.py)")
    fig.tight_layout()
    target = BENCH / "gateway_overhead.png"
    fig.savefig(target, dpi=110)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

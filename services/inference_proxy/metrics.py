"""The inference-proxy's counters for /metrics (see common.metrics): model-backend
failures by the backend's kind and index (Open WebUI's urlIdx; never its URL)."""

from __future__ import annotations

from collections import Counter

from common.metrics import Family, counter
from inference_proxy.settings import Backend

# why a backend call failed: an error status, a transport failure or timeout before the
# answer, an answer that is not one, a stream that broke off
Reason = str


class BackendErrors:
    def __init__(self) -> None:
        self._counts: Counter[tuple[str, int, Reason]] = Counter()

    def failed(self, backend: Backend, reason: Reason) -> None:
        self._counts[(backend.kind, backend.idx, reason)] += 1

    def families(self) -> list[Family]:
        return [
            counter(
                "ragway_backend_errors",
                "Model-backend failures by backend kind, index and reason",
                (
                    ({"backend_kind": kind, "backend_index": str(idx), "reason": reason}, n)
                    for (kind, idx, reason), n in self._counts.items()
                ),
            )
        ]

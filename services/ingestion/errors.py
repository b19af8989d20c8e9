"""Why a file could not be turned into text, in words a person can act on."""

from __future__ import annotations

from common.errors import ErrorCode, RagwayError


class ExtractionError(RagwayError):
    """A file that yields no usable text: unsupported, damaged, empty or too large.

    It is a RagwayError, so it crosses NATS with its code; `reason` is the message
    shown to the person who uploaded the file.
    """

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(code, reason)
        self.reason = reason


def unsupported(reason: str) -> ExtractionError:
    return ExtractionError("unsupported", reason)


def unreadable(reason: str) -> ExtractionError:
    return ExtractionError("invalid", reason)


def too_large(reason: str) -> ExtractionError:
    return ExtractionError("too_large", reason)

"""`MessageRejected`: a message the service cannot use, with its DLQ reason code and a short detail."""

from __future__ import annotations

# DLQ reason codes (the `error` header). Other components may raise MessageRejected with
# further codes of their own; these are the ones the contract names.
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
SCHEMA = "schema"
TOO_LARGE = "too_large"
TOO_LATE = "too_late"
UNKNOWN_JOB = "unknown_job"
KNOWN_REASONS = (INVALID_UTF8, INVALID_JSON, SCHEMA, TOO_LARGE, TOO_LATE, UNKNOWN_JOB)

MAX_DETAIL_CHARS = 300


class MessageRejected(Exception):
    """A message that cannot be used: `reason` is the DLQ code, `detail` a short human text."""

    def __init__(self, reason: str, detail: str) -> None:
        if len(detail) > MAX_DETAIL_CHARS:
            detail = detail[: MAX_DETAIL_CHARS - 1] + "…"
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"

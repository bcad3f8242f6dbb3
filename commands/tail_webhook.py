"""`model-monitoring tail --webhook`: POST each event as JSON, retry with exponential backoff
(honouring `Retry-After`), then append it to a dead-letter file. Without that file an event the
webhook did not take stops the tail, so its offset stays uncommitted."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from model_monitoring.commands.tail_format import clean, fmt_time

RETRYABLE_STATUS = frozenset({408, 425, 429})


def backoff_delays(retries: int, base: float = 0.5, cap: float = 30.0) -> list[float]:
    """The waits before each retry: base, 2·base, 4·base … capped."""
    return [min(cap, base * 2 ** i) for i in range(retries)]


def retry_after_seconds(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None  # an HTTP date: the exponential backoff applies


@dataclass(frozen=True)
class TailEvent:
    kind: str
    topic: str
    partition: int
    offset: int
    key: str | None
    body: dict[str, Any]
    summary: str

    def payload(self) -> dict[str, Any]:
        """What the webhook receives: the contract's event with its kind and origin."""
        return {"type": self.kind, "topic": self.topic, "partition": self.partition,
                "offset": self.offset, "summary": self.summary, "event": self.body}


class DeliveryFailed(RuntimeError):
    """The last try failed and there is no dead-letter file: the offset stays uncommitted."""


@dataclass
class WebhookSink:
    """POSTs events as JSON; after the last try, appends them to the dead-letter file."""

    url: str
    retries: int = 5
    backoff: float = 0.5
    backoff_cap: float = 30.0
    timeout: float = 10.0
    dead_letter_file: Path | None = None
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    _session: Any = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--webhook must be an http(s) URL, not {clean(self.url, 80)!r}")

    @property
    def target(self) -> str:
        """The URL without its path and credentials (webhook paths often hold a token)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"

    async def __aenter__(self) -> WebhookSink:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    async def deliver(self, event: TailEvent) -> str:
        """'delivered' or 'dead-lettered'; raises DeliveryFailed when neither was possible."""
        import aiohttp

        body = orjson.dumps(event.payload())
        headers = {"Content-Type": "application/json", "User-Agent": "model-monitoring-tail",
                   "Idempotency-Key": event.key or f"{event.topic}/{event.partition}/{event.offset}",
                   "X-Model-Monitoring-Event": event.kind}
        delays = backoff_delays(self.retries, self.backoff, self.backoff_cap)
        error, attempts = "", 0
        for attempts in range(1, len(delays) + 2):
            wait_at_least = None
            try:
                async with self._session.post(self.url, data=body, headers=headers,
                                              allow_redirects=False) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        return "delivered"
                    error = f"HTTP {resp.status}"
                    if resp.status < 500 and resp.status not in RETRYABLE_STATUS:
                        break  # the receiver refuses this event: retrying will not help
                    wait_at_least = retry_after_seconds(resp.headers.get("Retry-After"))
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = f"{type(exc).__name__}: {clean(exc, 200)}"
            if attempts > len(delays):
                break
            await self.sleep(min(self.backoff_cap, max(delays[attempts - 1], wait_at_least or 0.0)))
        self._dead_letter(event, attempts, error)
        return "dead-lettered"

    def _dead_letter(self, event: TailEvent, attempts: int, error: str) -> None:
        where = f"{event.topic}[{event.partition}]@{event.offset}"
        if self.dead_letter_file is None:
            raise DeliveryFailed(f"{where} key={event.key}: {self.target} failed {attempts} time(s), "
                                 f"last {error}; no --dead-letter-file, so the offset stays uncommitted")
        record = {"failedAt": fmt_time(int(datetime.now(UTC).timestamp() * 1000)),
                  "attempts": attempts, "error": error, "webhook": self.target, **event.payload()}
        self.dead_letter_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.dead_letter_file, "ab") as f:
            f.write(orjson.dumps(record) + b"\n")
            f.flush()
            os.fsync(f.fileno())  # on disk before the offset is committed

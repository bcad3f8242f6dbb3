"""`model-monitoring tail` without a broker: the one-line formats, deduplication, backoff, and
webhook delivery against a local HTTP server (success, retried 500s, dead-lettering)."""

from __future__ import annotations

import argparse
import io
import json
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model_monitoring.commands.tail import KINDS, SeenEvents, Tail, add_tail_parser, dedup_key
from model_monitoring.commands.tail_format import clean, fmt_time, format_event
from model_monitoring.commands.tail_webhook import (
    DeliveryFailed,
    TailEvent,
    WebhookSink,
    backoff_delays,
    retry_after_seconds,
)
from tests.support.events import COMPLETED, DEGRADED, DRIFT, FAILED, SNAPSHOT
from tests.support.webhook import Receiver

Record = namedtuple("Record", "topic partition offset key value timestamp")
TOPICS = {"drift": "ml.model.drift.detected", "degraded": "ml.model.performance.degraded",
          "snapshot": "ml.model.monitoring.snapshot", "completed": "workflow.job.completed",
          "failed": "workflow.job.failed"}
KIND_OF_TOPIC = {topic: kind for kind, topic in TOPICS.items()}


def record(kind: str, body: Any, offset: int = 0, value: bytes | None = None) -> Record:
    raw = value if value is not None else json.dumps(body).encode()
    return Record(TOPICS[kind], 0, offset, b"acme:risk-scoring", raw, 1795932000000)


def event(body: dict[str, Any] = DRIFT, offset: int = 3) -> TailEvent:
    return TailEvent("drift", TOPICS["drift"], 1, offset, dedup_key("drift", body), body,
                     format_event("drift", body))


# ------------------------------------------------------------------ formatting
def test_drift_line() -> None:
    assert format_event("drift", DRIFT) == (
        "2026-11-29T06:00:02Z DRIFT critical acme:risk-scoring v3 amount psi=0.31 (≥0.25) n=5400 run=run-7")


def test_degraded_line_names_the_segment_and_the_baseline() -> None:
    assert format_event("degraded", DEGRADED) == (
        "2026-11-29T06:00:02Z DEGRADED acme:risk-scoring v3 segment=emea brier=0.19 "
        "(>0.132, baseline 0.12) n=812 run=run-7")


def test_snapshot_line_is_compact() -> None:
    line = format_event("snapshot", SNAPSHOT)
    assert line == ("2026-11-29T06:00:00Z SNAPSHOT acme:risk-scoring v3 n=5400 features drift=2 "
                    "insufficient_data=1 ok=1 [amount 0.31 critical, industry 0.12 warning] "
                    "brier=0.19 degraded mae=0.33 degraded run=run-7")


def test_snapshot_lists_at_most_five_drifted_features() -> None:
    features = {f"f{i}": {"value": i / 10, "status": "drift", "severity": "critical"} for i in range(8)}
    line = format_event("snapshot", {**SNAPSHOT, "features": features, "performance": {}})
    assert "[f7 0.7 critical, f6 0.6 critical, f5 0.5 critical, f4 0.4 critical, f3 0.3 critical, +3 more]" in line


def test_completed_and_failed_lines() -> None:
    assert format_event("completed", COMPLETED) == (
        "2026-11-29T06:00:03Z COMPLETED run=run-7 tenants=acme driftChecked=40 driftDetected=3 "
        "performanceChecked=4 performanceDegraded=1 duration=0.8s")
    assert format_event("completed", {**COMPLETED, "tenants": None}).split()[3] == "tenants=all"
    assert format_event("completed", {**COMPLETED, "tenants": list("abcde")}).split()[3] == "tenants=5"
    assert format_event("failed", FAILED) == (
        "2026-11-29T06:00:03Z FAILED run=run-8 error=deadline passed\\nafter 900 s")


def test_every_line_is_one_line_whatever_the_wire_holds() -> None:
    hostile = {k: "x\n\r\x1b[31m" * 100 for k in DRIFT} | {"value": "NaN", "features": "oops"}
    for kind in KINDS:
        line = format_event(kind, hostile)
        assert "\n" not in line and "\r" not in line and "\x1b" not in line
        assert len(line) < 1200
    assert format_event("drift", {}).startswith("- DRIFT None None:None vNone")


def test_times() -> None:
    assert fmt_time("2026-11-29T07:00:02+01:00") == "2026-11-29T06:00:02Z"
    assert fmt_time(1795932003000) == "2026-11-29T06:00:03Z"
    assert fmt_time(None, fallback_ms=1795932003000) == "2026-11-29T06:00:03Z"
    assert fmt_time(None) == "-"
    assert fmt_time("not a time") == "not a time"
    assert fmt_time("2026-11-29T06:00:00") == "2026-11-29T06:00:00"  # no zone: shown as sent


def test_clean_truncates_and_escapes() -> None:
    assert clean("a\tb") == "a\\tb"
    assert clean("x" * 500, limit=10) == "x" * 9 + "…"


# ------------------------------------------------------------------ deduplication and backoff
def test_dedup_keys() -> None:
    assert dedup_key("drift", DRIFT) == "drift|ev-1"
    assert dedup_key("snapshot", SNAPSHOT) == dedup_key("snapshot", dict(SNAPSHOT))
    assert dedup_key("snapshot", SNAPSHOT) != dedup_key("snapshot", {**SNAPSHOT, "modelVersion": "4"})
    assert dedup_key("completed", COMPLETED) == "completed|run-7"
    assert dedup_key("failed", {"job": "model-monitoring"}) is None


def test_seen_events_forget_the_oldest_past_capacity() -> None:
    seen = SeenEvents(capacity=3)
    for key in "abcd":
        seen.add(key)
    assert "a" not in seen and all(k in seen for k in "bcd")
    seen.add("b")  # refreshed: now the newest
    seen.add("e")
    assert "c" not in seen and "b" in seen


def test_backoff_doubles_up_to_the_cap() -> None:
    assert backoff_delays(5) == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert backoff_delays(8, base=1.0, cap=10.0) == [1, 2, 4, 8, 10, 10, 10, 10]
    assert backoff_delays(0) == []
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert retry_after_seconds(None) is None


# ------------------------------------------------------------------ the webhook


@pytest.fixture
def sleeps() -> list[float]:
    return []


def sink(url: str, sleeps: list[float], **kw: Any) -> WebhookSink:
    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return WebhookSink(url, timeout=5.0, sleep=record_sleep, **kw)


@pytest.fixture
def receiver_ok() -> Iterator[Receiver]:
    with Receiver([204]) as r:
        yield r


async def test_webhook_delivers_on_the_first_try(receiver_ok: Receiver, sleeps: list[float]) -> None:
    async with sink(receiver_ok.url, sleeps) as s:
        assert await s.deliver(event()) == "delivered"
    (headers, body), = receiver_ok.requests
    assert body["type"] == "drift" and body["event"] == DRIFT
    assert body["summary"].startswith("2026-11-29T06:00:02Z DRIFT critical")
    assert (body["topic"], body["partition"], body["offset"]) == (TOPICS["drift"], 1, 3)
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == "drift|ev-1"
    assert sleeps == []


async def test_webhook_retries_server_errors_with_backoff(sleeps: list[float]) -> None:
    with Receiver([500, 503, 200]) as r:
        async with sink(r.url, sleeps, retries=5, backoff=0.5) as s:
            assert await s.deliver(event()) == "delivered"
    assert len(r.requests) == 3
    assert sleeps == [0.5, 1.0]


async def test_webhook_dead_letters_after_the_last_try(tmp_path: Path, sleeps: list[float]) -> None:
    dead = tmp_path / "dl" / "dead-letters.jsonl"
    with Receiver([500]) as r:
        async with sink(r.url, sleeps, retries=3, backoff=0.25, dead_letter_file=dead) as s:
            assert await s.deliver(event(offset=3)) == "dead-lettered"
            assert await s.deliver(event({**DRIFT, "eventId": "ev-9"}, offset=4)) == "dead-lettered"
    assert len(r.requests) == 2 * 4  # the first try and three retries, twice
    assert sleeps == [0.25, 0.5, 1.0] * 2
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(x["offset"], x["event"]["eventId"]) for x in letters] == [(3, "ev-1"), (4, "ev-9")]
    assert letters[0]["attempts"] == 4 and letters[0]["error"] == "HTTP 500"
    assert letters[0]["type"] == "drift" and letters[0]["event"] == DRIFT
    assert "secret-token" not in dead.read_text(), "the webhook's path (often a token) stays out"


async def test_webhook_does_not_retry_a_refused_event(tmp_path: Path, sleeps: list[float]) -> None:
    dead = tmp_path / "dead.jsonl"
    with Receiver([400]) as r:
        async with sink(r.url, sleeps, retries=5, dead_letter_file=dead) as s:
            assert await s.deliver(event()) == "dead-lettered"
    assert len(r.requests) == 1 and sleeps == []


async def test_unreachable_webhook_without_dead_letter_file_fails(sleeps: list[float]) -> None:
    with Receiver([200]) as r:
        url = r.url  # the server is gone after the block: the port refuses connections
    async with sink(url, sleeps, retries=2, backoff=0.01) as s:
        with pytest.raises(DeliveryFailed, match="offset stays uncommitted"):
            await s.deliver(event())
    assert sleeps == [0.01, 0.02]


def test_webhook_url_must_be_http() -> None:
    with pytest.raises(ValueError):
        WebhookSink("file:///etc/passwd")


# ------------------------------------------------------------------ one record at a time
async def test_tail_prints_each_event_once_and_skips_what_is_not_ours() -> None:
    out, err = io.StringIO(), io.StringIO()
    tail = Tail(KIND_OF_TOPIC, out, err)
    records = [record("drift", DRIFT, 0), record("drift", DRIFT, 1),   # redelivered
               record("degraded", DEGRADED, 2), record("snapshot", SNAPSHOT, 3),
               record("completed", {**COMPLETED, "job": "nightly-export"}, 4),  # another job
               record("completed", COMPLETED, 5), record("failed", FAILED, 6),
               record("drift", None, 7, value=b"{not json"), record("drift", None, 8, value=b"[1]")]
    for r in records:
        await tail.handle(r)
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["DRIFT", "DEGRADED", "SNAPSHOT", "COMPLETED", "FAILED"]
    assert tail.handled == 5
    problems = err.getvalue().splitlines()
    assert len(problems) == 2
    assert problems[0].startswith(f"tail: skipped {TOPICS['drift']}[0]@7 key=b'acme:risk-scoring': not JSON")


async def test_tail_delivers_to_the_webhook_and_notes_dead_letters(tmp_path: Path, sleeps: list[float]) -> None:
    out, err = io.StringIO(), io.StringIO()
    with Receiver([500]) as r:
        async with sink(r.url, sleeps, retries=1, backoff=0.01, dead_letter_file=tmp_path / "d.jsonl") as s:
            tail = Tail(KIND_OF_TOPIC, out, err, s)
            await tail.handle(record("drift", DRIFT, 0))
            await tail.handle(record("drift", DRIFT, 1))  # a duplicate is neither posted nor dead-lettered
    assert len(r.requests) == 2 and tail.handled == 1
    assert "not delivered to http://127.0.0.1:" in err.getvalue()
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 1


def test_cli_parser() -> None:
    parser = argparse.ArgumentParser()
    add_tail_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tail", "--webhook", "http://127.0.0.1:1/x", "--kinds", "drift,degraded",
                              "--max-events", "3", "--dead-letter-file", "dl.jsonl"])
    assert args.kinds == ("drift", "degraded") and args.max_events == 3
    assert args.webhook_retries == 5 and args.group == "model-monitoring-tail"
    assert args.dead_letter_file == Path("dl.jsonl") and not args.from_beginning
    with pytest.raises(SystemExit):
        parser.parse_args(["tail", "--kinds", "drift,bogus"])
    with pytest.raises(SystemExit):
        parser.parse_args(["tail", "--webhook-retries", "-1"])

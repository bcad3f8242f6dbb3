"""What the demo reads back and prints: a run's end, the events each run published (by kind),
the continuous detectors' early alerts, and the lines an on-call engineer would read — one per
event, the checks table, and each incident's path over the weeks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from model_monitoring.commands.harness import consumed, read_topic
from model_monitoring.commands.simulate import Scenario
from model_monitoring.streams.settings import Settings


async def wait_for_run(bootstrap: str, s: Settings, job_run_id: str, timeout: float = 180.0
                       ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for topic in (s.completed_topic, s.failed_topic):
            for rec in await read_topic(bootstrap, topic, timeout=0.5):
                doc = orjson.loads(rec.value)
                if doc.get("jobRunId") == job_run_id:
                    return {"topic": topic, **doc}
        await asyncio.sleep(1.0)
    raise TimeoutError(f"run {job_run_id} did not finish within {timeout}s")


async def early_alerts(bootstrap: str, s: Settings, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The continuous detectors' events (jobRunId null), read once the detectors have consumed
    every closed minute the ingest sent them."""
    if not s.continuous_enabled:
        return []
    deadline = time.monotonic() + timeout
    while not await consumed(bootstrap, s.app_id, [s.detector_buckets_topic]) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    out = []
    for topic in (s.drift_topic, s.degraded_topic):
        out += [d for d in (orjson.loads(r.value) for r in await read_topic(bootstrap, topic, timeout=0.5))
                if d.get("jobRunId") is None]
    return sorted(out, key=lambda d: d["detectedAt"])


async def events_of(bootstrap: str, topic: str, job_run_id: str) -> list[dict[str, Any]]:
    out = [orjson.loads(r.value) for r in await read_topic(bootstrap, topic, timeout=0.5)]
    return [d for d in out if d.get("jobRunId") == job_run_id]


def checks_table(snapshots: list[dict[str, Any]]) -> str:
    rows = [("tenant:model", "ver", "feature/metric", "value", "status", "severity", "n")]
    for snap in sorted(snapshots, key=lambda d: (d["tenantId"], d["modelId"], d["modelVersion"])):
        if snap["segment"] is not None:
            continue
        who = f"{snap['tenantId']}:{snap['modelId']}"
        for name, v in sorted(snap["features"].items()):
            value = "-" if v.get("value") is None else f"{v['value']:.4f}"
            rows.append((who, snap["modelVersion"], name, value, v["status"], v.get("severity") or "",
                         str(v.get("sampleSize", ""))))
        for name, v in sorted((snap.get("performance") or {}).items()):
            if not v:
                continue
            value = "-" if v.get("value") is None else f"{v['value']:.4f}"
            rows.append((who, snap["modelVersion"], name, value, v["status"], "", str(v.get("sampleSize", ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) for r in rows)


RUN_KINDS = ("drift", "degraded", "resolved", "recovered")


def run_events(bootstrap: str, s: Settings, job_run_id: str) -> dict[str, list[dict[str, Any]]]:
    topics = {"snapshot": s.snapshot_topic, "drift": s.drift_topic, "degraded": s.degraded_topic,
              "resolved": s.drift_resolved_topic, "recovered": s.performance_recovered_topic}
    return {kind: asyncio.run(events_of(bootstrap, topic, job_run_id)) for kind, topic in topics.items()}


def lifecycle_line(kind: str, e: dict[str, Any]) -> str:
    """One published event, as the on-call engineer would read it."""
    who = f"{e['tenantId']}:{e['modelId']} v{e['modelVersion']}" + (f" segment={e['segment']}" if e["segment"] else "")
    incident = f"incident {e['incidentId'][:8]}"
    if kind in ("resolved", "recovered"):
        name = e.get("feature") or e["metric"]
        lower = e.get("psiLower", e.get("valueLower"))
        if e["resolution"] != "cleared":
            how = f"{e['quietRuns']} runs in a row no longer in breach"
        elif e["value"] < e["clearThreshold"]:
            how = f"{e['value']:.4f} < clear {e['clearThreshold']:.4f}"
        else:
            how = f"{e['value']:.4f}, its 95% lower bound {lower:.4f} < clear {e['clearThreshold']:.4f}"
        return f"  {kind.upper():<9}          {who} {name} {how} (opened {e['openedAt']})  {incident}"
    status = e["incidentStatus"]
    page = "ALERT" if status in ("opened", "escalated") else "update"
    segments = ", ".join(seg["segment"] for seg in e.get("segments", [])) or "none"
    if kind == "drift":
        what = (f"DRIFT {e['severity']:<8} {who} {e['feature']} psi={e['value']:.4f} "
                f"psiLower={e['psiLower']:.4f} threshold={e['threshold']}")
    else:
        what = (f"DEGRADED {who} {e['metric']}={e['value']:.4f} baseline={e['baseline']:.4f} "
                f"threshold={e['threshold']:.4f}")
    return f"  {status.upper():<9} {page:<6}   {what} n={e['sampleSize']}; segments also in breach: {segments}  {incident}"


def print_run(week: int, job_run_id: str, how: str, events: dict[str, list[dict[str, Any]]]) -> None:
    alerts = sum(1 for k in ("drift", "degraded") for e in events[k] if e["incidentStatus"] in ("opened", "escalated"))
    counts = ", ".join(f"{len(events[k])} {k}" for k in RUN_KINDS)
    print(f"\nWeek {week}: {how} jobRunId={job_run_id} -> {counts} ({alerts} alerts)")
    for kind in RUN_KINDS:
        for e in events[kind]:
            print(lifecycle_line(kind, e))


def injected(e: dict[str, Any], scenario: Scenario) -> bool:
    """Whether a run's event is about a problem the demo's generator put in (commands/simulate.py):
    `pipeline_value` ×3 on a `numeric_shift` model, the unseen `lead_source` on an
    `unseen_category` one, any performance metric of an `accuracy_drop` one."""
    key = f"{e['tenantId']}:{e['modelId']}"
    feature = e.get("feature")
    if feature:  # drift (a prediction score's too: none is injected)
        return e.get("kind", "feature") == "feature" and (
            (key in scenario.numeric_shift and feature == "pipeline_value")
            or (key in scenario.unseen_category and feature == "lead_source"))
    return key in scenario.accuracy_drop


def lifecycle(weeks: list[tuple[str, dict[str, list[dict[str, Any]]]]], scenario: Scenario) -> list[str]:
    """Per incident, what each week's run said about it, and whether the generator injected the
    problem (`injected`): an incident on a model it left alone is a false alarm, shown as one."""
    steps: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    truth: dict[str, bool] = {}
    for week, (_, events) in enumerate(weeks, start=1):
        for kind in RUN_KINDS:
            for e in events[kind]:
                status = e.get("incidentStatus") or kind
                steps.setdefault(e["incidentId"], []).append(f"{status} (week {week})")
                seg = f" segment={e['segment']}" if e["segment"] else ""
                names[e["incidentId"]] = f"{e['tenantId']}:{e['modelId']}{seg} {e.get('feature') or e['metric']}"
                truth[e["incidentId"]] = injected(e, scenario)
    lines = [f"{incident[:8]} {names[incident]:<40} {'injected' if truth[incident] else 'NOT INJECTED':<12} "
             + " -> ".join(path) for incident, path in steps.items()]
    false = sum(not t for t in truth.values())
    lines.append(f"({len(truth) - false} incidents on injected problems, {false} on problems not injected: "
                 "false alarms. The generator leaves those models as their baselines describe them, so "
                 "what a check finds there is chance, which a test at its level lets through now and then; "
                 "bench/alert_quality.py measures how often)")
    return lines

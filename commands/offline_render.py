"""`check`'s snapshot as fixed-width text for a person (the JSON it prints with `--json`
stays the exact record): the feature checks, the performance checks, and the outcome clock's
lines (prediction score, calibration, label health) when the snapshot has them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast


def render_table(snapshot: Mapping[str, object]) -> str:
    """The snapshot as fixed-width text for a person (the JSON stays the exact record)."""
    segment = snapshot["segment"] if snapshot["segment"] is not None else "(all)"
    out = [
        f"model {snapshot['modelId']}  version {snapshot['modelVersion']}  "
        f"tenant {snapshot['tenantId']}  segment {segment}",
        f"window {snapshot['windowStart'] or '-'} .. {snapshot['windowEnd'] or '-'}  "
        f"events {snapshot['sampleSize']}  baseline events {snapshot['baselineSampleSize']}",
        "",
    ]
    features = cast(Mapping[str, Mapping[str, object]], snapshot["features"])
    width = max([len("feature"), *map(len, features)])
    out.append(_row([("feature", -width), ("status", -17), ("severity", -8), ("PSI", 10), ("lower", 10),
                     ("gate", 10), ("q", 8), ("sample", 7), ("mismatch", 8), ("top bin", 0)]))
    for name, check in features.items():
        bins = cast(list[dict[str, object]], check["bins"])
        top = max(bins, key=lambda b: cast(float, b["contribution"]))["bin"] if bins else "-"
        out.append(_row([(name, -width), (check["status"], -17), (check["severity"] or "-", -8),
                         (_fixed(check["value"]), 10), (_fixed(check.get("psiLower")), 10),
                         (_fixed(check["gate"]), 10), (_probability(check.get("qValue")), 8),
                         (check["sampleSize"], 7), (check.get("typeMismatch", 0), 8), (top, 0)]))
    metrics = cast(Mapping[str, Mapping[str, object]], snapshot["performance"])
    out.append("")
    if not metrics:
        out.append("performance: no baseline value to compare with")
        return "\n".join(out) + "\n"
    out.append(_row([("metric", -7), ("status", -17), ("value", 10), ("baseline", 10), ("threshold", 10),
                     ("z", 8), ("q", 8), ("outcomes", 8)]))
    for metric, check in metrics.items():
        z = check.get("z")
        out.append(_row([(metric, -7), (check["status"], -17), (_fixed(check["value"]), 10),
                         (_fixed(check["baseline"]), 10), (_fixed(check["threshold"]), 10),
                         ("-" if z is None else f"{cast(float, z):.2f}", 8), (_probability(check.get("qValue")), 8),
                         (check["sampleSize"], 8)]))
    return "\n".join(out + _outcome_clock_lines(snapshot)) + "\n"


def _outcome_clock_lines(snapshot: Mapping[str, object]) -> list[str]:
    """The prediction score's drift, calibration, expected Brier and label health, when present."""
    out: list[str] = []
    if snapshot.get("windowBasis"):
        out.append(f"performance view: {snapshot['windowBasis']} (outcomes that arrived in the window)"
                   if snapshot["windowBasis"] == "outcome" else
                   "performance view: prediction (the window's predictions labelled so far)")
    score = cast(Mapping[str, object] | None, snapshot.get("prediction"))
    if score:
        out.append(f"prediction score: {score['status']}  PSI {_fixed(score['value'])}  lower "
                   f"{_fixed(score.get('psiLower'))}  q {_probability(score.get('qValue'))}")
    if "expectedBrier" in snapshot:
        out.append(f"expected Brier if calibrated E[p(1-p)]: {_fixed(snapshot['expectedBrier'])}")
    calibration = cast(Mapping[str, object] | None, snapshot.get("calibration"))
    if calibration:
        out.append(f"calibration: ECE {_fixed(calibration['ece'])} (null mean {_fixed(calibration['eceNullMean'])})  "
                   f"Brier {_fixed(calibration['brier'])} = REL {_fixed(calibration['reliability'])} "
                   f"- RES {_fixed(calibration['resolution'])} + UNC {_fixed(calibration['uncertainty'])} "
                   f"+ WBV {_fixed(calibration['withinBinVariance'])} - WBC {_fixed(calibration['withinBinCovariance'])}")
    labels = cast(Mapping[str, object] | None, snapshot.get("labels"))
    if labels:
        out.append(f"labels: coverage {_fixed(labels['coverage'])}  lag p50 {_fixed(labels['lagP50Hours'])} h  "
                   f"p90 {_fixed(labels['lagP90Hours'])} h  expired early outcomes {labels['expiredEarlyOutcomes']}")
    return [""] + out if out else []


def _row(cells: Sequence[tuple[object, int]]) -> str:
    """Cells of (value, width): a negative width aligns left, a positive one right, 0 is free."""
    return "  ".join(f"{str(v):<{-w}}" if w < 0 else f"{str(v):>{w}}" for v, w in cells).rstrip()


def _fixed(value: object) -> str:
    return "-" if value is None else f"{cast(float, value):.6f}"


def _probability(value: object) -> str:
    return "-" if value is None else f"{cast(float, value):.2g}"

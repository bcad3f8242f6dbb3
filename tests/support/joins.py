"""Is the join complete and exact? The partials changelog against the offline fold, the Brier
score against numpy and an exact `Fraction` sum, and nothing left waiting in the join buffer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import orjson

from model_monitoring.commands.simulate import Message
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.error_sums import PerformanceSums
from model_monitoring.tables.join_buffer import JoinEntry
from tests.support.oracle import Fold, offline_fold, stream_state


@dataclass(frozen=True)
class JoinFigures:
    outcomes: int             # distinct predictionIds with an outcome (and a prediction)
    joined: int               # pairs the stream counted
    waiting_outcomes: int     # join entries holding an outcome without its prediction
    brier: float | None       # from the stream's exact sums
    brier_numpy: float


def first_pairs(messages: Iterable[Message]) -> list[tuple[float, float]]:
    """(prediction, outcome) of every predictionId with both, first of each, as the contract
    counts them (well-formed messages only; the tests send no other kind here)."""
    predictions: dict[str, tuple[str, str, float]] = {}
    outcomes: dict[str, tuple[str, str, float]] = {}
    for m in messages:
        doc = orjson.loads(m.value)
        for rec in doc["records"] if "records" in doc and "predictionId" not in doc else [doc]:
            who = (rec["tenantId"], rec["modelId"])
            if m.kind == "features":
                predictions.setdefault(rec["predictionId"], (*who, float(rec["prediction"])))
            else:
                outcomes.setdefault(rec["predictionId"], (*who, float(rec["outcome"])))
    return [(predictions[pid][2], y) for pid, (*who, y) in outcomes.items()
            if pid in predictions and tuple(predictions[pid][:2]) == tuple(who)]


def waiting_outcomes(join_changelog: Mapping[bytes, bytes]) -> int:
    return sum(1 for raw in join_changelog.values()
               if (e := JoinEntry.from_bytes(raw)).outcome is not None and e.prediction is None)


def check_join(partials_changelog: Mapping[bytes, bytes], join_changelog: Mapping[bytes, bytes],
               messages: list[Message], baselines: Mapping[tuple[str, str], Baseline]) -> JoinFigures:
    """Assert that the stream's partials equal one offline pass over `messages`, every outcome
    joined its prediction, and the Brier score is exact; return the figures."""
    expected: Fold = offline_fold(messages, baselines)
    actual = stream_state(partials_changelog)
    pairs = first_pairs(messages)
    performance = PerformanceSums.empty()
    for state in actual.states.values():
        performance = performance.merge(state.performance)
    p = np.array([x for x, _ in pairs])
    y = np.array([v for _, v in pairs])
    figures = JoinFigures(outcomes=len(pairs), joined=performance.n,
                          waiting_outcomes=waiting_outcomes(join_changelog),
                          brier=performance.squared.mean(), brier_numpy=float(np.mean((p - y) ** 2)))
    assert figures.joined == figures.outcomes and figures.waiting_outcomes == 0, figures
    exact = sum((Fraction((a - b) * (a - b)) for a, b in pairs), Fraction(0)) / len(pairs)
    assert figures.brier == float(exact), figures
    assert abs(figures.brier - figures.brier_numpy) <= 1e-12 * figures.brier_numpy, figures
    assert set(actual.states) == set(expected.states)
    mismatched = [k for k in expected.states if actual.comparable()[k] != expected.comparable()[k]]
    detail = [(k, _counts(actual, k), _counts(expected, k)) for k in mismatched[:5]]
    assert not mismatched, (f"{len(mismatched)} partials differ from the offline fold ((predictions, pairs) "
                            f"counted: stream, offline): {detail}")
    return figures


def _counts(fold: Fold, key: tuple[str, str, str, str, int]) -> tuple[int, int]:
    state = fold.states[key]
    return state.histogram.n, state.performance.n

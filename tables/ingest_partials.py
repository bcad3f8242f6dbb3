"""The ingest fold's pending changes per partial key (`PendingPartial`: the batch's feature
records, scores, pairs and offsets of one key), and how they become the key's new partial
value (`finish_partials`): every key of one baseline binned in one pass (`count_groups`), the
detectors' health counts from the same codes, the pairs' error sums and reliability bins, and
the watermarks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from model_monitoring.tables.baseline import Baseline, BaselineLookup
from model_monitoring.tables.error_sums import PerformanceSums
from model_monitoring.tables.health_buckets import BucketTracker, count_health
from model_monitoring.tables.histogram import FeatureHistogram, count_groups
from model_monitoring.tables.keys import ArrivalKey, PartialKey
from model_monitoring.tables.partial import PartialState


@dataclass
class PendingPartial:
    """What one batch adds to one partial key, gathered record by record, applied once."""

    before: PartialState
    features: list[Mapping[str, object]] = field(default_factory=list)
    health_ids: list[int] = field(default_factory=list)  # per feature record: its detector bucket or -1
    health_only: list[tuple[Mapping[str, object], int]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # the predictions of `features`' records
    predictions: list[float] = field(default_factory=list)  # pairs: prediction, outcome, lag
    outcomes: list[float] = field(default_factory=list)
    lags_ms: list[int] = field(default_factory=list)
    unmatched: int = 0  # outcomes whose prediction had expired (arrival days only)
    max_offset: dict[str, int] = field(default_factory=dict)


SlotKey = PartialKey | ArrivalKey


def finish_partials(pending: Mapping[SlotKey, PendingPartial], baseline_for: BaselineLookup,
                    buckets: BucketTracker | None, counts: Counter[str]) -> dict[bytes, PartialState]:
    """The new value of every key the batch changed (encoded key → value); `buckets`: the
    detectors' minute buckets, given the health counts of the same binning; `counts`: the
    fold's counters (`baseline_changed`)."""
    out: dict[bytes, PartialState] = {}
    histograms = _histograms(pending, baseline_for, buckets)
    for key, slot in pending.items():
        if not slot.max_offset:
            continue  # everything in this batch for the key was counted before
        state = slot.before
        histogram = histograms.get(key) if isinstance(key, PartialKey) else None
        if histogram is not None and state.histogram.fingerprint not in ("", histogram.fingerprint):
            # the version's baseline was replaced: counts under the old bins are void
            counts["baseline_changed"] += 1
            state = replace(state, histogram=FeatureHistogram.empty(histogram.fingerprint), score_counts=())
        performance = None
        if slot.predictions:
            p = np.asarray(slot.predictions, dtype=np.float64)
            y = np.asarray(slot.outcomes, dtype=np.float64)
            performance = PerformanceSums.empty().update_many(p, y)
            # reliability bins read probabilities: a regression score is clipped (never read)
            state = replace(state, calibration=state.calibration.update_many(np.clip(p, 0.0, 1.0), y),
                            lags=state.lags.update_many(slot.lags_ms))
        if slot.scores:
            state = _with_scores(state, key, slot.scores, histogram, baseline_for)
        if slot.unmatched:
            state = replace(state, expired_outcomes=state.expired_outcomes + slot.unmatched)
        state = state.add(histogram, performance)
        for topic_slot, offset in slot.max_offset.items():
            state = state.with_watermark(topic_slot, offset)
        out[key.encode()] = state
    return out


def _with_scores(state: PartialState, key: SlotKey, scores: list[float], histogram: FeatureHistogram | None,
                 baseline_for: BaselineLookup) -> PartialState:
    """The prediction scores of new records: count, Σp, Σp² (clipped to [0, 1]: only a
    classifier's are read), and their counts in the baseline's prediction bins."""
    p = np.asarray(scores, dtype=np.float64)
    state = replace(state, scores=state.scores.update_many(np.clip(p, 0.0, 1.0)))
    baseline = baseline_for(key.tenant_id, key.model_id, key.model_version)
    if baseline is None or baseline.prediction is None or histogram is None or not histogram.fingerprint:
        return state
    counts, _ = baseline.prediction.bins.bin_values(list(p))
    before = state.score_counts or (0,) * len(counts)
    return replace(state, score_counts=tuple(int(a) + int(b) for a, b in zip(before, counts, strict=True)))

def _histograms(pending: Mapping[SlotKey, PendingPartial], baseline_for: BaselineLookup,
            buckets: BucketTracker | None) -> dict[SlotKey, FeatureHistogram]:
    """The batch's new counts per key: all keys of one baseline binned in one pass."""
    by_baseline: dict[int, tuple[Baseline, list[SlotKey]]] = {}
    out: dict[SlotKey, FeatureHistogram] = {}
    for key, slot in pending.items():
        if not slot.features and not slot.health_only:
            continue
        baseline = baseline_for(key.tenant_id, key.model_id, key.model_version)
        if baseline is None:
            if slot.features:
                out[key] = names_only(slot.features)
        else:
            by_baseline.setdefault(id(baseline), (baseline, []))[1].append(key)
    for baseline, keys in by_baseline.values():
        features: list[Mapping[str, object]] = []
        groups: list[int] = []
        hids: list[int] = []
        for g, key in enumerate(keys):
            features += pending[key].features
            groups += [g] * len(pending[key].features)
            hids += pending[key].health_ids
        for key in keys:  # binned for the detectors only, in a group that is dropped
            features += [f for f, _ in pending[key].health_only]
            groups += [len(keys)] * len(pending[key].health_only)
            hids += [h for _, h in pending[key].health_only]
        codes: dict[str, tuple[np.ndarray, np.ndarray]] | None = {} if buckets is not None else None
        histograms = count_groups(baseline, features, groups, len(keys) + 1, codes)
        for key, histogram in zip(keys, histograms, strict=False):
            if pending[key].features:
                out[key] = histogram
        if buckets is not None and codes is not None:
            buckets.add_counts(count_health(baseline, codes, np.asarray(hids, dtype=np.int64),
                                                 len(buckets.health_keys)))
    return out


def names_only(features: Sequence[Mapping[str, object]]) -> FeatureHistogram:
    """Events of a version without a baseline: no bins to count in, but the sample size and the
    feature names (reported as `no_baseline`) are kept."""
    names = sorted({name for f in features for name in f})
    return FeatureHistogram(counts={n: () for n in names}, type_mismatch={}, n=len(features),
                            fingerprint="")

"""Mergeable per-feature bin counts of a stream of inference records, against frozen baseline bins."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import cast

import numpy as np

from model_monitoring.tables.baseline import Baseline


@dataclass(frozen=True)
class FeatureHistogram:
    """Counts per bin of each feature (in ``FeatureBins.labels()`` order), mismatches and events.

    An empty tuple of counts means the feature was seen but there were no bins to count it in.

    ``fingerprint`` names the bins the counts were taken with (``Baseline.fingerprint()``); ``""``
    means none yet, e.g. events counted before the model version's baseline arrived.
    """

    counts: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    type_mismatch: Mapping[str, int] = field(default_factory=dict)
    n: int = 0
    fingerprint: str = ""

    @staticmethod
    def empty(fingerprint: str = "") -> FeatureHistogram:
        return FeatureHistogram({}, {}, 0, fingerprint)

    def merge(self, other: FeatureHistogram) -> FeatureHistogram:
        """The counts of both; associative and commutative. Counts of different bins never mix."""
        if self.fingerprint and other.fingerprint and self.fingerprint != other.fingerprint:
            raise ValueError(
                f"cannot merge histograms of different bins ({self.fingerprint} != {other.fingerprint})"
            )
        counts = dict(self.counts)
        for name, theirs in other.counts.items():
            ours = counts.get(name)
            if not ours:  # absent, or () = the feature was seen with no bins to count in
                counts[name] = tuple(theirs)
            elif not theirs:
                continue
            elif len(ours) != len(theirs):
                raise ValueError(f"{name}: cannot merge {len(ours)} bins with {len(theirs)} bins")
            else:
                counts[name] = tuple(map(operator.add, ours, theirs))
        mismatch = dict(self.type_mismatch)
        for name, count in other.type_mismatch.items():
            mismatch[name] = mismatch.get(name, 0) + count
        return FeatureHistogram(
            counts=dict(sorted(counts.items())),
            type_mismatch=dict(sorted(mismatch.items())),
            n=self.n + other.n,
            fingerprint=self.fingerprint or other.fingerprint,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "fingerprint": self.fingerprint,
            "n": self.n,
            "counts": {name: list(c) for name, c in self.counts.items()},
            "typeMismatch": dict(self.type_mismatch),
        }

    @classmethod
    def from_json(cls, value: object) -> FeatureHistogram:
        if not (isinstance(value, dict) and set(value) == {"fingerprint", "n", "counts", "typeMismatch"}):
            raise ValueError(f"not a FeatureHistogram: {value!r}")
        fingerprint, n, counts, mismatch = (
            value["fingerprint"], value["n"], value["counts"], value["typeMismatch"]
        )
        if not isinstance(fingerprint, str) or not _is_count(n):
            raise ValueError("FeatureHistogram: bad fingerprint or n")
        if not (isinstance(counts, dict) and _are_count_lists(counts.values())):
            raise ValueError("FeatureHistogram: counts must map feature -> list of ints >= 0")
        if not (isinstance(mismatch, dict) and all(map(_is_count, mismatch.values()))):
            raise ValueError("FeatureHistogram: typeMismatch must map feature -> int >= 0")
        return cls(
            counts={name: tuple(c) for name, c in counts.items()},
            type_mismatch=dict(mismatch),
            n=n,
            fingerprint=fingerprint,
        )


def count_batch(
    baseline: Baseline | None, feature_dicts: Sequence[Mapping[str, object]]
) -> FeatureHistogram:
    """Bin a batch of records' ``features`` mappings: one vectorised ``bin_values`` per feature.

    Features absent from a record count as missing; features unknown to the baseline are ignored
    here (the snapshot reports them as ``no_baseline``). Without a baseline only events are counted.
    """
    if baseline is None:
        return FeatureHistogram({}, {}, len(feature_dicts), "")
    counts: dict[str, tuple[int, ...]] = {}
    mismatch: dict[str, int] = {}
    for name in sorted(baseline.features):
        values = [features.get(name) for features in feature_dicts]
        bin_counts, mismatches = baseline.features[name].bins.bin_values(values)
        counts[name] = tuple(bin_counts.tolist())
        mismatch[name] = mismatches
    return FeatureHistogram(counts, mismatch, len(feature_dicts), baseline.fingerprint())


def feature_columns(feature_dicts: Sequence[Mapping[str, object]], names: Sequence[str]
                    ) -> list[Sequence[object]]:
    """Each named feature's values over the records (None where a record lacks it), in `names`'
    order: one C-level `itemgetter` per record and a transpose, ~2× faster than a `get` per
    feature per record."""
    if not names:
        return []
    if not feature_dicts:
        return [() for _ in names]
    if len(names) == 1:
        [name] = names
        return [[features.get(name) for features in feature_dicts]]
    getter = itemgetter(*names)
    try:
        rows = list(map(getter, feature_dicts))  # every record has every feature: no Python frame
    except KeyError:  # some record lacks one: missing there

        def row(features: Mapping[str, object]) -> tuple[object, ...]:
            try:
                return cast(tuple[object, ...], getter(features))
            except KeyError:
                return tuple(map(features.get, names))

        rows = list(map(row, feature_dicts))
    return list(zip(*rows, strict=True))


def count_groups(baseline: Baseline, feature_dicts: Sequence[Mapping[str, object]],
                 groups: Sequence[int], n_groups: int,
                 codes_out: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> list[FeatureHistogram]:
    """`count_batch` of many groups of records at once: each feature is binned in one call over
    the whole batch and the codes are counted per group with one `bincount`. Equal to
    `[count_batch(baseline, group) for group in …]` (a test says so); the cost no longer grows
    with the number of groups, which is what many small partials per batch need. `codes_out`,
    when given, receives each feature's codes and mismatch mask (the continuous detectors' counts
    reuse them: tables/health_buckets.py)."""
    group_ids = np.asarray(groups, dtype=np.int64)
    sizes = np.bincount(group_ids, minlength=n_groups)
    per_group_counts: list[dict[str, tuple[int, ...]]] = [{} for _ in range(n_groups)]
    per_group_mismatch: list[dict[str, int]] = [{} for _ in range(n_groups)]
    names = sorted(baseline.features)
    for name, values in zip(names, feature_columns(feature_dicts, names), strict=True):
        bins = baseline.features[name].bins
        codes, mismatch = bins.bin_codes(values)
        if codes_out is not None:
            codes_out[name] = (codes, mismatch)
        table = np.bincount(group_ids * bins.n_bins + codes,
                            minlength=n_groups * bins.n_bins).reshape(n_groups, bins.n_bins)
        wrong = np.bincount(group_ids[mismatch], minlength=n_groups)
        rows = table.tolist()
        for g in range(n_groups):
            per_group_counts[g][name] = tuple(rows[g])
            per_group_mismatch[g][name] = int(wrong[g])
    fingerprint = baseline.fingerprint()
    return [FeatureHistogram(per_group_counts[g], per_group_mismatch[g], int(sizes[g]), fingerprint)
            for g in range(n_groups)]


def counts_array(histogram: FeatureHistogram, name: str, n_bins: int) -> np.ndarray:
    """One feature's counts as int64, zeros when it was never counted; checks the bin count."""
    counts = histogram.counts.get(name)
    if not counts:
        return np.zeros(n_bins, dtype=np.int64)
    if len(counts) != n_bins:
        raise ValueError(f"{name}: histogram has {len(counts)} bins, baseline has {n_bins}")
    return np.asarray(counts, dtype=np.int64)


_INT_ONLY = frozenset({int})


_LIST_ONLY = frozenset({list})


def _are_count_lists(values: Iterable[object]) -> bool:
    """Every value a list of ints >= 0 (bools excluded), checked at C speed and for all of a
    histogram's features at once: this runs for every table read, which holds dozens of them."""
    lists = list(values)
    if not set(map(type, lists)) <= _LIST_ONLY:
        return False
    flat: list[int] = list(chain.from_iterable(lists))  # type: ignore[arg-type]  # lists, checked above
    return not flat or (set(map(type, flat)) <= _INT_ONLY and min(flat) >= 0)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

"""A river change detector as an immutable, serialisable table value.

river's detectors (ADWIN, PageHinkley, KSWIN) are mutable objects; their state pickles and
unpickles exactly (ADWIN's Cython window included; KSWIN's random generator with it): a
detector restored from its bytes and fed the same values signals at the same points as one
never stopped (tests/unit/test_continuous_detection.py). The bytes live inside the detectors'
changelog value, written after each closed bucket, so a restart resumes the same state."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from river import drift

DETECTORS: Mapping[str, Any] = {
    "adwin": drift.ADWIN,
    "page_hinkley": drift.PageHinkley,
    "kswin": drift.KSWIN,
}


def new_detector(name: str, params: Mapping[str, object]) -> Any:
    """A fresh detector by its lowercase name; KSWIN gets a fixed seed (replays must agree), and
    ADWIN checks at every value (river's default checks every 32nd, too slow at one a minute)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown change detector {name!r} (one of {sorted(DETECTORS)})")
    kwargs = dict(params)
    if name == "adwin":  # one value per observation (a minute or more): check for a cut at each
        kwargs.setdefault("clock", 1)
    if name == "kswin":
        kwargs.setdefault("seed", 42)
    return DETECTORS[name](**kwargs)


@dataclass(frozen=True)
class DetectorState:
    """One stream's detector: its name and its pickled state."""

    name: str
    state: bytes

    @classmethod
    def new(cls, name: str, params: Mapping[str, object]) -> DetectorState:
        return cls(name, pickle.dumps(new_detector(name, params), protocol=5))

    def update_many(self, values: list[float]) -> tuple[DetectorState, list[int]]:
        """Feed values in order: the new state and the indexes at which it signalled."""
        detector = pickle.loads(self.state)  # noqa: S301 - our own changelog's bytes
        signals = []
        for i, value in enumerate(values):
            detector.update(value)
            if detector.drift_detected:
                signals.append(i)
        return DetectorState(self.name, pickle.dumps(detector, protocol=5)), signals

"""A river change detector as a serialisable table value.

river's detectors (ADWIN, PageHinkley, KSWIN) are mutable objects; their state pickles and
unpickles exactly (ADWIN's Cython window included; KSWIN's random generator with it): a
detector restored from its bytes and fed the same values signals at the same points as one
never stopped (tests/unit/test_continuous_detection.py). The bytes live inside the detectors'
changelog value, written after each closed-bucket message, so a restart resumes the same state.

The live object is kept between updates and pickled only when the value is written: a fold
over thousands of minutes (a replay, the bench) does not pay a pickle round trip per value.
`update_many` therefore moves the detector into the state it returns; the state it was called
on must not be used again (every caller reassigns it)."""

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
    if name == "adwin":
        kwargs.setdefault("clock", 1)
        kwargs.setdefault("min_window_length", 1)
    if name == "kswin":
        kwargs.setdefault("seed", 42)
        kwargs.pop("delta", None)
    return DETECTORS[name](**kwargs)


@dataclass(frozen=True)
class DetectorState:
    """One stream's detector: its lowercase river name and the live detector."""

    name: str
    detector: Any

    @classmethod
    def new(cls, name: str, params: Mapping[str, object]) -> DetectorState:
        return cls(name, new_detector(name, params))

    @property
    def state(self) -> bytes:
        return pickle.dumps(self.detector, protocol=5)

    @classmethod
    def from_state(cls, name: str, state: bytes) -> DetectorState:
        return cls(name, pickle.loads(state))  # noqa: S301 - our own changelog's bytes

    def update_many(self, values: list[float]) -> tuple[DetectorState, list[int]]:
        """Feed values in order: the new state and the indexes at which it signalled."""
        signals = []
        for i, value in enumerate(values):
            self.detector.update(value)
            if self.detector.drift_detected:
                signals.append(i)
        return DetectorState(self.name, self.detector), signals

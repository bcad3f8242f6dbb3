"""Hypothesis strategies for the state classes, shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from model_monitoring.tables.error_sums import PerformanceSums


@st.composite
def performance_sums(draw: st.DrawFn, max_size: int = 20) -> PerformanceSums:
    """Error sums of up to `max_size` classification outcomes."""
    n = draw(st.integers(0, max_size))
    p = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    y = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n))
    return PerformanceSums.empty().update_many(p, y)

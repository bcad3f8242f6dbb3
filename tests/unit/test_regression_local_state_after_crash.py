"""Regression: after a SIGKILL the local RocksDB could hold writes its changelog never got;
replayed events were then skipped as counted and the changelog stayed short of them (found by
the SIGKILL crash test, now tests/integration/test_any_partitioner.py). An unclean stop now drops the local tables."""

from pathlib import Path

from model_monitoring.commands.worker import discard_state_after_crash
from model_monitoring.streams.settings import load_settings


def test_local_tables_are_dropped_after_an_unclean_stop_only(tmp_path: Path) -> None:
    s = load_settings({"MODEL_MONITORING_DATA_DIR": str(tmp_path), "MODEL_MONITORING_APP_ID": "mm"})
    tabledir = tmp_path / "v1" / "tables"
    tabledir.mkdir(parents=True)
    (tabledir / "partials-0.db").write_text("x")
    assert discard_state_after_crash(s, tabledir) is False  # first start: nothing to discard
    assert tabledir.exists()
    # the process died without removing its marker
    assert discard_state_after_crash(s, tabledir) is True
    assert not tabledir.exists()
    # a clean stop removes the marker: the next start keeps the state
    (tmp_path / "mm.running").unlink()
    tabledir.mkdir(parents=True)
    assert discard_state_after_crash(s, tabledir) is False and tabledir.exists()

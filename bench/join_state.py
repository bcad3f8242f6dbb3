"""Join state benchmark: what a prediction costs the changelog, and what a recovery costs.

    .venv/bin/python -m bench.join_state [--predictions 1000000] [--fold 2000]

Writes `--predictions` join entries (realistic: a prediction waiting for its outcome, as the
ingest fold writes them) through the join store (streams/join_store.py) in folds of `--fold`
records, with the index in RocksDB on disk, as a worker does; then rebuilds the partition's index
from the log alone, as a worker does on its first fold after the partition was assigned (after a
crash, a restart or a rebalance). Prints, for the log against one changelog message per
prediction (the previous `join_buffer` table): messages and bytes per 1,000 predictions; the
write time per prediction; the rebuild's time and rate. Then one JSON line. No broker: the log is
a dict standing for the table (faust's own write to its RocksDB store and the changelog send are
the same per message either way)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from model_monitoring.streams.join_store import JoinStore
from model_monitoring.tables.join_buffer import JoinEntry, Prediction
from model_monitoring.tables.join_log import Entry, entry_of
from model_monitoring.tables.keys import JoinKey, partition_of

DAY = 86_400_000
TTL = 90 * DAY


class Log(dict[bytes, bytes]):
    def items_of(self, partition: int) -> list[tuple[bytes, bytes]]:
        return sorted((k, v) for k, v in self.items() if partition_of(k) == partition)


async def _flush() -> None:
    return None


def entries(n: int, start_ms: int) -> list[Entry]:
    return [entry_of(JoinKey(0, f"3f9c2a1e-5b7d-4c21-9e0a-{i:012d}").encode(),
                     JoinEntry(Prediction("tenant-0007", "deal-risk", "2024-11-03", "enterprise",
                                          start_ms + i * 1000, 0.731234, ("f", 1_000_000 + i // 100, i % 100))))
            for i in range(n)]


async def measure(n: int, fold: int, workdir: Path) -> dict[str, float]:
    log = Log()
    store = JoinStore(log, log.items_of, _flush, workdir / "index")
    mark = 10 * DAY + n * 1000
    await store.ensure(0, mark, TTL)
    data = entries(n, 10 * DAY)
    started = time.perf_counter()
    for i in range(0, n, fold):
        store.append(0, data[i:i + fold])
    write_s = time.perf_counter() - started
    store.close()
    log_bytes = sum(len(k) + len(v) for k, v in log.items())
    per_entry_bytes = sum(len(k) + len(v) for k, _, v in data)
    again = JoinStore(log, log.items_of, _flush, workdir / "index")
    started = time.perf_counter()
    await again.ensure(0, mark, TTL)
    rebuild_s = time.perf_counter() - started
    sample = data[:: max(1, n // 1000)]
    assert all(again.get(0, k) == v for k, _, v in sample)  # the rebuilt index answers as the live one did
    again.close()
    return {"predictions": n, "fold": fold, "log_messages_per_1000": round(len(log) * 1000 / n, 2),
            "log_kb_per_1000": round(log_bytes / n, 1), "per_entry_kb_per_1000": round(per_entry_bytes / n, 1),
            "write_us_per_prediction": round(write_s * 1e6 / n, 2),
            "rebuild_seconds": round(rebuild_s, 2), "rebuild_entries_per_s": round(n / rebuild_s)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--predictions", type=int, default=1_000_000)
    ap.add_argument("--fold", type=int, default=2000, help="records per fold (one append)")
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-join-"))
    try:
        r = asyncio.run(measure(args.predictions, args.fold, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'':24}{'join log':>14}{'entry per message':>20}")
    print(f"{'messages / 1,000 pred.':24}{r['log_messages_per_1000']:>14}{1000:>20}")
    print(f"{'KB / 1,000 pred.':24}{r['log_kb_per_1000']:>14}{r['per_entry_kb_per_1000']:>20}")
    print(f"write: {r['write_us_per_prediction']} µs per prediction (batch codec + index put), folds of {args.fold}")
    print(f"recovery: the index of {r['predictions']:,} entries rebuilt from the log in "
          f"{r['rebuild_seconds']} s ({r['rebuild_entries_per_s']:,} entries/s)")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ingest path's own CPU per record, stage by stage, with no broker and no faust: what
`bench.ingest` measures through the whole worker, taken apart. Envelopes of 100 of the ingest
bench's records (25 features) arrive on one of `--partitions` partitions; each stage runs the
service's own code as the worker does:

- decode at the source: `FastDecoder.decode` of every envelope (validation included);
- route and forward: `admit_on_arrival`, `route`, and the forwarded envelopes built
  (`envelope_of` of the records' own JSON, split from the source envelope for them) — three
  records in four with 4 partitions;
- decode at the destination: the forwarded envelopes decoded again;
- fold: `IngestFold.fold_predictions` of each partition's records in chunks of `--chunk`, with
  the new partial values and join entries encoded as they are written.

Run with the worker's GC settings. Prints a table and, last, one JSON object.

    .venv/bin/python -m bench.ingest_path [--records 20000] [--partitions 4] [--chunk 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

import orjson

from bench.ingest_records import ENVELOPE, bench_baseline, bench_records
from model_monitoring.agents.ingest import envelope_items
from model_monitoring.schemas.fast_decode import FastDecoder
from model_monitoring.tables.forwarding import admit_on_arrival, envelope_of, route
from model_monitoring.tables.ingest import IngestFold
from model_monitoring.tables.join_log import entry_of
from model_monitoring.tables.partial import PartialState

DAY_MS = 86_400_000
STAGES = ("decode_source", "route_forward", "decode_destination", "fold")


def one_round(messages: list[bytes], partitions: int, chunk: int, baseline: Any) -> dict[str, float]:
    """CPU seconds of each stage over all the messages, arriving on partition 0."""
    fast = FastDecoder("features", 500, 10_000_000)
    seconds: dict[str, float] = {}
    start = time.process_time()
    records: list[tuple[int, int, Any]] = []
    raws: dict[int, Any] = {}
    for offset, message in enumerate(messages):
        decoded = fast.decode(message)
        if decoded is None or not decoded.enveloped:
            raise SystemExit("the bench's envelopes must take the fast path")
        raws[offset] = decoded  # its records' own JSON is split out when a forward reads it
        records.extend((offset, index, record) for index, record in enumerate(decoded.records))
    seconds["decode_source"] = time.process_time() - start

    start = time.process_time()
    admitted, _late, _mark = admit_on_arrival(records, -1, 10**13, "too late")
    own, forwards = route(admitted, 0, partitions)
    outgoing = [(f.target, f.offset, f.indexes,
                 envelope_of(envelope_items([raws[f.offset].raws[i] for i in f.indexes]))) for f in forwards]
    seconds["route_forward"] = time.process_time() - start

    start = time.process_time()
    by_partition: list[list[tuple[int, int, Any]]] = [[] for _ in range(partitions)]
    by_partition[0] = own
    for target, offset, indexes, value in outgoing:
        decoded = fast.decode(value)
        assert decoded is not None
        by_partition[target].extend((offset, i, r) for i, r in zip(indexes, decoded.records, strict=True))
    seconds["decode_destination"] = time.process_time() - start

    start = time.process_time()
    partials: dict[bytes, bytes] = {}
    joins: dict[bytes, bytes] = {}
    for partition, part in enumerate(by_partition):
        fold = IngestFold(partition, bucket_ms=DAY_MS, retention_ms=35 * DAY_MS,
                          baseline_for=lambda tenant, model, version: baseline)
        for at in range(0, len(part), chunk):
            result = fold.fold_predictions(
                part[at:at + chunk],
                lambda key: PartialState.from_bytes(partials[key]) if key in partials else None,
                lambda key: None, -1)
            partials.update((key, state.to_bytes()) for key, state in result.partials.items())
            joins.update((key, entry_of(key, entry)[2]) for key, entry in result.joins.items())
    seconds["fold"] = time.process_time() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=10_000, help="records per fold (the worker's max_records_per_fold)")
    parser.add_argument("--rounds", type=int, default=3, help="the fastest round is reported")
    args = parser.parse_args()
    records = list(bench_records(args.records))
    messages = [orjson.dumps({"records": records[i:i + ENVELOPE]}) for i in range(0, len(records), ENVELOPE)]
    baseline = bench_baseline()
    gc.freeze()  # as the worker does (commands/worker.py)
    gc.set_threshold(50_000, 50, 100)
    rounds = [one_round(messages, args.partitions, args.chunk, baseline) for _ in range(args.rounds)]
    best = min(rounds, key=lambda r: sum(r.values()))
    per_record = {stage: round(best[stage] / args.records * 1e6, 2) for stage in STAGES}
    total = round(sum(best.values()) / args.records * 1e6, 2)
    print(f"{args.records:,} records in envelopes of {ENVELOPE}, {args.partitions} partitions, "
          f"folds of up to {args.chunk:,} records; CPU µs per record, fastest of {args.rounds} rounds")
    for stage in STAGES:
        print(f"  {stage:<20} {per_record[stage]:>7.2f}")
    print(f"  {'total':<20} {total:>7.2f}")
    print(json.dumps({"records": args.records, "partitions": args.partitions, "chunk": args.chunk,
                      "us_per_record": per_record, "total_us_per_record": total}))


if __name__ == "__main__":
    main()

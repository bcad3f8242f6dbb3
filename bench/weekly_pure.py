"""The weekly run's own work with no broker and no faust: the reference `bench.weekly_run`
measures in the same run, so that its seconds can be told from the machine's speed of the hour
(the same code took 3.76 s for 1,000 keys one afternoon and 4.83 s the next).

What the worker does between a trigger and its completion, less the fan-out, the messages
between partitions, the tables and the publishing: the service's own pure steps, in one process,
over the partials the worker stored (read back from its changelog, not timed):

- each partition's share of the window, from its stored partials (`window_parts`: decoding the
  partials and summing them per key, as a snapshot request does);
- each key's parts of every partition summed per version and segment (`merge_segments`);
- per batch of `EVALUATE_BATCH` keys, as the evaluator does: the feature checks of every key in
  one numpy pass per feature baseline (`want_verdicts`, `FeatureVerdicts.compute`), then each
  key evaluated (`evaluate_key`: snapshots, FDR, grouped alerts, incidents opened) and its events
  encoded (`orjson.dumps`).

The evaluation is the first round's (no incidents before it). Its counts are the run's: the
caller holds them against the worker's completion (`driftChecked`, `performanceChecked`), so the
reference is known to have done the same work."""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from model_monitoring.schemas.timestamps import format_timestamp
from model_monitoring.streams.settings import Settings
from model_monitoring.tables.baseline_lookup import BaselineCache
from model_monitoring.tables.evaluation_state import merge_segments
from model_monitoring.tables.keys import partition_of
from model_monitoring.tables.partial import PartialState, VersionSegment
from model_monitoring.tables.psi import FeatureVerdicts
from model_monitoring.tables.run_evaluation import evaluate_key, want_verdicts, window_parts
from model_monitoring.tables.run_messages import EVALUATE_BATCH


@dataclass
class PureRun:
    seconds: float                      # CPU seconds of the whole evaluation
    stages: dict[str, float] = field(default_factory=dict)  # CPU seconds per stage
    keys: int = 0
    counts: dict[str, int] = field(default_factory=dict)    # summed over keys, as the completion's
    events: int = 0
    event_bytes: int = 0


def pure_run(partials: Mapping[bytes, bytes], baselines: Mapping[bytes, bytes], s: Settings,
             window_start_ms: int, window_end_ms: int, job_run_id: str = "pure") -> PureRun:
    """Evaluate every key of the window from `partials` (the partials table: key -> stored bytes)
    and `baselines` (the baselines table), timing each stage in CPU seconds."""
    by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    for key, value in partials.items():
        by_partition[partition_of(key)].append((key, value))
    baseline_for = BaselineCache(dict(baselines)).once()
    thresholds, policy = s.thresholds(), s.incident_policy()
    detected_at = format_timestamp(window_end_ms)
    stages = dict.fromkeys(("window_parts", "merge", "feature_checks", "evaluate", "encode"), 0.0)
    gc.collect()
    started = time.process_time()

    clock = time.process_time()
    shares: dict[str, list[dict[VersionSegment, PartialState]]] = defaultdict(list)
    for partition in sorted(by_partition):
        for model_key, part in window_parts(by_partition[partition], partition, window_start_ms,
                                            window_end_ms, s.bucket_ms, None).items():
            shares[model_key].append(part)
    stages["window_parts"] = time.process_time() - clock

    result = PureRun(0.0, stages, keys=len(shares))
    totals: dict[str, int] = defaultdict(int)
    keys = sorted(shares)
    for at in range(0, len(keys), EVALUATE_BATCH):
        batch = keys[at:at + EVALUATE_BATCH]
        clock = time.process_time()
        merged = {model_key: merge_segments(shares.pop(model_key)) for model_key in batch}
        stages["merge"] += time.process_time() - clock

        clock = time.process_time()
        verdicts = FeatureVerdicts(thresholds)
        for model_key in batch:
            want_verdicts(model_key, merged[model_key], baseline_for, verdicts)
        verdicts.compute()
        stages["feature_checks"] += time.process_time() - clock

        for model_key in batch:
            clock = time.process_time()
            report = evaluate_key(model_key, merged.pop(model_key), baseline_for=baseline_for,
                                  thresholds=thresholds, job_run_id=job_run_id,
                                  window_start_ms=window_start_ms, window_end_ms=window_end_ms,
                                  detected_at=detected_at, policy=policy, verdicts=verdicts)
            stages["evaluate"] += time.process_time() - clock
            clock = time.process_time()
            encoded = [orjson.dumps(doc) for _, doc in report.events]
            stages["encode"] += time.process_time() - clock
            result.events += len(encoded)
            result.event_bytes += sum(map(len, encoded))
            for name, n in report.counts.items():
                totals[name] += n
    result.seconds = time.process_time() - started
    result.counts = dict(totals)
    return result

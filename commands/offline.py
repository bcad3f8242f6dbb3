"""The offline commands ``baseline build`` and ``check``: the stream's statistics on files.

Bad input ends with one line ``error: FILE:LINE: message`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from typing import cast

import orjson

from model_monitoring.commands.offline_render import render_table
from model_monitoring.schemas.timestamps import format_timestamp, parse_timestamp_ms
from model_monitoring.tables.baseline import Baseline, BaselineError
from model_monitoring.tables.baseline_build import build_baseline, sparse_bins
from model_monitoring.tables.error_sums import PerformanceSums
from model_monitoring.tables.evaluation import evaluate_snapshot
from model_monitoring.tables.fdr import with_q_values
from model_monitoring.tables.histogram import count_batch
from model_monitoring.tables.record_state import Scored, view_state
from model_monitoring.tables.records import InputError, Line, read_inference_records, read_outcomes
from model_monitoring.tables.thresholds import Thresholds

EXIT_BAD_INPUT = 2


def add_offline_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``baseline build`` and ``check`` on a subparsers object (each sets ``func``)."""
    baseline = subparsers.add_parser("baseline", help="baselines of model versions")
    actions = baseline.add_subparsers(dest="baseline_command", required=True)
    build = actions.add_parser("build", help="build a baseline (ml.model.baselines) from a reference sample")
    build.add_argument("--reference", required=True, help="JSON Lines of inference records (+ 'outcome'), or CSV")
    build.add_argument("--model", required=True, help="modelId")
    build.add_argument("--version", required=True, help="modelVersion")
    build.add_argument("--tenant", help="tenantId (default: every tenant, '*')")
    build.add_argument("--task", choices=("classification", "regression"), default="classification")
    build.add_argument("--bins", type=int, default=10, help="quantile bins per numeric feature (default 10)")
    build.add_argument("--max-categories", type=int, default=50, help="categories kept per categorical feature")
    build.add_argument("--outcomes", help="JSON Lines of outcome records joined by predictionId")
    build.add_argument("--output", help="write the baseline here (default: stdout)")
    build.set_defaults(func=cmd_baseline_build)

    publish = actions.add_parser("publish", help="register a baseline: publish it to ml.model.baselines")
    publish.add_argument("file", help="a baseline object (JSON), e.g. the output of `baseline build`")
    publish.add_argument("--bootstrap", help="Kafka bootstrap servers (or KAFKA_BOOTSTRAP_SERVERS)")
    publish.set_defaults(func=_publish)

    check = subparsers.add_parser("check", help="evaluate a current sample against a baseline, print the snapshot")
    check.add_argument("--baseline", required=True, help="a baseline object (JSON)")
    check.add_argument("--current", required=True, help="JSON Lines of inference records, or CSV")
    check.add_argument("--outcomes", help="JSON Lines (or CSV) of outcome records joined by predictionId")
    check.add_argument("--format", choices=("json", "table"), default="json")
    check.add_argument("--tenant", help="only the records of this tenant")
    check.add_argument("--segment", help="only the records of this segment (default: all records)")
    check.add_argument("--job-run-id", default="offline", help="jobRunId of the snapshot (default 'offline')")
    defaults = Thresholds()
    check.add_argument("--psi-warning", type=float, default=defaults.psi_warning)
    check.add_argument("--psi-critical", type=float, default=defaults.psi_critical)
    check.add_argument("--min-samples", type=int, default=defaults.min_samples)
    check.add_argument("--min-outcomes", type=int, default=defaults.min_outcomes)
    check.add_argument("--tolerance", type=float, default=defaults.tolerance)
    check.add_argument("--confidence", type=float, default=defaults.confidence)
    check.add_argument("--performance-window", choices=("outcome", "prediction"), default="outcome",
                       help="the view `performance` holds: outcomes that arrived in the window (default) "
                            "or the window's predictions labelled so far")
    check.add_argument("--window-end", dest="window_end", default=None,
                       help="end of the window (default: just after the last prediction); predictions "
                            "before the window start count for label health only")
    check.add_argument("--window-start", dest="window_start", default=None,
                       help="start of the window (default: the first prediction)")
    check.add_argument("--fdr-q", type=float, default=defaults.fdr_q,
                       help="Benjamini-Hochberg level over the snapshot's drift checks, and apart its "
                            f"performance checks (default {defaults.fdr_q}; 0 turns it off)")
    check.set_defaults(func=cmd_check)


def _publish(args: argparse.Namespace) -> int:
    from model_monitoring.commands.cli import cmd_baseline_publish  # needs Kafka; the offline commands do not

    return cmd_baseline_publish(args)


def cmd_baseline_build(args: argparse.Namespace) -> int:
    try:
        lines = read_inference_records(args.reference, task=args.task)
        outcomes = _outcome_map(read_outcomes(args.outcomes, task=args.task)) if args.outcomes else {}
        for number, record in lines:
            _check_model(args.reference, number, record, args.model, args.version, args.tenant)
        if args.bins < 1 or args.max_categories < 0:
            raise InputError(args.reference, None, "--bins must be >= 1 and --max-categories >= 0")
        if not lines:
            raise InputError(args.reference, None, "no records")
        baseline = build_baseline(
            [record for _, record in lines], model_id=args.model, model_version=args.version,
            tenant_id=args.tenant, task=args.task, n_bins=args.bins, max_categories=args.max_categories,
            outcomes={pid: float(cast(float, o["outcome"])) for pid, o in outcomes.items()},
        )
    except InputError as exc:
        return _fail(exc)
    except ValueError as exc:  # what the readers let through and the builder still refuses
        return _fail(InputError(args.reference, None, str(exc)))
    document = orjson.dumps(baseline.to_dict(), option=orjson.OPT_INDENT_2) + b"\n"
    if args.output:
        try:
            with open(args.output, "wb") as out:
                out.write(document)
        except OSError as exc:
            return _fail(InputError(args.output, None, f"cannot write: {exc.strerror or exc}"))
    else:
        sys.stdout.buffer.write(document)
    print(f"baseline {baseline.key()}: {len(baseline.features)} features, {baseline.sample_size} records, "
          f"brier {baseline.brier}, mae {baseline.mae}", file=sys.stderr)
    for sparse in sparse_bins(baseline):
        print(f"warning: {sparse.warning(baseline.sample_size)}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    try:
        thresholds = Thresholds(args.psi_warning, args.psi_critical, args.min_samples, args.min_outcomes,
                                args.tolerance, args.confidence, fdr_q=args.fdr_q,
                                performance_window=args.performance_window)
        args.window_end_ms = parse_timestamp_ms(args.window_end) if args.window_end else None
        args.window_start_ms = parse_timestamp_ms(args.window_start) if args.window_start else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        baseline = load_baseline(args.baseline)
        lines = read_inference_records(args.current, task=baseline.task)
        outcomes = _outcome_map(read_outcomes(args.outcomes, task=baseline.task)) if args.outcomes else {}
        records = _select(args, baseline, lines)
    except InputError as exc:
        return _fail(exc)
    tenant = args.tenant or baseline.tenant_id or _only_tenant(records) or "*"
    # The stream's family for false-discovery control is every view of the version: all events
    # and each segment. The same views are evaluated here, and the one asked for is printed.
    views: list[str | None] = [None, *sorted({cast(str, r["segment"]) for r in records if r.get("segment")})]
    if args.segment is not None and args.segment not in views:
        views.append(args.segment)
    snapshots, joined = [], 0
    for view in views:
        in_view = [r for r in records if view is None or r.get("segment") == view]
        snapshot, joined_here = _view_snapshot(args, baseline, thresholds, tenant, view, in_view, outcomes)
        snapshots.append(snapshot)
        joined = joined_here if view == args.segment else joined
    snapshot = with_q_values(snapshots, thresholds)[views.index(args.segment)]
    if args.format == "table":
        sys.stdout.write(render_table(snapshot))
    else:
        sys.stdout.buffer.write(orjson.dumps(snapshot, option=orjson.OPT_INDENT_2) + b"\n")
    unmatched = len(outcomes) - joined
    if unmatched:
        print(f"note: {unmatched} outcomes matched no selected prediction", file=sys.stderr)
    return 0


def _view_snapshot(args: argparse.Namespace, baseline: Baseline, thresholds: Thresholds, tenant: str,
                   segment: str | None, records: Sequence[Mapping[str, object]],
                   outcomes: Mapping[str, Mapping[str, object]]) -> tuple[dict[str, object], int]:
    """The snapshot of one view's records, before false-discovery control, and how many of
    its outcomes came from the outcomes file."""
    joined = 0
    stamps = [parse_timestamp_ms(cast(str, r["timestamp"])) for r in records if r.get("timestamp") is not None]
    start_ms = args.window_start_ms if args.window_start_ms is not None else (min(stamps) if stamps else 0)
    end_ms = args.window_end_ms if args.window_end_ms is not None else (max(stamps) + 1 if stamps else 1)
    scored: list[Scored] = []
    for record in records:
        ts = parse_timestamp_ms(cast(str, record["timestamp"])) if record.get("timestamp") is not None else end_ms - 1
        outcome, outcome_ms = _joined_outcome(record, outcomes), None
        if outcome is not None:
            joined += record.get("outcome") is None
            found = outcomes.get(cast(str, record.get("predictionId")))
            stamp = found.get("timestamp") if found is not None and record.get("outcome") is None else None
            outcome_ms = parse_timestamp_ms(cast(str, stamp)) if stamp is not None else ts
        scored.append(Scored(ts, float(cast(float, record["prediction"])),
                             cast(Mapping[str, object], record["features"]), outcome, outcome_ms))
    in_window = [r for r in scored if start_ms <= r.timestamp_ms < end_ms]
    features = [cast(Mapping[str, object], r["features"]) for r in records]
    snapshot = evaluate_snapshot(
        baseline=baseline,
        histogram=count_batch(baseline, [r.features for r in in_window]),
        performance=PerformanceSums.empty(),
        thresholds=thresholds,
        tenant_id=tenant,
        model_id=baseline.model_id,
        model_version=baseline.model_version,
        segment=segment,
        window_start=format_timestamp(start_ms) if stamps or args.window_start_ms is not None else None,
        window_end=format_timestamp(end_ms) if stamps or args.window_end_ms is not None else None,
        job_run_id=args.job_run_id,
        feature_names=sorted({name for f in features for name in f}),
        state=view_state(baseline, in_window, window_start_ms=start_ms, window_end_ms=end_ms, cohorts=scored),
        window_end_ms=end_ms,
    )
    return snapshot, joined


def load_baseline(path: str) -> Baseline:
    """Read and validate a baseline file; InputError names the line of the offending field."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(path, exc.lineno, f"invalid JSON: {exc.msg}") from None
    try:
        return Baseline.from_dict(document)
    except BaselineError as exc:
        text = raw.decode("utf-8", errors="replace")
        raise InputError(path, _line_of(text, exc.path), f"baseline off contract: {exc}") from None


def _line_of(text: str, path: Sequence[str]) -> int:
    """Best-effort line of a field: find each key of ``path`` in turn (list indices are skipped)."""
    position, line_start = 0, 0
    for key in path:
        if key.isdigit():
            continue
        match = re.compile(re.escape(orjson.dumps(key).decode()) + r"\s*:").search(text, position)
        if match is None:
            break
        position = line_start = match.start()
    non_blank = len(text) - len(text.lstrip())
    return text.count("\n", 0, max(line_start, non_blank)) + 1


def _select(args: argparse.Namespace, baseline: Baseline, lines: Sequence[Line]) -> list[dict[str, object]]:
    """The records to check: the baseline's model version, the chosen tenant, and the first
    record of each predictionId (as the stream counts them); every segment (the views are chosen
    by the caller)."""
    seen: set[object] = set()
    records = []
    for number, record in lines:
        _check_model(args.current, number, record, baseline.model_id, baseline.model_version, baseline.tenant_id)
        if args.tenant and record.get("tenantId") not in (None, args.tenant):
            continue
        prediction_id = record.get("predictionId")
        if prediction_id is not None:
            if prediction_id in seen:
                continue
            seen.add(prediction_id)
        records.append(record)
    tenants = {r["tenantId"] for r in records if r.get("tenantId") is not None}
    if len(tenants) > 1 and not (args.tenant or baseline.tenant_id):
        names = ", ".join(sorted(map(str, tenants))[:5])
        raise InputError(args.current, None, f"records of {len(tenants)} tenants ({names}); choose one with --tenant")
    return records


def _check_model(
    path: str, number: int, record: Mapping[str, object], model: str, version: str, tenant: str | None
) -> None:
    for key, expected in (("modelId", model), ("modelVersion", version), ("tenantId", tenant)):
        value = record.get(key)
        if expected is not None and value is not None and value != expected:
            raise InputError(path, number, f"{key} is {value!r}, but the baseline is for {expected!r}")


def _only_tenant(records: Sequence[dict[str, object]]) -> str | None:
    tenants = {r["tenantId"] for r in records if r.get("tenantId") is not None}
    return str(next(iter(tenants))) if len(tenants) == 1 else None


def _outcome_map(lines: Sequence[Line]) -> dict[str, dict[str, object]]:
    """predictionId -> its outcome record; the first outcome of an id counts, as in the stream."""
    outcomes: dict[str, dict[str, object]] = {}
    for _, record in lines:
        outcomes.setdefault(str(record["predictionId"]), record)
    return outcomes


def _joined_outcome(record: Mapping[str, object], outcomes: Mapping[str, Mapping[str, object]]) -> float | None:
    """The record's own ``outcome``, else the outcome record of its predictionId when it names
    the same tenant and model (a field absent on either side does not disagree)."""
    if record.get("outcome") is not None:
        return float(cast(float, record["outcome"]))
    found = outcomes.get(cast(str, record.get("predictionId")))
    if found is None:
        return None
    for key in ("tenantId", "modelId"):
        if None not in (found.get(key), record.get(key)) and found.get(key) != record.get(key):
            return None
    return float(cast(float, found["outcome"]))


def _fail(exc: InputError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_BAD_INPUT


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m model_monitoring.commands.offline baseline build …`` / ``check …`` (the same as the console script)."""
    parser = argparse.ArgumentParser(prog="model-monitoring")
    add_offline_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

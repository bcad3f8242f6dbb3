"""The offline commands end to end (subprocess), their error contract, and the snapshot object."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from model_monitoring.commands.offline import main
from model_monitoring.commands.offline_render import render_table
from model_monitoring.schemas.timestamps import parse_timestamp_ms
from model_monitoring.schemas.validation import Validators
from model_monitoring.tables.baseline import Baseline
from model_monitoring.tables.baseline_build import build_baseline
from model_monitoring.tables.error_sums import PerformanceSums
from model_monitoring.tables.evaluation import evaluate_snapshot
from model_monitoring.tables.histogram import FeatureHistogram, count_batch
from model_monitoring.tables.partial import PartialState
from model_monitoring.tables.record_state import Scored, view_state
from model_monitoring.tables.records import read_inference_records
from model_monitoring.tables.run_evaluation import evaluate_key
from model_monitoring.tables.thresholds import Thresholds

ROOT = Path(__file__).resolve().parents[2]
VALIDATORS = Validators()


def records(n: int, seed: int, shift: float = 0.0, prefix: str = "p") -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = float(rng.random())
        out.append({
            "predictionId": f"{prefix}-{i}", "tenantId": "tenant-1", "modelId": "risk-scoring", "modelVersion": "3",
            "timestamp": f"2026-11-{20 + i % 7:02d}T10:00:00Z", "prediction": p, "segment": "emea" if i % 3 else "apac",
            "features": {"amount": float(rng.normal(100 + 30 * shift, 30)), "age_days": int(rng.poisson(30)),
                         "industry": str(rng.choice(["retail", "tech", "crypto" if shift else "finance"]))},
        })
        out[-1]["_y"] = int(rng.random() < (p if not shift else 1 - p))
    return out


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("offline")
    reference = [{**{k: v for k, v in r.items() if k != "_y"}, "outcome": r["_y"]} for r in records(2_000, 1, prefix="r")]
    current = records(1_500, 2, shift=1.0, prefix="c")
    outcomes = [{"predictionId": r["predictionId"], "tenantId": "tenant-1", "modelId": "risk-scoring",
                 "outcome": r["_y"], "timestamp": "2026-12-01T09:00:00Z"} for r in current]
    return {
        "reference": write_jsonl(d / "reference.jsonl", reference),
        "current": write_jsonl(d / "current.jsonl", [{k: v for k, v in r.items() if k != "_y"} for r in current]),
        "outcomes": write_jsonl(d / "outcomes.jsonl", outcomes),
        "dir": d,
    }


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "model_monitoring.commands.offline", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def built(files: dict[str, Path]) -> Path:
    out = files["dir"] / "baseline.json"
    result = run("baseline", "build", "--reference", str(files["reference"]), "--model", "risk-scoring",
                 "--version", "3", "--output", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_baseline_build_writes_the_contract_baseline_of_the_reference(files: dict[str, Path], built: Path) -> None:
    document = orjson.loads(built.read_bytes())
    VALIDATORS.validate("baselines", document)
    lines = read_inference_records(str(files["reference"]), task="classification")
    expected = build_baseline([r for _, r in lines], model_id="risk-scoring", model_version="3", tenant_id=None,
                              task="classification")
    assert Baseline.from_dict(document) == expected
    assert document["sampleSize"] == 2_000 and expected.brier is not None
    assert {k: document["performance"][k] for k in ("brier", "mae")} == {"brier": expected.brier, "mae": expected.mae}
    assert document["performance"]["ece"] == expected.ece and len(document["performance"]["calibration"]) == 10
    assert document["prediction"]["kind"] == "numeric"


def test_check_prints_the_snapshot_the_stream_would_compute(files: dict[str, Path], built: Path) -> None:
    """The same records through the weekly run's own evaluation (`evaluate_key`): every view of the
    version (all events, emea, apac) evaluated, false-discovery control over all of them, and the
    view asked for printed."""
    baseline = Baseline.from_dict(orjson.loads(built.read_bytes()))
    current = [r for _, r in read_inference_records(str(files["current"]))]
    y = {o["predictionId"]: o["outcome"] for o in map(orjson.loads, files["outcomes"].read_bytes().splitlines())}

    window = (parse_timestamp_ms("2026-11-20T10:00:00.000Z"), parse_timestamp_ms("2026-11-26T10:00:00.001Z"))
    labelled_at = parse_timestamp_ms("2026-12-01T09:00:00Z")  # after the window: the outcome view is empty

    def state(rows: list[dict[str, Any]]) -> PartialState:
        scored = [Scored(parse_timestamp_ms(r["timestamp"]), r["prediction"], r["features"], y[r["predictionId"]],
                         labelled_at) for r in rows]
        return view_state(baseline, scored, window_start_ms=window[0], window_end_ms=window[1])

    views = {("3", s): state([r for r in current if s is None or r["segment"] == s]) for s in (None, "emea", "apac")}
    stream = evaluate_key("tenant-1:risk-scoring", views, baseline_for=lambda t, m, v: baseline,
                          thresholds=Thresholds(performance_window="prediction"),
                          job_run_id="offline", window_start_ms=window[0], window_end_ms=window[1],
                          detected_at="2026-11-29T06:00:00.000Z").of_kind("snapshot")
    result = run("check", "--baseline", str(built), "--current", str(files["current"]),
                 "--outcomes", str(files["outcomes"]), "--performance-window", "prediction")
    assert result.returncode == 0, result.stderr
    snapshot = orjson.loads(result.stdout)
    VALIDATORS.validate("snapshot", snapshot)
    assert snapshot == orjson.loads(orjson.dumps(stream[0]))  # exact, unrounded values
    assert all(check["qValue"] is not None for check in snapshot["features"].values())
    assert snapshot["features"]["amount"]["status"] == "drift"
    assert snapshot["features"]["industry"]["severity"] == "critical"
    assert snapshot["features"]["age_days"]["status"] == "ok"
    assert snapshot["performance"]["brier"]["status"] == "degraded"
    assert snapshot["performance"]["mae"]["sampleSize"] == 1_500
    assert snapshot["windowBasis"] == "prediction" and snapshot["performanceViews"]["outcome"]["brier"]["sampleSize"] == 0
    emea = orjson.loads(run("check", "--baseline", str(built), "--current", str(files["current"]),
                            "--outcomes", str(files["outcomes"]), "--segment", "emea",
                            "--performance-window", "prediction").stdout)
    mine = next(s for s in stream if s["segment"] == "emea")
    assert {k: v for k, v in emea.items() if not k.startswith("window")} == \
           {k: v for k, v in orjson.loads(orjson.dumps(mine)).items() if not k.startswith("window")}


def test_check_table_is_readable(files: dict[str, Path], built: Path) -> None:
    result = run("check", "--baseline", str(built), "--current", str(files["current"]),
                 "--outcomes", str(files["outcomes"]), "--format", "table", "--performance-window", "prediction")
    assert result.returncode == 0, result.stderr
    as_json = run("check", "--baseline", str(built), "--current", str(files["current"]),
                  "--outcomes", str(files["outcomes"]), "--performance-window", "prediction")
    snapshot = orjson.loads(as_json.stdout)
    assert result.stdout == render_table(snapshot)
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("feature")).split()
    assert header == ["feature", "status", "severity", "PSI", "lower", "gate", "q", "sample", "mismatch", "top",
                      "bin"]
    amount, verdict = next(line for line in lines if line.startswith("amount ")).split(), snapshot["features"]["amount"]
    assert amount[:8] == ["amount", "drift", verdict["severity"], f"{verdict['value']:.6f}",
                          f"{verdict['psiLower']:.6f}", f"{verdict['gate']:.6f}", f"{verdict['qValue']:.2g}", "1500"]
    brier = next(line for line in lines if line.startswith("brier ")).split()
    assert brier[:3] == ["brier", "degraded", f"{snapshot['performance']['brier']['value']:.6f}"]


def test_check_fdr_q_option(files: dict[str, Path], built: Path) -> None:
    """`--fdr-q 0` leaves every check's own verdict and still reports q-values; an out-of-range
    level is refused like any other bad threshold."""
    common = ["check", "--baseline", str(built), "--current", str(files["current"]), "--outcomes", str(files["outcomes"])]
    default, off = orjson.loads(run(*common).stdout), orjson.loads(run(*common, "--fdr-q", "0").stdout)
    for name, check in off["features"].items():
        assert check["qValue"] == default["features"][name]["qValue"]
        if check["pValue"] is not None and check["psiLower"] >= 0.1:
            assert check["status"] == "drift"
    refused = run(*common, "--fdr-q", "1")
    assert refused.returncode == 2 and "fdr_q" in refused.stderr


def test_a_malformed_line_ends_with_one_error_line_and_exit_2(files: dict[str, Path], built: Path) -> None:
    bad = files["dir"] / "bad.jsonl"
    good = files["current"].read_bytes().splitlines()
    bad.write_bytes(b"\n".join([good[0], good[1], b'{"predictionId": "x", "features": {', good[2]]) + b"\n")
    result = run("check", "--baseline", str(built), "--current", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {bad}:3: invalid JSON")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_an_off_contract_baseline_names_its_file_and_line(files: dict[str, Path], built: Path) -> None:
    document = orjson.loads(built.read_bytes())
    document["features"]["amount"]["edges"][3] = document["features"]["amount"]["edges"][2]
    text = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
    broken = files["dir"] / "broken-baseline.json"
    broken.write_text(text)
    line = text.splitlines().index('  "features": {') + 1
    line = next(i for i, s in enumerate(text.splitlines(), 1) if i > line and '"amount"' in s)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if i > line and '"edges"' in s)
    result = run("check", "--baseline", str(broken), "--current", str(files["current"]))
    assert result.returncode == 2
    assert result.stderr == f"error: {broken}:{line}: baseline off contract: features.amount.edges: must be strictly increasing\n"


def errors_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and captured.err.startswith("error: ")
    return captured.err


def test_input_errors_name_file_and_line(files: dict[str, Path], built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d, cur = files["dir"], str(files["current"])
    assert f"error: {d / 'nope.jsonl'}: cannot read" in errors_of(capsys, "check", "--baseline", str(built), "--current", str(d / "nope.jsonl"))
    lines = files["current"].read_bytes().splitlines()
    other_model = write_jsonl(d / "other.jsonl", [orjson.loads(lines[0]), {**orjson.loads(lines[1]), "modelVersion": "4"}])
    assert errors_of(capsys, "check", "--baseline", str(built), "--current", str(other_model)).startswith(
        f"error: {other_model}:2: modelVersion is '4', but the baseline is for '3'")
    bad_outcome = write_jsonl(d / "bad-outcomes.jsonl", [{"predictionId": "c-1", "outcome": 2}])
    assert errors_of(capsys, "check", "--baseline", str(built), "--current", cur, "--outcomes", str(bad_outcome)).startswith(
        f"error: {bad_outcome}:1: outcome: must be 0 or 1 for classification")
    bad_value = write_jsonl(d / "bad-value.jsonl", [{"prediction": 0.5, "features": {"amount": [1, 2]}}])
    assert errors_of(capsys, "check", "--baseline", str(built), "--current", str(bad_value)).startswith(
        f"error: {bad_value}:1: features.amount: must be a number, a string, a boolean or null")
    envelope = write_jsonl(d / "envelope.jsonl", [{"records": [orjson.loads(lines[0]), {"features": {}}]}])
    assert errors_of(capsys, "check", "--baseline", str(built), "--current", str(envelope)).startswith(
        f"error: {envelope}:1: records[1]: prediction: required")
    not_json = d / "baseline.txt"
    not_json.write_text('{\n  "modelId": \n}')
    assert errors_of(capsys, "check", "--baseline", str(not_json), "--current", cur).startswith(f"error: {not_json}:3: invalid JSON")
    two_tenants = write_jsonl(d / "tenants.jsonl", [orjson.loads(lines[0]), {**orjson.loads(lines[1]), "tenantId": "tenant-2"}])
    assert "choose one with --tenant" in errors_of(capsys, "check", "--baseline", str(built), "--current", str(two_tenants))


def test_csv_reference_and_envelopes_give_the_same_baseline_as_json_lines(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    d = files["dir"]
    rows = [orjson.loads(line) for line in files["reference"].read_bytes().splitlines()[:300]]
    header = "predictionId,tenantId,modelId,modelVersion,timestamp,prediction,outcome,amount,age_days,industry\n"
    csv_path = d / "reference.csv"
    csv_path.write_text(header + "".join(
        f"{r['predictionId']},{r['tenantId']},{r['modelId']},{r['modelVersion']},{r['timestamp']},{r['prediction']!r},"
        f"{r['outcome']},{r['features']['amount']!r},{r['features']['age_days']},{r['features']['industry']}\n" for r in rows))
    enveloped = write_jsonl(d / "enveloped.jsonl", [{"records": rows[:100]}, {"records": rows[100:]}])
    outputs = []
    for path in (csv_path, enveloped, write_jsonl(d / "plain.jsonl", rows)):
        assert main(["baseline", "build", "--reference", str(path), "--model", "risk-scoring", "--version", "3"]) == 0
        outputs.append(orjson.loads(capsys.readouterr().out))
    assert outputs[0] == outputs[1] == outputs[2]
    broken_csv = d / "broken.csv"
    broken_csv.write_text(header + "p-1,t,risk-scoring,3,2026-11-20T10:00:00Z,high,1,1.0,2,retail\n")
    assert errors_of(capsys, "baseline", "build", "--reference", str(broken_csv), "--model", "risk-scoring",
                     "--version", "3").startswith(f"error: {broken_csv}:2: prediction: required")


def test_segment_and_duplicate_predictions_are_counted_as_the_stream_counts_them(
    files: dict[str, Path], built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = files["current"].read_bytes().splitlines()
    duplicated = write_jsonl(files["dir"] / "dup.jsonl", [orjson.loads(x) for x in lines + lines[:10]])
    assert main(["check", "--baseline", str(built), "--current", str(duplicated)]) == 0
    assert orjson.loads(capsys.readouterr().out)["sampleSize"] == 1_500  # first record of a predictionId counts
    assert main(["check", "--baseline", str(built), "--current", str(duplicated), "--segment", "apac"]) == 0
    snapshot = orjson.loads(capsys.readouterr().out)
    assert (snapshot["segment"], snapshot["sampleSize"]) == ("apac", 500)
    assert snapshot["performance"]["brier"]["sampleSize"] == 0  # no outcomes given
    assert snapshot["performance"]["brier"]["status"] == "insufficient_data"


def test_snapshot_without_a_baseline_reports_no_baseline() -> None:
    histogram = FeatureHistogram({"amount": (), "industry": ()}, {}, 42, "")
    snapshot = evaluate_snapshot(
        baseline=None, histogram=histogram, performance=PerformanceSums.empty().update_many([0.2], [1.0]),
        thresholds=Thresholds(), tenant_id="t", model_id="m", model_version="1", segment=None,
        window_start="2026-11-20T00:00:00.000Z", window_end="2026-11-27T00:00:00.000Z", job_run_id="run-1",
        feature_names=list(histogram.counts),
    )
    VALIDATORS.validate("snapshot", snapshot)
    assert {f["status"] for f in snapshot["features"].values()} == {"no_baseline"}  # type: ignore[attr-defined]
    assert snapshot["features"]["amount"]["value"] is None  # type: ignore[index]
    assert snapshot["performance"] == {} and snapshot["sampleSize"] == 42


def test_snapshot_of_a_regression_reports_mae_only_and_refuses_foreign_bins() -> None:
    rows = [{"prediction": float(v), "outcome": float(v) + 1.0, "features": {"x": float(v)}} for v in range(200)]
    baseline = build_baseline(rows, model_id="m", model_version="1", tenant_id=None, task="regression")
    common: dict[str, Any] = dict(thresholds=Thresholds(), tenant_id="t", model_id="m", model_version="1", segment="s",
                                  window_start=None, window_end=None, job_run_id="run-1")
    histogram = count_batch(baseline, [r["features"] for r in rows] + [{"x": "oops"}, {"y": 1}])
    performance = PerformanceSums.empty().update_many([r["prediction"] for r in rows], [r["outcome"] for r in rows])
    snapshot = evaluate_snapshot(baseline=baseline, histogram=histogram, performance=performance,
                                 feature_names=["x", "y"], **common)
    assert list(snapshot["performance"]) == ["mae"]  # type: ignore[arg-type]
    assert snapshot["performance"]["mae"]["status"] == "ok" and snapshot["performance"]["mae"]["value"] == 1.0  # type: ignore[index]
    assert snapshot["features"]["x"]["typeMismatch"] == 1 and snapshot["features"]["x"]["sampleSize"] == 202  # type: ignore[index]
    assert snapshot["features"]["y"]["status"] == "no_baseline"  # type: ignore[index]
    with pytest.raises(ValueError):
        evaluate_snapshot(baseline=baseline, histogram=FeatureHistogram.empty("0" * 16), performance=performance, **common)


def test_baseline_build_warns_about_a_many_valued_feature_with_sparse_bins(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A 200-valued feature in 2,000 reference records: most listed values hold a few events, and
    the build says so on stderr, naming the feature and what makes it dense; the category cap it
    proposes silences it. The baseline itself is written either way."""
    rng = np.random.default_rng(3)
    weights = 1.0 / np.arange(1, 201) ** 1.1
    rows = [{**{k: v for k, v in r.items() if k != "_y"},
             "features": {**r["features"], "city": f"c{int(rng.choice(200, p=weights / weights.sum())):03d}"}}
            for r in records(2_000, 1, prefix="r")]
    path = write_jsonl(files["dir"] / "many_valued.jsonl", rows)
    argv = ["baseline", "build", "--reference", str(path), "--model", "risk-scoring", "--version", "3"]
    assert main([*argv, "--max-categories", "200"]) == 0
    captured = capsys.readouterr()
    assert orjson.loads(captured.out)["features"]["city"]["kind"] == "categorical"
    (warning,) = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert warning.startswith("warning: feature 'city': ") and "of its 200 bins" not in warning
    assert main(argv) == 0  # the default cap of 50 categories still lists values with a few events
    (capped,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert "of its 50 bins" in capped
    cap = capped.rsplit("--max-categories ", 1)[1].rstrip(".")
    assert main([*argv, "--max-categories", cap]) == 0
    assert "warning" not in capsys.readouterr().err

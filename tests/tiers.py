"""The suite's two tiers, run at the same time: `python -m tests.tiers [pytest arguments]`.

- `tansu`: every test (unit, agent, integration) on the bundled Tansu broker;
- `kafka`: the integration tests again on Apache Kafka (`MM_TEST_BROKER=kafka`; skipped with the
  reason where Java or Maven is missing, a failure under `CI`).

Each is one `pytest -n 3` (tests/support/scheduling.py spreads its tests over the processes).
The integration tests spend much of their time waiting (group timeouts, restarts, broker kills),
so the two tiers side by side take about the time of the longer one instead of the sum, and a
third process per tier fills the waits until the machine is full. Measured on this 2-core
machine (2026-11-29, both tiers at once, Tansu / Kafka processes): 2/2, 410 s and 429 s (164% CPU,
before test_any_partitioner's case was made smaller);
2/3, 407 s and 346 s (174%); 3/2, 311 s and 428 s (160%); 3/3, 386 s and 390 s (187%).

Each line a tier prints is shown as it comes, behind the tier's name. Arguments given here go to
both tiers. The exit status is 0 only when both tiers passed; a tier that ran no test (pytest's
exit 5) fails. Ctrl-C or SIGTERM stops both, each through its own fixtures' teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

NO_TESTS = 5  # pytest's exit status when it collected nothing


@dataclass(frozen=True)
class Tier:
    name: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


TIERS = (
    Tier("tansu", ("-n", "3")),
    Tier("kafka", ("-n", "3", "-m", "integration"), {"MM_TEST_BROKER": "kafka"}),
)


def verdict(status: int) -> str:
    if status == 0:
        return "passed"
    if status == NO_TESTS:
        return "FAILED: no test ran (pytest exit 5)"
    return f"FAILED (pytest exit {status})"


def relay(tier: Tier, width: int, proc: subprocess.Popen[bytes], lock: threading.Lock, started: float,
          ended: dict[str, tuple[int, float]]) -> None:
    """Every line of a tier's output, behind its name, as it comes; then its exit and time."""
    assert proc.stdout is not None
    for raw in iter(proc.stdout.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        with lock:
            print(f"{tier.name:<{width}} | {line}", flush=True)
    ended[tier.name] = (proc.wait(), time.monotonic() - started)


def run(tiers: Sequence[Tier], extra: Sequence[str]) -> int:
    lock = threading.Lock()
    started = time.monotonic()
    ended: dict[str, tuple[int, float]] = {}
    procs: list[subprocess.Popen[bytes]] = []
    threads = []
    width = max(len(t.name) for t in tiers)

    def stop(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # pytest's own interrupt: fixtures tear down

    # installed before the first tier starts, so no interrupt leaves a tier running unattended
    main = threading.current_thread() is threading.main_thread()  # only there can it take signals
    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        for tier in tiers:
            env = "".join(f"{k}={v} " for k, v in tier.env.items())
            print(f"{tier.name}: {env}python -m pytest {' '.join([*tier.args, *extra])}", flush=True)
            proc = subprocess.Popen([sys.executable, "-m", "pytest", *tier.args, *extra],
                                    env={**os.environ, **tier.env}, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            procs.append(proc)
            threads.append(threading.Thread(target=relay, args=(tier, width, proc, lock, started, ended)))
            threads[-1].start()
        for thread in threads:
            thread.join()
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    print(flush=True)
    for tier in tiers:
        status, seconds = ended[tier.name]
        print(f"{tier.name}: {verdict(status)} in {seconds:.0f} s", flush=True)
    return 0 if all(status == 0 for status, _ in ended.values()) else 1


if __name__ == "__main__":
    sys.exit(run(TIERS, sys.argv[1:]))

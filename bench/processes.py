"""A live process seen from /proc (peak and current memory, CPU seconds) and, for a stuck
one, its Python stacks (py-spy): what the benchmarks measure workers and the broker with."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


def proc_status(pid: int) -> tuple[float, float]:
    """(peak RSS MB, CPU seconds) of a live process."""
    hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return hwm, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds all the machine's cores have been busy since boot (/proc/stat: user, nice,
    system, irq, softirq, steal): over an interval, busy seconds / wall seconds is the number of
    cores in use — 2.0 on this 2-core machine means nothing more could run."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def py_spy_dump(pid: int) -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        return "(py-spy not installed: .venv/bin/pip install py-spy)"
    try:
        return subprocess.run([exe, "dump", "--pid", str(pid)], capture_output=True, text=True,
                              timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"(py-spy failed: {exc})"


class PySpyRecord:
    """`py-spy record` of one process while a `with` block runs: a flame graph (SVG) or, for a
    `.txt` path, the folded stacks (one line per stack and its sample count, for reading in
    the terminal). Nothing happens without py-spy, but a line on stderr."""

    def __init__(self, pid: int, output: Path, rate: int = 200) -> None:
        self.pid, self.output, self.rate = pid, output, rate
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpyRecord:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(exe).exists():
            print("(py-spy not installed: .venv/bin/pip install py-spy; no profile)", file=sys.stderr)
            return self
        fmt = "raw" if self.output.suffix == ".txt" else "flamegraph"
        self.process = subprocess.Popen([exe, "record", "--pid", str(self.pid), "--rate", str(self.rate),
                                         "--format", fmt, "--output", str(self.output), "--nonblocking"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached before the measured work starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

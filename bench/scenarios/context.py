"""What a scenario function gets (`run_scenario` builds it and cleans it up)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.scenarios.common import Result
from bench.scenarios.service import Service
from model_monitoring.commands.broker import Broker


@dataclass
class Context:
    """What a scenario gets: the broker, a work dir, the variant, its row, and the services it
    starts (the runner stops them, whatever happens)."""

    broker: Broker
    workdir: Path
    quick: bool
    result: Result
    seed: int = 20261126
    services: list[Service] = field(default_factory=list)

    def service(self, name: str, **kw: Any) -> Service:
        svc = Service(self.broker, self.workdir / f"svc{len(self.services)}", name, **kw)
        self.services.append(svc)
        return svc

    def cleanup(self) -> None:
        for svc in self.services:
            svc.stop()

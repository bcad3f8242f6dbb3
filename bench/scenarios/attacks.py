"""Scenario 7, attacks on the HTTP route of an RS256 setup (issuer and audience required): each
refused with the right status, in a burst too; the worker unaffected (same PID, ready); no run
started (nothing on the trigger topic) — then one good request to show the route does work."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections import Counter
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.scenarios.checks import worker_unaffected
from bench.scenarios.common import progress
from bench.scenarios.context import Context
from model_monitoring.streams.tokens import mint_token

RUN = "/api/v1/ml/model-monitoring/run"
ISSUER, AUDIENCE = "https://auth.test/", "model-monitoring"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT signed by hand: HS256 with any key bytes, or unsigned (alg none)."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    if key is None:
        return head + "."
    return head + "." + b64(hmac.new(key, head.encode(), hashlib.sha256).digest())


class Attacks:
    """The requests of the scenario: (name, headers, body, expected status)."""

    def __init__(self, private_key: Any, public_pem: bytes) -> None:
        self.key, self.public_pem = private_key, public_pem

    def token(self, **kw: Any) -> str:
        args: dict[str, Any] = {"algorithm": "RS256", "issuer": ISSUER, "audience": AUDIENCE}
        args.update(kw)
        return mint_token(self.key, **args)

    def claims(self) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": ISSUER, "aud": AUDIENCE, "scope": "model-monitoring:run", "sub": "attacker",
                "iat": now, "exp": now + 300}

    def requests(self) -> list[tuple[str, dict[str, str], bytes, int]]:
        bearer = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
        good = self.token()
        return [
            ("no token", {}, b"{}", 401),
            ("not a JWT", bearer("not.a.jwt"), b"{}", 401),
            ("expired", bearer(self.token(ttl_seconds=-600)), b"{}", 401),
            ("wrong audience", bearer(self.token(audience="someone-else")), b"{}", 401),
            ("wrong issuer", bearer(self.token(issuer="https://evil.test/")), b"{}", 401),
            ("alg none", bearer(forged({"alg": "none", "typ": "JWT"}, self.claims(), None)), b"{}", 401),
            ("HS256 keyed with the RS256 public key",
             bearer(forged({"alg": "HS256", "typ": "JWT"}, self.claims(), self.public_pem)), b"{}", 401),
            ("tenantIds beyond the token", bearer(self.token(tenant_ids=["acme"])),
             b'{"tenantIds": ["acme", "globex"]}', 403),
            ("wrong scope", bearer(self.token(scope="other:thing")), b"{}", 403),
            ("10 MB body", bearer(good), b'{"tenantIds": ["' + b"a" * (10 * 1024 * 1024) + b'"]}', 413),
            ("body not JSON", bearer(good), b"\x00\xffnot json{", 400),
            ("unknown field", bearer(good), b'{"tenantIds": ["acme"], "jobRunId": "mine"}', 400),
        ]


async def burst(port: int, requests: list[tuple[str, dict[str, str], bytes, int]], n: int
                ) -> Counter[tuple[str, int, int]]:
    """`n` requests, cycling through the attacks, 100 at a time: (name, expected, got) counts;
    got -1 is a connection error."""
    out: Counter[tuple[str, int, int]] = Counter()
    small = [r for r in requests if len(r[2]) < 1_000_000]
    connector = aiohttp.TCPConnector(limit=100)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def one(i: int) -> None:
            name, headers, body, want = small[i % len(small)]
            try:
                async with session.post(f"http://127.0.0.1:{port}{RUN}", data=body,
                                        headers={"Content-Type": "application/json", **headers}) as resp:
                    await resp.read()
                    out[(name, want, resp.status)] += 1
            except (TimeoutError, aiohttp.ClientError):
                out[(name, want, -1)] += 1

        await asyncio.gather(*(one(i) for i in range(n)))
    return out


def http_attacks(ctx: Context) -> None:
    r = ctx.result
    n_burst = 100 if ctx.quick else 1_000
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    pem_file = ctx.workdir / "jwt-public.pem"
    pem_file.write_bytes(public_pem)
    svc = ctx.service("attacks", partitions=2, extra={
        "MODEL_MONITORING_JWT_SECRET": "", "MODEL_MONITORING_JWT_PUBLIC_KEY_FILE": str(pem_file),
        "MODEL_MONITORING_JWT_ISSUER": ISSUER, "MODEL_MONITORING_JWT_AUDIENCE": AUDIENCE})
    worker = svc.start_worker(0)
    pid = worker.process.pid  # type: ignore[union-attr]
    attacks = Attacks(key, public_pem)
    requests = attacks.requests()
    right = 0
    for name, headers, body, want in requests:
        try:
            status, _ = worker.post(RUN, body, headers, timeout=30)
        except OSError as exc:  # a refused 10 MB upload may be cut short: say so
            status = -1
            progress(f"  {name}: {exc}")
        right += r.check(status == want, f"{name}: {status}, expected {want}")
    statuses = asyncio.run(burst(worker.web_port, requests, n_burst))
    wrong = {k: v for k, v in statuses.items() if k[1] != k[2]}
    r.check(not wrong, f"burst: {sum(wrong.values())} wrong answers, e.g. {list(wrong)[:3]}")
    r.notes["burst_statuses"] = dict(Counter(f"{got}" for (_, _, got), n in statuses.items()
                                             for _ in range(n)))
    worker_unaffected(r, worker, pid)
    time.sleep(1.0)
    triggers = svc.read(svc.s.trigger_topic)
    r.check(not triggers, f"{len(triggers)} triggers published: an attack started a run")
    r.check(not svc.read(svc.s.runs_topic), "a run was started")
    # the control: a good token does start a run (so the silence above means something)
    status, body = worker.post(RUN, b'{"tenantIds": ["acme"]}', {"Authorization": f"Bearer {attacks.token()}",
                                                                  "Prefer": "respond-async"})
    r.check(status == 202, f"a good request got {status}: {body[:200]!r}")
    time.sleep(1.0)
    r.check(len(svc.read(svc.s.trigger_topic)) == 1, "the good request published no trigger")
    r.load = f"{len(requests)} requests + burst of {n_burst:,}"
    r.faults = "forged/expired/misdirected tokens, bad bodies"
    r.notes["attacks"] = [f"{name} -> {want}" for name, _, _, want in requests]
    # for this row: requests in, requests answered with the right status
    r.messages_in = len(requests) + sum(statuses.values())
    r.accounted = right + sum(n for (_, want, got), n in statuses.items() if want == got)

"""API load benchmark: status polling under concurrency, and enrolling many nodes.

A coordinator is initialised in a temporary directory and served as a real daemon
(``retail-coordinator serve`` in a subprocess: SuperLink with TLS and node authentication, the
API with uvicorn, access logging on as in production) on loopback. Then:

* poll: ``--clients`` concurrent async httpx clients (one connection each, a viewer
  credential) alternately GET ``/api/v1/status`` and ``/api/v1/ledger`` for ``--duration``
  seconds, each waiting ``--interval`` seconds (default 1) between its requests, as a polling
  dashboard or node does: requests/s, p50/p90/p99/max latency per endpoint and overall, errors.
  Target: p99 <= 50 ms and zero errors (reported, not asserted).
* saturation: the same clients with no pause between requests (``--saturation-duration``
  seconds), which measures the API's capacity on this machine rather than a polling load.
* enroll: ``--nodes`` enrollment tokens are created through the API (admin credential), then
  each is redeemed by ``POST /api/v1/enroll`` with a fresh EC P-384 key (keys made beforehand,
  not timed), ``--enroll-concurrency`` at a time: total time, enrollments/s and per-enrollment
  latency; each includes the SuperLink registration of the key (Control API). The enrollment
  rate limit is per source address and every request here comes from 127.0.0.1, so the
  benchmark raises ``enrollment_attempts_per_minute`` to 100000 in its coordinator.toml (the
  production default is 10).
* poll again, with the nodes enrolled (``/status`` asks the SuperLink for its node list).

The load generator runs in this process on the same machine as the daemon and SuperLink, so
they compete for the CPU: on a 2-core machine the figures are a floor, not a capacity.
Prints one JSON object; nothing is asserted.

    python tests/benchmarks/api_load.py [--duration 20] [--clients 100] [--nodes 1000]
        [--enroll-concurrency 4] [--no-second-poll] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from coordinator.admin_client import AdminCredential, Endpoints  # noqa: E402
from coordinator.cli import main as coordinator_main  # noqa: E402
from coordinator.config import load, save  # noqa: E402
from shared.enrollment import generate_keypair  # noqa: E402

P99_TARGET_MS = 50.0
BENCH_ENROLLMENTS_PER_MINUTE = 100_000
POLL_PATHS = ("/api/v1/status", "/api/v1/ledger")


def _cli_json(*argv: str | Path) -> Any:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = coordinator_main([str(a) for a in argv] + ["--json"])
    if code != 0:
        raise RuntimeError(
            f"retail-coordinator {' '.join(map(str, argv))} failed: {out.getvalue()}"
        )
    return json.loads(out.getvalue())


def _percentiles(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {
        "p50_ms": pick(0.50),
        "p90_ms": pick(0.90),
        "p99_ms": pick(0.99),
        "max_ms": round(ordered[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


# -- polling ------------------------------------------------------------------------------------


async def _poller(
    client: httpx.AsyncClient,
    index: int,
    start: asyncio.Event,
    stop_at: list[float],
    results: dict[str, list[float]],
    errors: Counter[str],
    interval: float,
) -> None:
    await start.wait()
    turn = index  # clients start on different endpoints
    if interval > 0:  # spread the clients over one interval, as independent pollers are
        await asyncio.sleep(interval * (index % 100) / 100.0)
    while time.monotonic() < stop_at[0]:
        if interval > 0 and turn != index:
            await asyncio.sleep(interval)
        path = POLL_PATHS[turn % len(POLL_PATHS)]
        turn += 1
        started = time.perf_counter()
        try:
            response = await client.get(path)
        except httpx.HTTPError as exc:
            errors[f"{path}: {type(exc).__name__}"] += 1
            continue
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            errors[f"{path}: HTTP {response.status_code}"] += 1
            continue
        results[path].append(elapsed)


async def _poll(
    base: str, token: str, clients: int, duration: float, interval: float
) -> dict[str, Any]:
    results: dict[str, list[float]] = {path: [] for path in POLL_PATHS}
    errors: Counter[str] = Counter()
    # The clients are made (and connected) before the clock starts: an httpx client builds an
    # SSL context when created, ~20-50 ms of CPU each, which must not count as API latency.
    tls = ssl.create_default_context()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    headers = {"Authorization": f"Bearer {token}"}
    pool = [
        httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30, verify=tls)
        for _ in range(clients)
    ]
    try:
        await asyncio.gather(*(client.get("/healthz") for client in pool))  # connect
        start = asyncio.Event()
        stop_at = [0.0]
        tasks = [
            asyncio.create_task(_poller(client, i, start, stop_at, results, errors, interval))
            for i, client in enumerate(pool)
        ]
        started = time.monotonic()
        stop_at[0] = started + duration
        start.set()
        await asyncio.gather(*tasks)
        wall = time.monotonic() - started
    finally:
        await asyncio.gather(*(client.aclose() for client in pool))
    everything = [s for samples in results.values() for s in samples]
    overall = _percentiles(everything)
    error_count = sum(errors.values())
    return {
        "clients": clients,
        "interval_s": interval,
        "seconds": round(wall, 2),
        "requests": len(everything) + error_count,
        "requests_per_second": round((len(everything) + error_count) / wall, 1),
        "overall": overall,
        "by_endpoint": {
            path: {"requests": len(samples), **_percentiles(samples)}
            for path, samples in results.items()
        },
        "errors": error_count,
        "error_kinds": dict(errors),
        "target": {
            "p99_ms_at_most": P99_TARGET_MS,
            "zero_errors": True,
            "met": error_count == 0
            and overall["p99_ms"] is not None
            and overall["p99_ms"] <= P99_TARGET_MS,
        },
    }


# -- enrolling ----------------------------------------------------------------------------------


async def _create_tokens(base: str, admin_token: str, count: int) -> tuple[list[str], float]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    tokens: list[str] = [""] * count
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        semaphore = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with semaphore:
                response = await client.post(
                    "/api/v1/tokens",
                    json={"retailer": f"Bench Shop {i:05d}", "expires_in_seconds": 3600},
                )
                response.raise_for_status()
                tokens[i] = response.json()["token"]

        await asyncio.gather(*(one(i) for i in range(count)))
    return tokens, time.monotonic() - started


async def _enroll(
    base: str, tokens: list[str], keys: list[str], concurrency: int
) -> dict[str, Any]:
    latencies: list[float] = []
    registrations: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:

        async def one(token: str, key: str) -> None:
            async with semaphore:
                begin = time.perf_counter()
                try:
                    response = await client.post(
                        "/api/v1/enroll", json={"token": token, "public_key": key}
                    )
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    return
                elapsed = time.perf_counter() - begin
                if response.status_code != 201:
                    errors[f"HTTP {response.status_code}"] += 1
                    return
                latencies.append(elapsed)
                state = str(response.json().get("registration", "?"))
                registrations["registered" if state == "registered" else "pending"] += 1

        await asyncio.gather(*(one(t, k) for t, k in zip(tokens, keys, strict=True)))
    wall = time.monotonic() - started
    return {
        "nodes": len(tokens),
        "concurrency": concurrency,
        "total_seconds": round(wall, 2),
        "enrollments_per_second": round(len(latencies) / wall, 1) if wall else None,
        "per_enrollment": _percentiles(latencies),
        "registrations": dict(registrations),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
    }


# -- the daemon ---------------------------------------------------------------------------------


def _start_daemon(data_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], Endpoints, float]:
    started = time.monotonic()
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "serve", "--data-dir", str(data_dir)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=ROOT,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        endpoints = Endpoints.read(data_dir)
        if endpoints is not None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{endpoints.api_url}/readyz", timeout=2).status_code == 200:
                    return proc, endpoints, time.monotonic() - started
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the daemon was not ready within 120 s:\n{log.read_text()[-3000:]}")


def _stop_daemon(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    return {"exit_code": code, "seconds": round(time.monotonic() - started, 2)}


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="api-load-"))
    data_dir = work / "coordinator"
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {
            "duration_s": args.duration,
            "clients": args.clients,
            "nodes": args.nodes,
            "enroll_concurrency": args.enroll_concurrency,
            "enrollment_attempts_per_minute": BENCH_ENROLLMENTS_PER_MINUTE,
            "note": (
                "enrollment_attempts_per_minute raised from the default 10 to "
                f"{BENCH_ENROLLMENTS_PER_MINUTE}: every benchmark request comes from 127.0.0.1"
            ),
        },
    }
    try:
        _cli_json("init", "--data-dir", data_dir)
        config = load(data_dir)
        save(replace(config, enrollment_attempts_per_minute=BENCH_ENROLLMENTS_PER_MINUTE))
        viewer = _cli_json(
            "credential", "issue", "--data-dir", data_dir, "--role", "viewer", "--name", "bench"
        )
        admin = AdminCredential.read(data_dir)
        proc, endpoints, ready_s = _start_daemon(data_dir, work / "serve.log")
        report["daemon"] = {"ready_seconds": round(ready_s, 2), "api_url": endpoints.api_url}
        try:
            base = endpoints.api_url
            token = viewer["access_token"]
            report["poll"] = asyncio.run(
                _poll(base, token, args.clients, args.duration, args.interval)
            )
            report["saturation"] = asyncio.run(
                _poll(base, token, args.clients, args.saturation_duration, 0.0)
            )
            report["daemon"]["rss_mb_after_poll"] = _rss_mb(proc.pid)
            if args.nodes > 0:
                keys = [generate_keypair()[1] for _ in range(args.nodes)]
                tokens, token_s = asyncio.run(_create_tokens(base, admin.access_token, args.nodes))
                enroll = asyncio.run(_enroll(base, tokens, keys, args.enroll_concurrency))
                enroll["token_creation_seconds"] = round(token_s, 2)
                report["enroll"] = enroll
                report["daemon"]["rss_mb_after_enroll"] = _rss_mb(proc.pid)
                if args.second_poll:
                    report["poll_with_nodes"] = asyncio.run(
                        _poll(base, token, args.clients, args.duration, args.interval)
                    )
        finally:
            report["daemon"]["stop"] = _stop_daemon(proc)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of polling")
    parser.add_argument("--clients", type=int, default=100, help="concurrent polling clients")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds each client waits between polls"
    )
    parser.add_argument("--saturation-duration", type=float, default=10.0)
    parser.add_argument("--nodes", type=int, default=1000, help="nodes to enroll (0: skip)")
    parser.add_argument("--enroll-concurrency", type=int, default=4)
    parser.add_argument(
        "--second-poll",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="poll again once the nodes are enrolled (default: on)",
    )
    parser.add_argument("--keep", help="keep the coordinator's data directory here")
    args = parser.parse_args()
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()

"""A bounded soak of admit/release: the servers' memory and databases over a long run.

``python benchmarks/bench_soak.py [--minutes M] [--quick] [--in-flight K] [--live L] [--retention-s S]``

The federation of ``bench_fuzz.py`` (:mod:`inprocess`: three domain controllers, the broker and
the auditor served in this process on grpc.aio, 127.0.0.1, mutual TLS, no Ray; the broker keeps
its store in a SQLite file beside the domains', as ``trefed run`` does). A client in the same
process, holding the operator's certificate, admits tenants (``RequestService``, a new tenant
id each time) and releases them (``ReleaseService``) continuously for ``M`` minutes (default
10; ``--quick``: 1), with ``K`` calls in flight (default 8) and ``L`` contracts live (default
64: a contract is released once ``L`` newer ones are admitted; every contract admitted is
released by the end; ``--rate R``: at most ``R`` admissions/s, a steady rate on a shared machine). Every agent keeps finished state ``S`` s (``broker.retention_s``, default
60 here, 7 days in a config): domains delete finished reservations and their logged responses,
the broker released contracts and answered request ids, past that horizon. It is admit/release only: in this federation telemetry reaches the
auditor when a run's data plane reports it (``trefed run``), never in the admission path, so the
auditor sees no call during the soak (its memory under reports is ``--reports``).

Sampled every ``--every`` s (default 10): this process's RSS (it holds all five servers, and the
client), each SQLite database's size (file + ``-wal``), admissions and releases done, the
admission latency p50/p99 of the window (client side), the load average. Warm-up is the first
20 % of the run; growth after warm-up is the last sample against the first sample at or after the
end of warm-up, in %, and the least-squares slope of the samples after warm-up, MB/min; pass when
every growth (RSS, each database) is below 10 %. JSON to ``benchmarks/out/soak.json``, figure to
``benchmarks/out/soak.png``.

``--reports N`` instead measures the auditor's memory under ``Auditor.GetReport``: one contract
admitted, ``--warmup-reports`` reports (default 200: imports, first analysis), then ``N`` more
(default 2000, 8 in flight) with RSS sampled every 200; then the same after the edge domain's
``--rejected`` (default 10 000) bad telemetry batches (a bit flipped in the signature), as the
fuzz campaign sends them before it asks for reports. JSON to ``benchmarks/out/soak_reports.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import itertools
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from inprocess import CONFIG, Served, rss_mb, sqlite_mb  # noqa: E402  (benchmarks/ is on sys.path)
from trefed.v1 import services_pb2, services_pb2_grpc, telemetry_pb2  # noqa: E402

from agents.access import AUDITOR, BROKER  # noqa: E402
from agents.server import open_channel  # noqa: E402
from federation.config import parse_config  # noqa: E402
from federation.errors import ConfigError  # noqa: E402
from federation.tre.ca import CertificateAuthority  # noqa: E402
from federation.tre.signing import sign  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
WARMUP = 0.2  # share of the run that is warm-up
LIMIT = 0.10  # largest growth after warm-up that passes


# ---------------------------------------------------------------------------- analysis


def growth(t_s: list[float], values: list[float], warmup_s: float) -> dict[str, float]:
    """Growth of a gauge after warm-up.

    ``first``: the first sample at or after ``warmup_s`` (s from the start); ``last``: the last
    sample; ``growth``: ``(last - first) / first`` (a fraction); ``slope_mb_per_min``: the
    least-squares slope of the samples from ``first`` on, MB/min (NaN with fewer than two).
    """
    t = np.asarray(t_s, dtype=float)
    v = np.asarray(values, dtype=float)
    after = np.flatnonzero(t >= warmup_s)
    if after.size == 0:
        raise ValueError(f"no sample after the warm-up ({warmup_s:.0f} s); the run is too short")
    i = int(after[0])
    first, last = float(v[i]), float(v[-1])
    slope = float(np.polyfit(t[i:] / 60.0, v[i:], 1)[0]) if t.size - i >= 2 else float("nan")
    return {"first": first, "last": last, "growth": (last - first) / first if first > 0 else float("inf"),
            "slope_mb_per_min": slope, "first_t_s": float(t[i]), "last_t_s": float(t[-1])}


def _quantiles_ms(lat: list[float]) -> tuple[float, float]:
    if not lat:
        return float("nan"), float("nan")
    a = np.asarray(lat) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def tables(db: Path) -> dict[str, dict[str, int]]:
    """Rows and bytes of each table of ``db`` with its indexes (SQLite's ``dbstat``), and the WAL's bytes."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        owner = dict(con.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        out = {t: {"rows": int(con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]), "bytes": 0} for t in names}
        for name, size in con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)  # an index (automatic ones too) counts for its table
            if table in out:
                out[table]["bytes"] += int(size)
    finally:
        con.close()
    wal = db.with_name(db.name + "-wal")
    out["(wal)"] = {"rows": 0, "bytes": wal.stat().st_size if wal.exists() else 0}
    return out


# ---------------------------------------------------------------------------- the soak


async def soak(minutes: float, every_s: float, in_flight: int, live: int, retention_s: float = 60.0,
               rate: float | None = None) -> dict[str, Any]:
    """Admit and release for ``minutes`` with finished state kept ``retention_s`` (s), at most
    ``rate`` admissions/s (None: as fast as ``in_flight`` calls go); the samples and their growth
    after warm-up."""
    raw = copy.deepcopy(CONFIG)
    raw["broker"] = {**raw.get("broker", {}), "retention_s": retention_s}
    config = parse_config(raw)
    state = Path(tempfile.mkdtemp(prefix="trefed-soak-"))
    fed = await Served(config, state, CertificateAuthority.create(), broker_db=True).start()
    assert fed.broker is not None
    channel = open_channel(await fed.broker.address(), fed.creds("operator", "soak"), BROKER)
    stub = services_pb2_grpc.BrokerStub(channel)
    intent = config.tenants[0].intent.to_proto("x")
    counter = itertools.count()
    pool: list[str] = []  # live contracts, oldest first
    window: list[float] = []
    done = {"admitted": 0, "released": 0}
    errors: list[str] = []
    duration = 60.0 * minutes
    t_start = time.monotonic()
    stop_at = t_start + duration

    async def release(cid: str) -> None:
        await stub.ReleaseService(services_pb2.ReleaseServiceRequest(request_id=f"r-{cid}", contract_id=cid),
                                  timeout=30)
        done["released"] += 1

    async def worker() -> None:
        while time.monotonic() < stop_at and not errors:
            i = next(counter)
            if rate is not None:  # admission i starts no earlier than i / rate s after the start
                await asyncio.sleep(max(0.0, t_start + i / rate - time.monotonic()))
                if time.monotonic() >= stop_at:
                    break
            req = services_pb2.ServiceRequest(request_id=f"a{i}", intent=intent)
            req.intent.tenant_id = f"t{i}"
            try:
                t0 = time.perf_counter()
                c = await stub.RequestService(req, timeout=30)
                window.append(time.perf_counter() - t0)
                done["admitted"] += 1
                pool.append(c.contract_id)
                if len(pool) > live:
                    await release(pool.pop(0))
            except Exception as exc:  # a failed call ends the soak: the federation should not fail
                errors.append(f"{type(exc).__name__}: {exc}"[:500])

    samples: list[dict[str, Any]] = []

    def sample() -> None:
        p50, p99 = _quantiles_ms(window)
        samples.append({"t_s": time.monotonic() - t_start, "rss_mb": rss_mb(), "db_mb": sqlite_mb(state),
                        "admitted": done["admitted"], "released": done["released"], "window_admissions": len(window),
                        "p50_ms": p50, "p99_ms": p99, "load_1min": os.getloadavg()[0]})
        window.clear()
        s = samples[-1]
        print(f"  {s['t_s']:6.0f} s  RSS {s['rss_mb']:6.1f} MB  "
              + "  ".join(f"{k} {v:.2f}" for k, v in s["db_mb"].items())
              + f" MB  admitted {s['admitted']}  p50 {p50:.1f} p99 {p99:.1f} ms  load {s['load_1min']:.1f}",
              flush=True)

    async def sampler() -> None:
        n = 1
        while time.monotonic() < stop_at and not errors:
            await asyncio.sleep(max(0.0, t_start + n * every_s - time.monotonic()))
            n += 1
            sample()

    try:
        sample()
        await asyncio.gather(sampler(), *(worker() for _ in range(in_flight)))
        sample()  # the end of the admissions (may be < every_s after the previous one)
        for cid in pool:  # every contract is released by the end
            await release(cid)
        pool.clear()
        contents = {db.name: tables(db) for db in sorted(state.glob("*.db"))}
    finally:
        await channel.close()
        await fed.stop()
        shutil.rmtree(state, ignore_errors=True)  # ~2 kB per admission and database
    warmup_s = WARMUP * duration
    t = [s["t_s"] for s in samples]
    rss = growth(t, [s["rss_mb"] for s in samples], warmup_s)
    dbs = {name: growth(t, [s["db_mb"][name] for s in samples], warmup_s) for name in samples[0]["db_mb"]}
    passed = not errors and rss["growth"] < LIMIT and all(g["growth"] < LIMIT for g in dbs.values())
    wall = samples[-1]["t_s"]
    return {"minutes": minutes, "in_flight": in_flight, "live": live, "retention_s": retention_s, "rate": rate,
            "warmup_s": warmup_s, "limit": LIMIT,
            "admitted": done["admitted"], "released": done["released"], "admissions_per_s": done["admitted"] / wall,
            "errors": errors, "rss": rss, "databases": dbs, "tables": contents, "passed": passed, "samples": samples}


def figure(result: dict[str, Any], path: Path) -> None:
    """RSS and each database's size against time, the warm-up shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    t = np.array([s["t_s"] for s in samples]) / 60.0
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(t, [s["rss_mb"] for s in samples], marker=".")
    a.set_ylabel("RSS of the servers' process (MiB)")
    for name in samples[0]["db_mb"]:
        b.plot(t, [s["db_mb"][name] for s in samples], marker=".", label=name.lstrip("_"))  # "_x": no legend
    b.set_ylabel("SQLite file + WAL (MiB)")
    b.legend(fontsize=8)
    for ax in (a, b):
        ax.axvspan(0, result["warmup_s"] / 60.0, color="0.9", label="warm-up")
        ax.set_xlabel("time (min)")
        ax.set_ylim(bottom=0)
    fig.suptitle(f"admit/release soak: {result['admitted']} admissions, {result['in_flight']} in flight, "
                 f"{result['live']} live", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- the auditor's memory


async def reports(n: int, warmup: int, rejected: int, in_flight: int) -> dict[str, Any]:
    """RSS over ``n`` ``GetReport`` calls after ``warmup``, before and after ``rejected`` bad batches."""
    config = parse_config(copy.deepcopy(CONFIG))
    state = Path(tempfile.mkdtemp(prefix="trefed-reports-"))
    fed = await Served(config, state, CertificateAuthority.create()).start()
    assert fed.broker is not None and fed.auditor is not None
    operator = fed.creds("operator", "soak")
    bch = open_channel(await fed.broker.address(), operator, BROKER)
    ach = open_channel(await fed.auditor.address(), operator, AUDITOR)
    dch = open_channel(await fed.auditor.address(), fed.creds("domain", "edge"), AUDITOR)
    broker = services_pb2_grpc.BrokerStub(bch)
    auditor = services_pb2_grpc.AuditorStub(ach)
    contract = await broker.RequestService(services_pb2.ServiceRequest(
        request_id="r", intent=config.tenants[0].intent.to_proto("reports")), timeout=30)
    request = services_pb2.ReportRequest(contract_id=contract.contract_id)

    async def phase(count: int) -> list[tuple[int, float]]:
        todo = iter(range(count))
        trace = [(0, rss_mb())]
        sizes: list[int] = []

        async def worker() -> None:
            for i in todo:
                r = await auditor.GetReport(request, timeout=60)
                sizes.append(r.ByteSize())
                if (i + 1) % 200 == 0:
                    trace.append((i + 1, rss_mb()))

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        phase.sizes = sizes  # type: ignore[attr-defined]
        return trace

    try:
        rss0 = rss_mb()
        await phase(warmup)
        clean = await phase(n)
        clean_bytes = int(np.median(phase.sizes))  # type: ignore[attr-defined]
        body = telemetry_pb2.TelemetryBatchBody(domain_id="edge", batch_sequence=1, tenants=["reports"],
                                                window_start_s=0.0, window_end_s=1.0)
        good = sign(body, fed.keys["edge"], telemetry_pb2.SignedTelemetryBatch)
        submit = services_pb2_grpc.AuditorStub(dch).SubmitTelemetry
        rss_before_rejected = rss_mb()
        for i in range(rejected):
            bad = telemetry_pb2.SignedTelemetryBatch()
            bad.CopyFrom(good)
            sig = bytearray(bad.signature.signature)
            sig[i % len(sig)] ^= 1 << (i % 8)
            bad.signature.signature = bytes(sig)
            r = await submit(bad, timeout=30)
            assert not r.accepted, "a batch with a flipped signature bit was accepted"
        rss_after_rejected = rss_mb()
        await phase(warmup)
        dirty = await phase(n)
        dirty_bytes = int(np.median(phase.sizes))  # type: ignore[attr-defined]
    finally:
        for ch in (bch, ach, dch):
            await ch.close()
        await fed.stop()
        shutil.rmtree(state, ignore_errors=True)
    return {"reports": n, "warmup_reports": warmup, "in_flight": in_flight, "rss_start_mb": rss0,
            "clean": {"trace": clean, "report_bytes": clean_bytes},
            "rejected_batches": rejected, "rss_before_rejected_mb": rss_before_rejected,
            "rss_after_rejected_mb": rss_after_rejected,
            "after_rejected": {"trace": dirty, "report_bytes": dirty_bytes}}


# ---------------------------------------------------------------------------- main


def _positive(kind: type, name: str) -> Any:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}(={text!r}) must be a number") from None
        if not v > 0 or v != v or v == float("inf"):
            raise argparse.ArgumentTypeError(f"{name}(={text!r}) must be finite and > 0")
        return v
    return parse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=_positive(float, "--minutes"), default=10.0, help="soak length (default 10)")
    ap.add_argument("--quick", action="store_true", help="a 1-minute smoke run, sampled every 5 s")
    ap.add_argument("--every", type=_positive(float, "--every"), default=10.0, help="sampling period, s (default 10)")
    ap.add_argument("--in-flight", type=_positive(int, "--in-flight"), default=8, help="calls in flight (default 8)")
    ap.add_argument("--live", type=_positive(int, "--live"), default=64, help="contracts live at once (default 64)")
    ap.add_argument("--retention-s", type=_positive(float, "--retention-s"), default=60.0,
                    help="broker.retention_s: finished state kept this long, s (default 60; >= the hold timeout)")
    ap.add_argument("--rate", type=_positive(float, "--rate"), default=None,
                    help="admissions/s at most (default: as fast as --in-flight calls go); a steady rate gives a "
                         "steady retained state (rate x retention rows)")
    ap.add_argument("--reports", type=_positive(int, "--reports"), default=None,
                    help="measure the auditor's RSS over this many GetReport calls instead of the soak")
    ap.add_argument("--warmup-reports", type=_positive(int, "--warmup-reports"), default=200)
    ap.add_argument("--rejected", type=_positive(int, "--rejected"), default=10_000,
                    help="bad telemetry batches before the second series of reports (default 10000)")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.reports is not None:
        print(f"auditor: RSS over {args.reports} GetReport calls after {args.warmup_reports} ({args.in_flight} in "
              f"flight, mTLS, in-process), then again after {args.rejected} rejected telemetry batches")
        r = asyncio.run(reports(args.reports, args.warmup_reports, args.rejected, args.in_flight))
        print(f"  warm-up ({args.warmup_reports} reports): RSS {r['rss_start_mb']:.1f} -> "
              f"{r['clean']['trace'][0][1]:.1f} MB")
        for name, key in (("clean", "clean"), (f"after {args.rejected} rejected batches", "after_rejected")):
            trace = r[key]["trace"]
            print(f"  {name}: RSS {trace[0][1]:.1f} -> {trace[-1][1]:.1f} MB over {trace[-1][0]} reports "
                  f"(max {max(v for _, v in trace):.1f}); a report is {r[key]['report_bytes']} bytes")
        print(f"  {args.rejected} rejected batches: RSS {r['rss_before_rejected_mb']:.1f} -> "
              f"{r['rss_after_rejected_mb']:.1f} MB")
        r["args"] = vars(args)
        path = OUT / "soak_reports.json"
        path.write_text(json.dumps(r, indent=2))
        print(f"  wrote {path}")
        return 0
    minutes, every = (1.0, 5.0) if args.quick else (args.minutes, args.every)
    try:
        parse_config({**CONFIG, "broker": {**CONFIG.get("broker", {}), "retention_s": args.retention_s}})
    except ConfigError as exc:
        ap.error(f"--retention-s: {exc}")
    print(f"soak: admit/release for {minutes:g} min, {args.in_flight} in flight, {args.live} contracts live, "
          f"retention {args.retention_s:g} s, "
          + (f"at most {args.rate:g} admissions/s, " if args.rate else "")
          + f"mTLS, in-process; sampled every {every:g} s; warm-up the first {WARMUP:.0%} ({WARMUP * minutes * 60:.0f} s)")
    result = asyncio.run(soak(minutes, every, args.in_flight, args.live, args.retention_s, args.rate))
    result["args"] = vars(args)
    if result["errors"]:
        print(f"  FAILED calls: {result['errors'][:3]}")
    print(f"  {result['admitted']} admissions ({result['admissions_per_s']:.1f}/s), {result['released']} releases")
    for name, g in [("RSS", result["rss"]), *result["databases"].items()]:
        print(f"  {name:14s} {g['first']:8.2f} MB at {g['first_t_s']:4.0f} s -> {g['last']:8.2f} MB at "
              f"{g['last_t_s']:4.0f} s: {100 * g['growth']:+6.1f} % ({g['slope_mb_per_min']:+.3f} MB/min)  "
              f"{'pass' if g['growth'] < LIMIT else 'FAIL'}")
    for db, tabs in result["tables"].items():
        print(f"  {db}: " + ", ".join(f"{t} {v['rows']} rows {v['bytes'] / 2**20:.2f} MB"
                                      + (f" ({v['bytes'] / v['rows']:.0f} B/row)" if v["rows"] else "")
                                      for t, v in tabs.items()))
    print(f"  {'PASS' if result['passed'] else 'FAIL'}: growth after warm-up < {LIMIT:.0%} for RSS and every database")
    (OUT / "soak.json").write_text(json.dumps(result, indent=2))
    figure(result, OUT / "soak.png")
    print(f"  wrote {OUT / 'soak.json'}, {OUT / 'soak.png'}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Fuzz every RPC of the domains, the broker and the auditor; and admissions/s with mTLS on and off.

``python benchmarks/bench_fuzz.py [--calls N] [--concurrency C] [--quick] [--only METHOD ...]``

Three domain controllers, a broker and an auditor are served in this process (grpc.aio on
127.0.0.1, mutual TLS, each with its certificate of one CA; no Ray) over FAST-style config. For each
of the 16 methods (``BatchStream``: one stream per request), ``N`` mutated requests (default 10 000) are sent as raw bytes by a client
holding the role the method admits (broker at the domains, operator at the broker, the edge
domain at the auditor), so the calls reach the logic, not only the authorization check. A request
is a valid seed (a real prepare, intent, telemetry batch, contract id, ...) changed by one of:

* field mutations (60 %): 1-4 fields anywhere in the message set to an edge value (0, -0, -1,
  5e-324, 1e300, +-inf, nan, 2**64-1, empty, 20 kB and NUL strings, 300 repeated items, another
  oneof arm, a cleared sub-message);
* byte mutations (30 %) of the serialized seed: bit flips, truncation, insertion, duplication;
* random bytes (10 %), up to 4 kB.

Reported per method: the status codes seen, the slowest call, and whether any answer was
``INTERNAL`` or ``UNKNOWN`` (the target: none) or took over 5 s; after each method the servers'
health is checked; this process's RSS and the domains' SQLite sizes before and after. Baseline in
the same run: the valid seeds' latency. Then ``--admissions`` admissions (default 2 000, 8 in
flight) through the same in-process federation twice, with mTLS and without (a second federation
on plaintext), admissions/s each. JSON to ``benchmarks/out/fuzz.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc  # noqa: E402
from google.protobuf import descriptor  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from inprocess import CONFIG, Served, rss_mb, sqlite_mb  # noqa: E402  (benchmarks/ is on sys.path)
from trefed.v1 import reservation_pb2, services_pb2, services_pb2_grpc, telemetry_pb2  # noqa: E402

from agents.access import AUDITOR, BROKER  # noqa: E402
from agents.server import open_channel  # noqa: E402
from federation.config import parse_config  # noqa: E402
from federation.tre.ca import CertificateAuthority, PeerIdentity, Role  # noqa: E402
from federation.tre.signing import sign  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "fuzz.json"
SLOW_S = 5.0

# ---------------------------------------------------------------------------- mutations

_FLOATS = [0.0, -0.0, -1.0, 1.0, 5e-324, 1e-300, 1e-9, 0.5, 1e15, 1e300, 1.7976931348623157e308,
           math.inf, -math.inf, math.nan]
_INTS = [0, 1, 2, 255, 256, 2**31 - 1, 2**32 - 1, 2**63 - 1]
_STRS = ["", "a", "edge", "access/gold", "t1", "x" * 20_000, "\x00", "é" * 64, "../../etc/passwd",
         "trefed://broker/broker", "ct-0", " "]


def _value(field: descriptor.FieldDescriptor, rng: random.Random) -> Any:
    t = field.type
    if t in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
        return rng.choice(_FLOATS) if rng.random() < 0.8 else rng.uniform(-1e6, 1e6)
    if t == field.TYPE_BOOL:
        return rng.random() < 0.5
    if t == field.TYPE_STRING:
        return rng.choice(_STRS)
    if t == field.TYPE_BYTES:
        return rng.choice([b"", b"\x00", os.urandom(rng.randrange(1, 200)), b"\xff" * 5000])
    if t == field.TYPE_ENUM:
        return rng.choice([v.number for v in field.enum_type.values] + [99])
    signed = t in (field.TYPE_INT32, field.TYPE_INT64, field.TYPE_SINT32, field.TYPE_SINT64,
                   field.TYPE_SFIXED32, field.TYPE_SFIXED64)
    bits = 32 if t in (field.TYPE_INT32, field.TYPE_UINT32, field.TYPE_SINT32, field.TYPE_FIXED32,
                       field.TYPE_SFIXED32) else 64
    v = rng.choice(_INTS + [2**bits - 1])
    hi = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    v = min(v, hi)
    return -v if signed and rng.random() < 0.3 else v


def _mutate_message(msg: Any, rng: random.Random, depth: int = 0) -> None:
    fields = list(msg.DESCRIPTOR.fields)
    if not fields:
        return
    for _ in range(rng.randint(1, 4)):
        f = rng.choice(fields)
        if f.is_repeated:
            container = getattr(msg, f.name)
            roll = rng.random()
            if roll < 0.3:
                del container[:]
            elif f.message_type is not None:
                if f.message_type.GetOptions().map_entry:
                    continue
                n = rng.choice([1, 2, 300])
                src = container[0] if len(container) else None
                for _ in range(n):
                    item = container.add()
                    if src is not None:
                        item.CopyFrom(src)
                    if rng.random() < 0.3 and depth < 3:
                        _mutate_message(item, rng, depth + 1)
            else:
                container.extend(_value(f, rng) for _ in range(rng.choice([1, 300])))
        elif f.message_type is not None:
            if rng.random() < 0.25:
                msg.ClearField(f.name)
            elif depth < 4:
                _mutate_message(getattr(msg, f.name), rng, depth + 1)
        else:
            try:
                setattr(msg, f.name, _value(f, rng))
            except (ValueError, TypeError):
                pass


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        if op < 0.4 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op < 0.6 and b:
            del b[rng.randrange(len(b)):]
        elif op < 0.8:
            i = rng.randrange(len(b) + 1)
            b[i:i] = os.urandom(rng.randint(1, 16))
        elif b:
            i = rng.randrange(len(b))
            b[i:i] = b[i:i + rng.randint(1, 64)]
    return bytes(b)


def mutated(seed: Any, rng: random.Random) -> bytes:
    """One fuzzed request: field mutations, byte mutations of the seed, or random bytes."""
    roll = rng.random()
    if roll < 0.6:
        msg = type(seed)()
        msg.CopyFrom(seed)
        _mutate_message(msg, rng)
        return msg.SerializeToString()
    if roll < 0.9:
        return _mutate_bytes(seed.SerializeToString(), rng)
    return os.urandom(rng.randint(0, 4096))


# ---------------------------------------------------------------------------- seeds


async def seeds(fed: Served, operator_call: Callable) -> dict[str, tuple[str, str, Any]]:
    """``Service.Method -> (address key, role, valid seed)``."""
    config = fed.config
    intent = config.tenants[0].intent.to_proto("fuzz")
    contract = await operator_call("RequestService", services_pb2.ServiceRequest(request_id="seed", intent=intent))
    res = reservation_pb2.ReservationRequest(reservation_id="seed-r", tenant_id="fuzz", tre_id="edge/gpu",
                                             rate_bps=2e7, burst_bits=2e5, delay_budget_s=0.01, epsilon=1e-3)
    prepare = reservation_pb2.PrepareRequest(request_id="seed-p", reservation=res, hold_timeout_s=2.0)
    body = telemetry_pb2.TelemetryBatchBody(domain_id="edge", batch_sequence=1, tenants=["fuzz"], window_start_s=0.0,
                                            window_end_s=1.0)
    batch = sign(body, fed.keys["edge"], telemetry_pb2.SignedTelemetryBatch)
    cid = contract.contract_id
    return {
        "DomainController.GetEnvelope": ("edge", "broker", services_pb2.GetEnvelopeRequest(tre_id="edge/gpu")),
        "DomainController.Prepare": ("edge", "broker", prepare),
        "DomainController.Commit": ("edge", "broker", reservation_pb2.CommitRequest(
            request_id="seed-c", reservation_id=f"{cid}.edge")),
        "DomainController.Abort": ("edge", "broker", reservation_pb2.AbortRequest(
            request_id="seed-a", reservation_id="seed-r", reason="fuzz")),
        "DomainController.Release": ("edge", "broker", reservation_pb2.ReleaseRequest(
            request_id="seed-l", reservation_id=f"{cid}.edge")),
        "DomainController.GetStatus": ("edge", "broker", services_pb2.GetStatusRequest(include_reservations=True)),
        "DomainController.Batch": ("edge", "broker", services_pb2.BatchRequest(items=[
            services_pb2.BatchItem(prepare=prepare),
            services_pb2.BatchItem(abort=reservation_pb2.AbortRequest(request_id="b-a", reservation_id="seed-r"))])),
        "DomainController.BatchStream": ("edge", "broker", services_pb2.BatchRequest(items=[
            services_pb2.BatchItem(prepare=prepare),
            services_pb2.BatchItem(abort=reservation_pb2.AbortRequest(request_id="s-a", reservation_id="seed-s"))])),
        "Broker.ListModels": ("broker", "operator", services_pb2.ListModelsRequest(task="classify")),
        "Broker.ListDomainKeys": ("broker", "operator", services_pb2.ListDomainKeysRequest()),
        "Broker.ResolveIntent": ("broker", "operator", intent),
        "Broker.RequestService": ("broker", "operator", services_pb2.ServiceRequest(request_id="r", intent=intent)),
        "Broker.ReleaseService": ("broker", "operator", services_pb2.ReleaseServiceRequest(
            request_id="rel", contract_id=cid)),
        "Broker.GetContract": ("broker", "operator", services_pb2.GetContractRequest(contract_id=cid)),
        "Auditor.SubmitTelemetry": ("auditor", "domain", batch),
        "Auditor.GetReport": ("auditor", "operator", services_pb2.ReportRequest(contract_id=cid)),
    }


#: The streaming methods (fuzzed one stream per call, each carrying one mutated message).
STREAMS = frozenset({"DomainController.BatchStream"})


def _db_mb(state: Path) -> float:
    return sum(sqlite_mb(state).values())


async def fuzz(args: argparse.Namespace) -> dict:
    config = parse_config(copy.deepcopy(CONFIG))
    state = Path(tempfile.mkdtemp(prefix="trefed-fuzz-"))
    fed = await Served(config, state, CertificateAuthority.create()).start()
    assert fed.broker is not None and fed.auditor is not None
    targets = {"broker": (await fed.broker.address(), BROKER), "auditor": (await fed.auditor.address(), AUDITOR),
               **{d: (a, PeerIdentity(Role.DOMAIN, d)) for d, a in fed.addresses.items()}}
    creds = {"broker": fed.creds("broker", "broker"), "operator": fed.creds("operator", "fuzz"),
             "domain": fed.creds("domain", "edge")}
    channels: dict[tuple[str, str], grpc.aio.Channel] = {}

    def channel(target: str, role: str) -> grpc.aio.Channel:
        if (target, role) not in channels:
            address, peer = targets[target]
            channels[target, role] = open_channel(address, creds[role], peer,
                                                  options=[("grpc.max_send_message_length", 64 * 2**20)])
        return channels[target, role]

    def raw(target: str, role: str, method: str) -> Any:
        service, name = method.split(".")
        if method in STREAMS:  # one stream per call: the mutated message, then the half-close
            stream = channel(target, role).stream_stream(f"/trefed.v1.{service}/{name}", request_serializer=None,
                                                         response_deserializer=None)

            async def call(data: bytes, timeout: float) -> list[bytes]:
                async def one() -> Any:
                    yield data

                return [m async for m in stream(one(), timeout=timeout)]

            return call
        return channel(target, role).unary_unary(f"/trefed.v1.{service}/{name}", request_serializer=None,
                                                 response_deserializer=None)

    async def operator_call(name: str, msg: Any) -> Any:
        data = await raw("broker", "operator", f"Broker.{name}")(msg.SerializeToString(), timeout=60)
        return services_pb2.ServiceContract.FromString(data)

    try:
        return await _fuzz_methods(args, fed, state, raw, channel, operator_call)
    finally:
        for ch in channels.values():
            await ch.close()
        await fed.stop()


async def _fuzz_methods(args: argparse.Namespace, fed: Served, state: Path, raw: Callable, channel: Callable,
                        operator_call: Callable) -> dict:
    seed_table = await seeds(fed, operator_call)
    rss0, db0 = rss_mb(), _db_mb(state)
    results: dict[str, Any] = {}
    methods = [m for m in seed_table if not args.only or m in args.only]
    for method in methods:
        target, role, seed = seed_table[method]
        call = raw(target, role, method)
        base = []
        for _ in range(20):  # baseline: the valid seed
            t0 = time.perf_counter()
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call(seed.SerializeToString(), timeout=30)
            base.append(time.perf_counter() - t0)
        codes: Counter[str] = Counter()
        slowest = 0.0
        bad: list[str] = []
        sem = asyncio.Semaphore(args.concurrency)
        async def one(i: int) -> None:
            nonlocal slowest
            async with sem:
                # made when sent (not all in advance: RSS is the servers'), reproducibly per call
                data = mutated(seed, random.Random(f"{args.seed}:{method}:{i}"))
                t0 = time.perf_counter()
                try:
                    await call(data, timeout=30)
                    code = "OK"
                except grpc.aio.AioRpcError as exc:
                    code = exc.code().name
                    if code in ("INTERNAL", "UNKNOWN") and len(bad) < 5:
                        bad.append(f"{code}: {(exc.details() or '')[:300]}")
                dt = time.perf_counter() - t0
                slowest = max(slowest, dt)
                codes[code] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(args.calls)))
        wall = time.perf_counter() - t0
        healthy = {}
        for t in ("broker", "auditor", *fed.addresses):
            h = await health_pb2_grpc.HealthStub(channel(t, "operator")).Check(health_pb2.HealthCheckRequest(),
                                                                                timeout=10)
            healthy[t] = health_pb2.HealthCheckResponse.ServingStatus.Name(h.status)
        results[method] = {
            "calls": args.calls, "codes": dict(codes.most_common()), "internal_or_unknown": codes["INTERNAL"]
            + codes["UNKNOWN"], "slowest_s": slowest, "over_5s": slowest > SLOW_S, "calls_per_s": args.calls / wall,
            "baseline_seed_ms": 1e3 * sorted(base)[len(base) // 2], "examples": bad, "health": healthy,
            "rss_after_mb": rss_mb(),
        }
        print(f"  {method:32s} {args.calls:6d} calls {args.calls / wall:7.0f}/s  slowest {slowest * 1e3:7.1f} ms  "
              f"INTERNAL/UNKNOWN {results[method]['internal_or_unknown']}  RSS {rss_mb():.0f} MB  "
              f"{', '.join(f'{k} {v}' for k, v in codes.most_common(4))}", flush=True)
    rss1, db1 = rss_mb(), _db_mb(state)
    return {"methods": results, "rss_mb": [rss0, rss1], "db_mb": [db0, db1],
            "total_internal_or_unknown": sum(r["internal_or_unknown"] for r in results.values()),
            "any_over_5s": any(r["over_5s"] for r in results.values()),
            "all_healthy": all(set(r["health"].values()) == {"SERVING"} for r in results.values())}


async def admissions(n: int, concurrency: int, secure: bool) -> dict:
    """Admissions/s through an in-process federation (mTLS or plaintext), releasing as it goes."""
    config = parse_config(copy.deepcopy(CONFIG))
    state = Path(tempfile.mkdtemp(prefix="trefed-adm-"))
    fed = await Served(config, state, CertificateAuthority.create() if secure else None).start()
    assert fed.broker is not None
    channel = open_channel(await fed.broker.address(), fed.creds("operator", "bench"), BROKER)
    stub = services_pb2_grpc.BrokerStub(channel)
    intent = config.tenants[0].intent.to_proto("x")
    lat: list[float] = []

    async def run(ids: range, k: int) -> float:
        todo = iter(ids)

        async def worker() -> None:
            for i in todo:
                req = services_pb2.ServiceRequest(request_id=f"a{i}", intent=intent)
                req.intent.tenant_id = f"t{i}"
                t0 = time.perf_counter()
                c = await stub.RequestService(req, timeout=30)
                lat.append(time.perf_counter() - t0)
                await stub.ReleaseService(services_pb2.ReleaseServiceRequest(request_id=f"r{i}",
                                                                             contract_id=c.contract_id), timeout=30)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(k)))
        return time.perf_counter() - t0

    await run(range(20), 1)  # warm-up: the first plan, the envelopes, the channels
    lat.clear()
    wall = await run(range(20, 20 + n), concurrency)
    await channel.close()
    await fed.stop()
    lat.sort()
    return {"mtls": secure, "admissions": n, "admit_and_release_per_s": n / wall,
            "p50_ms": 1e3 * lat[len(lat) // 2], "p99_ms": 1e3 * lat[int(len(lat) * 0.99)]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=10_000, help="mutated requests per method (default 10000)")
    ap.add_argument("--concurrency", type=int, default=16, help="calls in flight (default 16)")
    ap.add_argument("--admissions", type=int, default=2000, help="admissions per mTLS/plaintext run (default 2000)")
    ap.add_argument("--seed", type=int, default=12, help="random seed")
    ap.add_argument("--only", nargs="*", default=None, metavar="METHOD", help="only these Service.Method")
    ap.add_argument("--quick", action="store_true", help="500 calls per method, 300 admissions")
    args = ap.parse_args(argv)
    if args.quick:
        args.calls, args.admissions = 500, 300
    print(f"fuzz: {args.calls} mutated requests per method, {args.concurrency} in flight, mTLS, in-process")
    result = asyncio.run(fuzz(args))
    print(f"  INTERNAL/UNKNOWN in total: {result['total_internal_or_unknown']}; any call over 5 s: "
          f"{result['any_over_5s']}; healthy after every method: {result['all_healthy']}")
    print(f"  RSS {result['rss_mb'][0]:.0f} -> {result['rss_mb'][1]:.0f} MB; domain databases "
          f"{result['db_mb'][0]:.2f} -> {result['db_mb'][1]:.2f} MB")
    tls = [asyncio.run(admissions(args.admissions, 8, secure)) for secure in (True, False)]
    for t in tls:
        print(f"  admit+release, {'mTLS     ' if t['mtls'] else 'plaintext'}: {t['admit_and_release_per_s']:6.1f}/s  "
              f"p50 {t['p50_ms']:.2f} ms  p99 {t['p99_ms']:.2f} ms ({t['admissions']}, 8 in flight, in-process)")
    result["admissions_mtls_vs_plaintext"] = tls
    result["args"] = vars(args)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2, default=str))
    print(f"  wrote {OUT}")
    return 0 if result["total_internal_or_unknown"] == 0 and not result["any_over_5s"] and result["all_healthy"] else 1


if __name__ == "__main__":
    sys.exit(main())

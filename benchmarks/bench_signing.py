"""Throughput of signing and verifying Tail-Risk Envelopes, canonical encoding included.

Run ``python benchmarks/bench_signing.py [--quick]``. Prints a table and writes
``benchmarks/out/signing.json``.

What is measured (single thread, per envelope; the best and the median of many short blocks):

* ``canonical_encode``: deterministic serialization of an ``EnvelopeBody`` (the canonical encoding);
* ``validate_body``: the range checks shared by YAML loading and verification;
* ``ed25519_sign_raw`` / ``ed25519_verify_raw``: the bare primitive on the body bytes (the baseline,
  measured in the same run);
* ``sign_envelope``: copy + key id + range check + canonical encoding + Ed25519 signature;
* ``sign_envelope_to_wire``: the same, plus serializing the signed envelope to bytes;
* ``verify_envelope_wire``: the full verification from wire bytes -- decode, algorithm, key lookup,
  Ed25519, body decode, canonical re-encoding check, key/domain binding, range check, validity window
  and replay check (a fresh sequence number per envelope, as a broker sees them);
* ``verify_envelope_redelivery``: the same envelope re-delivered (``accept_redelivery=True``).

Three envelopes: a NETWORK one (the example), a COMPUTE one, and a COMPUTE one with a 64-point
tabulated MGF (a larger body).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "protos")]

import cryptography  # noqa: E402
import google.protobuf  # noqa: E402
from cryptography.hazmat.backends.openssl import backend as openssl_backend  # noqa: E402
from google.protobuf.internal import api_implementation  # noqa: E402
from trefed.v1 import envelope_pb2  # noqa: E402

from federation.tre.signing import SigningKey, canonical_bytes, sign_envelope  # noqa: E402
from federation.tre.trust import TrustStore  # noqa: E402
from federation.tre.validate import validate_body  # noqa: E402
from federation.tre.yaml import example_body  # noqa: E402

NOW = 1_800_000_000.0


def bodies() -> dict[str, envelope_pb2.EnvelopeBody]:
    network = example_body("access", now=NOW - 3600, valid_for_s=86400)
    compute = example_body("edge", kind="compute", now=NOW - 3600, valid_for_s=86400)
    tabulated = example_body("edge", kind="compute", now=NOW - 3600, valid_for_s=86400)
    tabulated.model.service = envelope_pb2.TABULATED_MGF
    for i in range(64):
        theta = 1e-7 * (i + 1)
        tabulated.model.mgf.add(theta=theta, rate_bps=4e8 * (1 - 0.002 * i), sigma_bits=100.0 + 10.0 * i)
    validate_body(tabulated)
    return {"network": network, "compute": compute, "compute_mgf64": tabulated}


def summarize(rates: list[float], n: int) -> dict[str, float]:
    """ops/s of the best and the median block of ``n`` calls.

    The best block estimates the cost on an idle core (other processes share the machine; blocks
    are short so that some run uninterrupted); the median shows the loaded figure.
    """
    best, median = max(rates), statistics.median(rates)
    return {
        "ops_per_s_best": best,
        "ops_per_s_median": median,
        "us_per_op_best": 1e6 / best,
        "us_per_op_median": 1e6 / median,
        "n": n,
        "repeats": len(rates),
    }


def prepare(body: envelope_pb2.EnvelopeBody, key: SigningKey, n: int, repeats: int) -> tuple[dict, dict]:
    """The timed operations on one envelope (callables of no argument) and its sizes."""
    signed_body = envelope_pb2.EnvelopeBody()
    signed_body.CopyFrom(body)
    signed_body.header.key_id = key.key_id
    data = canonical_bytes(signed_body)
    sig = key.sign_bytes(data)
    public = key.public_key

    # pre-signed envelopes with growing sequence numbers, so every verification is a fresh accept
    total = n * (repeats + 1) + 2
    wires = []
    for seq in range(1, total + 1):
        b = envelope_pb2.EnvelopeBody()
        b.CopyFrom(body)
        b.header.sequence = seq
        wires.append(sign_envelope(b, key).SerializeToString())
    store = TrustStore()
    store.add_key(key)
    counter = iter(range(1, total))

    def verify_fresh() -> None:
        store.verify_envelope(wires[next(counter)], now=NOW)

    redelivery_store = TrustStore()
    redelivery_store.add_key(key)
    redelivery_store.verify_envelope(wires[0], now=NOW)

    ops = {
        "canonical_encode": lambda: canonical_bytes(signed_body),
        "validate_body": lambda: validate_body(body),
        "ed25519_sign_raw": lambda: key.sign_bytes(data),
        "ed25519_verify_raw": lambda: public.verify(sig, data),
        "sign_envelope": lambda: sign_envelope(body, key),
        "sign_envelope_to_wire": lambda: sign_envelope(body, key).SerializeToString(),
        "verify_envelope_wire": verify_fresh,
        "verify_envelope_redelivery": lambda: redelivery_store.verify_envelope(
            wires[0], now=NOW, accept_redelivery=True
        ),
    }
    return ops, {"body_bytes": len(data), "wire_bytes": len(wires[0])}


def run_interleaved(plans: dict[str, dict], n: int, repeats: int) -> dict[str, dict[str, list[float]]]:
    """Time blocks of ``n`` calls, cycling over every (envelope, operation) in each repeat.

    Interleaving spreads the load of other processes evenly over all operations, so the ratios
    between them (e.g. full verification / raw Ed25519) stay meaningful on a shared machine.
    """
    rates: dict[str, dict[str, list[float]]] = {e: {op: [] for op in ops} for e, ops in plans.items()}
    for ops in plans.values():
        for fn in ops.values():
            fn()  # warm up
    for _ in range(repeats):
        for e, ops in plans.items():
            for op, fn in ops.items():
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                rates[e][op].append(n / (time.perf_counter() - t0))
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run, ~5 s)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "signing.json")
    args = parser.parse_args(argv)
    n, repeats = (100, 5) if args.quick else (200, 40)

    key = SigningKey.generate("access")
    edge = SigningKey.generate("edge")
    load_before = os.getloadavg()
    report: dict = {
        "benchmark": "signing",
        "quick": args.quick,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "protobuf": f"{google.protobuf.__version__} ({api_implementation.Type()})",
        "cryptography": cryptography.__version__,
        "openssl": openssl_backend.openssl_version_text(),
        "loadavg_before": load_before,
        "envelopes": {},
    }
    t0 = time.perf_counter()
    plans, sizes = {}, {}
    for name, body in bodies().items():
        plans[name], sizes[name] = prepare(body, key if name == "network" else edge, n, repeats)
    rates = run_interleaved(plans, n, repeats)
    for name in plans:
        results = {op: summarize(r, n) for op, r in rates[name].items()}
        report["envelopes"][name] = {
            **sizes[name],
            "results": results,
            "sign_overhead_vs_raw": results["ed25519_sign_raw"]["ops_per_s_best"]
            / results["sign_envelope"]["ops_per_s_best"],
            "verify_overhead_vs_raw": results["ed25519_verify_raw"]["ops_per_s_best"]
            / results["verify_envelope_wire"]["ops_per_s_best"],
        }
    report["elapsed_s"] = time.perf_counter() - t0
    report["loadavg_after"] = os.getloadavg()

    print(f"signing benchmark ({'quick' if args.quick else 'full'}; n={n} x {repeats}; load {load_before[0]:.2f})")
    header = f"{'operation':28s}" + "".join(f"{name:>22s}" for name in report["envelopes"])
    print(header)
    ops = next(iter(report["envelopes"].values()))["results"].keys()
    for op in ops:
        cells = "".join(
            f"{e['results'][op]['ops_per_s_best']:>13,.0f}/s {e['results'][op]['us_per_op_best']:5.1f}us"
            for e in report["envelopes"].values()
        )
        print(f"{op:28s}{cells}")
    print(f"{'body / wire bytes':28s}" + "".join(f"{e['body_bytes']:>14d} / {e['wire_bytes']:<5d}" for e in report["envelopes"].values()))
    for name, e in report["envelopes"].items():
        print(f"{name}: sign_envelope costs {e['sign_overhead_vs_raw']:.2f}x a raw Ed25519 sign, "
              f"verify_envelope {e['verify_overhead_vs_raw']:.2f}x a raw verify")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

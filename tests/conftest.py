"""Shared fixtures: ONE local Ray per test session (loopback only), and small federation configs.

Ray starts at most once per session, lazily, when a test first asks for ``ray_runtime``; tests
that need no Ray never start it. Every agent binds 127.0.0.1.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from federation.config import FederationConfig, parse_config

#: A three-domain federation whose planning is fast (token buckets through rate-latency slices,
#: deterministic bounds): access -> transport -> edge. With the default tenant traffic (sigma 2e5
#: bits, rho 1e7 bits/s, 1e3-bit requests, deadline 17.5 ms, path latency 7.5 ms) every domain
#: reserves about (sigma + packetizer terms)/(d - latency) ~ 20.2 Mb/s, so the edge (100 Mb/s)
#: admits 4 tenants; tests read the exact rate from the offers (``offered_rate``).
FAST_CONFIG: dict[str, Any] = {
    "name": "fast",
    "broker": {"hold_timeout_s": 5.0, "rpc_timeout_s": 2.0, "max_offers": 2, "max_in_flight": 64,
               "envelope_refresh_s": 1.0},
    "domains": [
        {
            "id": "access", "kind": "network", "tre_id": "access/gold", "price_per_mbps_hour": 0.002,
            "guardrails": {"reservable_capacity_bps": 1e9, "min_tenant_rate_bps": 1e6, "max_tenant_rate_bps": 5e8,
                           "max_burst_bits": 1e6, "latency_ceiling_s": 0.05, "loss_ceiling": 1e-3},
            "model": {"service": "rate-latency", "rate_bps": 1e9, "latency_s": 0.001, "propagation_delay_s": 0.001,
                      "loss_probability": 1e-4},
        },
        {
            "id": "transport", "kind": "network", "tre_id": "transport/gold", "price_per_mbps_hour": 0.001,
            "guardrails": {"reservable_capacity_bps": 2e9, "min_tenant_rate_bps": 1e6, "max_tenant_rate_bps": 1e9,
                           "max_burst_bits": 2e6, "latency_ceiling_s": 0.05, "loss_ceiling": 1e-4},
            "model": {"service": "rate-latency", "rate_bps": 2e9, "latency_s": 0.0005, "propagation_delay_s": 0.002,
                      "loss_probability": 1e-5},
        },
        {
            "id": "edge", "kind": "compute", "tre_id": "edge/gpu", "price_per_mbps_hour": 0.01,
            "guardrails": {"reservable_capacity_bps": 1e8, "min_tenant_rate_bps": 1e6, "max_tenant_rate_bps": 1e8,
                           "max_burst_bits": 1e6, "latency_ceiling_s": 0.1, "loss_ceiling": 1e-4},
            "model": {"service": "rate-latency", "rate_bps": 1e8, "latency_s": 0.001,
                      "inference": {"distribution": "exponential", "mean_s": 0.002}},
        },
    ],
    "links": [["access", "transport"], ["transport", "edge"]],
    "models": [
        {"id": "small", "task": "classify", "error_probability": 0.004,
         "latency": {"distribution": "exponential", "mean_s": 0.002}, "compute_domain": "edge",
         "price_per_hour": 0.4, "request_size_bits": 1e3},
        {"id": "large", "task": "classify", "error_probability": 0.001,
         "latency": {"distribution": "exponential", "mean_s": 0.004}, "compute_domain": "edge",
         "price_per_hour": 1.2, "request_size_bits": 1e3},
    ],
    "tenants": [
        {"id": f"t{i}", "access": "access",
         "intent": {"task": "classify", "max_error_probability": 0.005, "deadline_s": 0.0175, "epsilon": 0.01,
                    "traffic": {"kind": "token-bucket", "sigma_bits": 2e5, "rho_bps": 1e7}}}
        for i in range(1, 7)
    ],
}

#: Lower bound of the rate every domain reserves for a default tenant of FAST_CONFIG (bits/s).
FAST_RATE_MIN = 2e5 / (0.0175 - 0.0075)


@pytest.fixture
def fast_config() -> Callable[..., FederationConfig]:
    """``fast_config(**overrides)``: FAST_CONFIG with top-level keys (or ``broker``) replaced."""

    def make(**overrides: Any) -> FederationConfig:
        data = copy.deepcopy(FAST_CONFIG)
        for k, v in overrides.items():
            if k == "broker":
                data["broker"].update(v)
            else:
                data[k] = v
        return parse_config(data)

    return make


@pytest.fixture(scope="session")
def ray_runtime() -> Iterator[Any]:
    """The session's Ray (local, 127.0.0.1, 2 CPUs), started once and shut down at the end."""
    from agents.runtime import Runtime

    runtime = Runtime(num_cpus=2).start()
    try:
        yield runtime
    finally:
        runtime.shutdown()


@pytest.fixture(scope="session")
def fast_federation(ray_runtime, tmp_path_factory) -> Iterator[Any]:
    """FAST_CONFIG running on the session's Ray: 3 domain actors + a broker actor (hold timeout 1 s).

    Shared by the Ray tests; each test leaves no reservation behind (it releases what it took).
    """
    from agents.runner import Federation

    data = copy.deepcopy(FAST_CONFIG)
    data["broker"].update({"hold_timeout_s": 1.0, "rpc_timeout_s": 1.0})
    fed = Federation(parse_config(data), runtime=ray_runtime, state_dir=tmp_path_factory.mktemp("fed"),
                     sweep_interval_s=0.1)
    fed.start()
    try:
        yield fed
    finally:
        fed.stop()

"""Audited data-plane runs with a known answer: keys, a signed contract, telemetry batches.

For tests, benchmarks and demonstrations of the audit core: :func:`audited_run` simulates a path
of M/M/1 domains (exponential service of mean 1 s per packet, Poisson arrivals), signs a
contract whose grants hold each domain to ``(d_i, eps_i)``, and signs each domain's telemetry
as a hash chain -- optionally with one domain impaired (extra delay, through
:class:`~federation.dataplane.impairments.Impairment`) and one domain lying (its reported egress
times shifted earlier, :func:`shift_egress`).

Notes
-----
The sojourn time of an M/M/1 FIFO queue with arrival rate :math:`\\lambda` and service rate
:math:`\\mu` is exponential of rate :math:`\\mu - \\lambda` (Kleinrock 1975, *Queueing Systems*
I, eq. 3.26), so :math:`P(D_i > d) = e^{-(\\mu - \\lambda) d}` for every domain of a Jackson
tandem, and an extra delay :math:`x` makes it :math:`e^{-(\\mu - \\lambda)(d - x)}`: the
per-domain truth the audit is checked against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from trefed.v1 import reservation_pb2, services_pb2, telemetry_pb2

from federation.audit.batches import build_batches
from federation.dataplane.engine import simulate
from federation.dataplane.impairments import Impairment
from federation.dataplane.path import Domain, ServiceTimes, Source
from federation.dataplane.telemetry import DomainLog, Telemetry
from federation.dataplane.traffic import Poisson
from federation.errors import InputError
from federation.tre.signing import SigningKey, sign_grant
from federation.tre.trust import TrustStore
from federation.tre.validate import timestamp_from_seconds

__all__ = ["AuditedRun", "signed_contract", "shift_egress", "receipts_log", "audited_run", "mm1_exceedance"]

#: Unix time the scenarios' grants and batches are stamped with (2026-01-01T00:00:00Z).
EPOCH_UNIX_S = 1_767_225_600.0


def mm1_exceedance(d: float, rate: float, *, mu: float = 1.0, extra_s: float = 0.0) -> float:
    """:math:`P(D > d)` of an M/M/1 sojourn (arrival ``rate``, service ``mu`` per s) plus ``extra_s`` s."""
    return 1.0 if d <= extra_s else math.exp(-(mu - rate) * (d - extra_s))


def signed_contract(
    contract_id: str,
    tenant_id: str,
    keys: Sequence[SigningKey],
    budgets: Sequence[tuple[float, float]],
    *,
    epsilon_delay: float | None = None,
    loss: float = 0.0,
    error: float = 0.0,
    now: float = EPOCH_UNIX_S,
) -> services_pb2.ServiceContract:
    """A committed contract over the domains of ``keys`` (path order), each granting ``(d_i, eps_i)``.

    The offer's bound is ``d = sum d_i`` at ``epsilon_delay`` (default ``sum eps_i``), with
    ``epsilon_total = epsilon_delay + loss + error``.
    """
    if len(keys) != len(budgets):
        raise InputError(f"budgets: {len(budgets)} given for {len(keys)} domains")
    eps_d = sum(e for _, e in budgets) if epsilon_delay is None else epsilon_delay
    offer = services_pb2.Offer(
        offer_id=f"of-{contract_id}", model_id="m", compute_domain=keys[-1].domain_id,
        path=[k.domain_id for k in keys],
        bound=services_pb2.EndToEndBound(delay_s=sum(d for d, _ in budgets), epsilon_delay=eps_d,
                                         loss_probability=loss, error_probability=error,
                                         epsilon_total=eps_d + loss + error, method="scenario"),
    )
    contract = services_pb2.ServiceContract(contract_id=contract_id, tenant_id=tenant_id)
    for k, (d, e) in zip(keys, budgets):
        offer.budgets.append(services_pb2.DomainBudget(domain_id=k.domain_id, delay_s=d, epsilon=e, rate_bps=1.0,
                                                       tre_id=f"{k.domain_id}/gold", tre_sequence=1))
        g = reservation_pb2.GrantBody(reservation_id=f"{contract_id}.{k.domain_id}", domain_id=k.domain_id,
                                      tenant_id=tenant_id, tre_id=f"{k.domain_id}/gold", tre_sequence=1,
                                      rate_bps=1.0, burst_bits=0.0, delay_budget_s=d, epsilon=e, sequence=1)
        g.granted_at.CopyFrom(timestamp_from_seconds(now))
        g.not_after.CopyFrom(timestamp_from_seconds(now + 86_400.0))
        contract.grants.append(sign_grant(g, k))
    contract.offer.CopyFrom(offer)
    contract.created_at.CopyFrom(timestamp_from_seconds(now))
    return contract


def shift_egress(log: DomainLog, by_s: float) -> DomainLog:
    """``log`` as a lying domain would report it: every egress ``by_s`` s earlier (not before ingress)."""
    eg = np.where(log.lost, np.nan, np.maximum(log.egress - by_s, log.ingress))
    return DomainLog(log.domain, log.flow, log.seq, log.tenant, log.ingress, eg, log.lost, log.error)


def receipts_log(telemetry: Telemetry) -> DomainLog:
    """The tenants' receipts of a run as a log: one row per delivered packet, ingress = egress = its
    arrival at the tenant (s)."""
    d = telemetry.delivered
    n = len(telemetry.domains) if telemetry.domains is not None else 0
    return DomainLog(n, d.flow, d.seq, d.tenant, d.egress, d.egress, np.zeros(len(d), bool), d.error)


@dataclass(frozen=True, eq=False)
class AuditedRun:
    """A simulated, signed run: the domains' keys, their trust store, the contract, the batches."""

    keys: tuple[SigningKey, ...]
    trust: TrustStore
    contract: services_pb2.ServiceContract
    telemetry: Telemetry
    batches: dict[str, list[telemetry_pb2.SignedTelemetryBatch]]
    tenant_key: SigningKey | None = None

    def all_batches(self) -> list[telemetry_pb2.SignedTelemetryBatch]:
        """Every domain's batches, domain after domain (then the tenant's receipts, if any)."""
        ids = [k.domain_id for k in self.keys] + ([self.tenant_key.domain_id] if self.tenant_key else [])
        return [b for d in ids for b in self.batches[d]]


def audited_run(
    *,
    domain_ids: Sequence[str] = ("access", "transport", "cloud"),
    rate: float = 0.5,
    packets: int = 20_000,
    budgets: Sequence[tuple[float, float]] | None = None,
    extra_delay: tuple[int, float] | None = None,
    liar: tuple[int, float] | None = None,
    loss: tuple[int, float] | None = None,
    receipts: bool = False,
    seed: int = 1,
    batch_packets: int = 5_000,
    keys: Sequence[SigningKey] | None = None,
    tenant_id: str = "tenant-a",
    contract_id: str = "ct-1",
) -> AuditedRun:
    """Simulate and sign a run of M/M/1 domains (service rate 1 per s, Poisson ``rate`` per s).

    Parameters
    ----------
    budgets
        ``(d_i, eps_i)`` per domain; default ``eps_i = 0.01`` and ``d_i`` at which the true
        exceedance is ``eps_i / 4`` (``ln 400 / (1 - rate)`` s).
    extra_delay
        ``(domain index, seconds)``: that domain delays every packet by that much more.
    liar
        ``(domain index, seconds)``: that domain reports its egress that much earlier.
    loss
        ``(domain index, probability)``: that domain loses packets independently.
    receipts
        The tenant also reports its receipts, signed with its own key (trusted for ``tenant_id``).
    keys
        The domains' keys (default: fresh ones).
    """
    n = len(domain_ids)
    if budgets is None:
        budgets = [(math.log(400.0) / (1.0 - rate), 0.01)] * n
    keys = tuple(keys) if keys is not None else tuple(SigningKey.generate(d) for d in domain_ids)
    doms = [Domain(rate=1.0, service=ServiceTimes("exp", 1.0), name=d,
                   loss=loss[1] if loss is not None and loss[0] == i else 0.0) for i, d in enumerate(domain_ids)]
    imps = [Impairment(extra_delay[0], "delay", 0.0, 1e12, extra_delay[1])] if extra_delay else []
    tel = simulate(doms, [Source(0, Poisson(rate))], seed=seed, packets=packets, impairments=imps)
    assert tel.domains is not None
    trust = TrustStore()
    for k in keys:
        trust.add_key(k)
    batches = {}
    for i, (log, k) in enumerate(zip(tel.domains, keys)):
        if liar is not None and liar[0] == i:
            log = shift_egress(log, liar[1])
        batches[k.domain_id] = build_batches(log, k.domain_id, k, tenant_ids={0: tenant_id},
                                             batch_packets=batch_packets, clock=lambda: EPOCH_UNIX_S)
    tenant_key = None
    if receipts:
        tenant_key = SigningKey.generate(tenant_id)
        trust.add_key(tenant_key)
        batches[tenant_id] = build_batches(receipts_log(tel), tenant_id, tenant_key, tenant_ids={0: tenant_id},
                                           batch_packets=batch_packets, clock=lambda: EPOCH_UNIX_S)
    contract = signed_contract(contract_id, tenant_id, keys, budgets)
    return AuditedRun(keys, trust, contract, tel, batches, tenant_key)

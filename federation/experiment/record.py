"""What a federation run produced, as values: the input of its report and figures.

The agents' loop (``agents.scenario``) fills a :class:`RunRecord`; :mod:`federation.experiment.report`
writes it out (``report.json``, ``report.md``) and :mod:`federation.experiment.figures` draws it.
Units: seconds, bits/s, probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from trefed.v1 import services_pb2, telemetry_pb2

from federation.config import FederationConfig
from federation.experiment.plane import PlaneRun
from federation.stats import ProportionEstimate, tail_probability_of

__all__ = ["BudgetRecord", "TenantRecord", "TelemetryRecord", "RunRecord"]


@dataclass(frozen=True)
class BudgetRecord:
    """One domain's sub-budget of a contract: ``P(D_i > delay_s) <= epsilon`` at ``rate_bps`` reserved.

    ``bound_epsilon``: the calculus' own per-domain bound on ``P(D_i > delay_s)`` for the traffic
    as it reaches the domain (:func:`federation.experiment.backing.domain_bounds`);
    ``alone_epsilon``: the bound of the tenant's declared traffic through the domain alone
    (:func:`federation.experiment.backing.alone_bounds`, what
    :func:`federation.calculus.compose.backed_split` budgets on). The budget is *backed* when
    either is at most ``epsilon`` (NaN: not computed).
    """

    domain_id: str
    delay_s: float
    epsilon: float
    rate_bps: float
    bound_epsilon: float = math.nan
    alone_epsilon: float = math.nan

    @property
    def backed(self) -> bool:
        """The calculus shows the domain can meet it (``bound_epsilon`` or ``alone_epsilon <= epsilon``)."""
        return self.bound_epsilon <= self.epsilon or self.alone_epsilon <= self.epsilon


@dataclass(frozen=True, eq=False)
class TenantRecord:
    """One tenant of the run.

    Attributes
    ----------
    tenant_id, index
        Its id and config index (the data plane's tenant number).
    admitted
        The broker granted a contract.
    served
        Its traffic entered the data plane (admitted, or let in unreserved with admission control off).
    code, reason
        ``"OK"``, or the status and reason of the broker's refusal.
    contract_id, model_id, path
        The contract (empty when none); the model and path its traffic took.
    deadline_s, epsilon
        The intent: ``P(D > deadline_s) + loss + error <= epsilon``.
    delay_bound_s, epsilon_delay, epsilon_total
        The contract's end-to-end bound (NaN without a contract; under the admission policy
        ``none`` the intent as asked, which nothing proves).
    admission
        The broker's admission policy that planned the contract (``snc``, ``dnc``, ``peak-rate``,
        ``none``; empty without a contract).
    budgets
        Per-domain sub-budgets, path order.
    start_s, end_s
        When its traffic was on, s.
    report
        The auditor's signed report body (None without a contract).
    bound_x_s, bound_p
        The composed bound curve ``P(D > x) <= p(x)`` at its reserved rates (empty without a contract).
    """

    tenant_id: str
    index: int
    admitted: bool
    served: bool
    code: str = "OK"
    reason: str = ""
    contract_id: str = ""
    model_id: str = ""
    path: tuple[str, ...] = ()
    deadline_s: float = math.nan
    epsilon: float = math.nan
    delay_bound_s: float = math.nan
    epsilon_delay: float = math.nan
    epsilon_total: float = math.nan
    admission: str = ""
    budgets: tuple[BudgetRecord, ...] = ()
    start_s: float = 0.0
    end_s: float = 0.0
    report: telemetry_pb2.AccountabilityReportBody | None = None
    bound_x_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    bound_p: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def verdict(self) -> str:
        """``COMPLIANT`` / ``VIOLATING`` / ``INCONCLUSIVE`` (the auditor's end-to-end verdict), or
        ``UNAUDITED`` (served without a contract), or ``NOT_SERVED``."""
        if self.report is not None:
            return str(telemetry_pb2.Verdict.Name(self.report.end_to_end_verdict))
        return "UNAUDITED" if self.served else "NOT_SERVED"

    def measured(self, plane: PlaneRun, *, errors: bool = False) -> ProportionEstimate | None:
        """The rate of packets late for ``deadline_s`` or lost (with ``errors``: or answered wrongly,
        the tenant's total budget), measured in the data plane; None when it sent nothing.

        The auditor's estimator (:func:`federation.stats.tail_probability_of`) over
        :meth:`PlaneRun.tenant_outcomes` in order of arrival (the delays are autocorrelated): what the
        run reports for tenants served without a contract, whom no auditor judges.
        """
        series = plane.tenant_outcomes(self.index, self.path[0], errors=errors) if self.path else np.empty(0)
        return tail_probability_of(series, self.deadline_s) if len(series) else None


@dataclass(frozen=True)
class TelemetryRecord:
    """What one domain reported: batches sent and accepted, rows, the auditor's reasons for refusals."""

    domain_id: str
    batches: int
    accepted: int
    packets: int
    reasons: tuple[str, ...] = ()
    under_report_s: float = 0.0


@dataclass(frozen=True, eq=False)
class RunRecord:
    """A whole run (see the module docstring).

    Attributes
    ----------
    config
        The federation config that ran.
    tenants
        Every tenant, config order.
    plane
        The data plane's logs and deliveries.
    telemetry
        Domain id -> what it reported.
    events
        ``(t_s, sentence)`` of the control plane's timeline (arrivals, admissions, releases, crashes).
    timings
        Wall seconds per phase.
    auditor_key
        ``(key_id, auditor_id, raw public key)`` that verifies the reports.
    contracts
        The broker's record of every contract granted (signed grants included).
    signed_reports
        Contract id -> the auditor's signed report, serialized (``SignedAccountabilityReport``).
    batches
        Every telemetry batch the domains sent, serialized (``SignedTelemetryBatch``), domain by domain.
    public_pems
        Name -> public key PEM of every domain and of the auditor (what verifies grants, batches, reports).
    """

    config: FederationConfig
    tenants: tuple[TenantRecord, ...]
    plane: PlaneRun
    telemetry: dict[str, TelemetryRecord]
    events: tuple[tuple[float, str], ...]
    timings: dict[str, float]
    auditor_key: tuple[str, str, bytes]
    contracts: tuple[services_pb2.ServiceContract, ...] = ()
    signed_reports: dict[str, bytes] = field(default_factory=dict)
    batches: tuple[bytes, ...] = ()
    public_pems: dict[str, bytes] = field(default_factory=dict)

    def blamed(self) -> list[str]:
        """Domains held to account: judged VIOLATING for some contract, or named by a finding that is
        not harmless (an inconsistency names the domain its neighbour contradicts), path order."""
        from federation.audit.chain import HARMLESS

        out: list[str] = []
        for t in self.tenants:
            if t.report is None:
                continue
            names = [d.domain_id for d in t.report.domains if d.verdict == telemetry_pb2.VIOLATING]
            names += [f.domain_id for f in t.report.finding_details if f.kind not in HARMLESS and f.domain_id]
            out += [n for n in names if n not in out]
        return out

    def violation_found(self) -> bool:
        """An audited contract, or a domain of one, was judged VIOLATING."""
        from federation.audit.report import violation_found

        return any(t.report is not None and violation_found(t.report) for t in self.tenants)

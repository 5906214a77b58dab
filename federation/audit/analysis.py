"""One contract's telemetry, judged: cross-domain consistency, compliance and attribution.

Inputs are plain columns (:class:`Observed`, one per domain of the contract's path, None when
the domain reported nothing) and the signed terms (:class:`ContractTerms`); the output is an
:class:`Analysis` of frozen values. No signatures here: :class:`~federation.audit.ledger.AuditLedger`
verifies, this module judges.

Notes
-----
**Consistency.** Adjacent domains ``i`` and ``i+1`` record the same packets (same ``packet_id``):
for a packet ``i`` delivered, :math:`\\mathrm{ingress}_{i+1} = \\mathrm{egress}_i + \\ell_i`
with :math:`\\ell_i` the link delay between them (0 in the data plane, whose domains count their
propagation in their own sojourn). A packet with
:math:`|\\mathrm{ingress}_{i+1} - \\mathrm{egress}_i - \\ell_i| > \\tau` (tolerance ``tau`` s) is a
contradiction, and the finding (``inconsistent``) names domain ``i``: its egress is what the
neighbour contradicts (a domain that under-reports its delay shifts its egress earlier). Times
alone cannot tell that from ``i+1`` shifting its *ingress* later (the same gap on the same link),
so the finding's sentence says so; the threat model is the former. Domain ``i``'s
delays are then re-measured with the neighbour's witness,
:math:`\\mathrm{egress}_i := \\mathrm{ingress}_{i+1} - \\ell_i`, before it is judged. A packet
``i`` delivered whose arrival time at ``i+1`` lies in a window ``i+1`` reported, but which
``i+1`` never reported, is ``missing-packets`` naming ``i+1``. The last domain's egress is held
against the tenant's receipts when the tenant reports them (a chain signed with the tenant's key,
``domain_id`` = the tenant id); otherwise it has no witness.

**Compliance.** Domain ``i`` signed ``(d_i, eps_i)``: its delays over the tenant's packets in
ingress-time order, a lost packet as infinite, :math:`X_k = D_{i,k}` (:math:`\\infty` if lost),
go to ``tail_probability_of(X, d_i)`` of :mod:`federation.stats` (the exceedance indicator
:math:`[X_k > d_i]` = lost or late; queueing delays are autocorrelated, and the clustering of
exceedances is measured at lower delay levels of the same series, so that a rare or absent
exceedance can be judged: method ``batch-means clopper-pearson, clusters of lower levels``; with
enough exceedances of ``d_i`` itself, batch means at ``d_i``: ``batch-means clopper-pearson``),
and ``judge(estimate, eps_i, level)``: COMPLIANT when the interval lies at or below
:math:`\\epsilon_i`, VIOLATING when above, INCONCLUSIVE otherwise. A domain named by a finding
(other than a reorder or a replay, which lose nothing) or without telemetry is never COMPLIANT:
a COMPLIANT verdict becomes INCONCLUSIVE (never "compliant by silence").

**End to end.** Packets entering the first domain whose fate is known: lost somewhere (or
vanished between two domains), or delivered by the last domain with delay
:math:`D = \\mathrm{egress}_{n} - \\mathrm{ingress}_{1}`. Against the contract: delay
(:math:`D > d`, budget :math:`\\epsilon_{delay}`; from the delays, a packet not delivered never
late), loss, error (a wrong answer delivered) and total (any of them, budget
:math:`\\epsilon_{total}`; the end-to-end verdict; from the delays with a lost or wrong packet as
infinite). Delay and total use ``tail_probability_of`` as above; loss and error, which have no
delay series, ``tail_probability`` of their indicators.

**Attribution.** A violating packet's responsibility is shared equally among the ``k`` domains
that exceeded their ``d_i`` for it, lost it, or answered it wrongly (``1/k`` each). Since
:math:`\\sum_i d_i \\le d`, a late packet exceeded at least one :math:`d_i` unless a link delay
ate the budget; what no domain exceeded is ``unattributed``. A domain's ``tail_risk_share`` is
its summed shares over the number of violating packets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from federation.audit.chain import HARMLESS, Batch, Finding, FindingKind
from federation.errors import InputError
from federation.stats import judge, tail_probability, tail_probability_of, tail_quantiles

__all__ = [
    "QUANTILES",
    "DomainTerms",
    "ContractTerms",
    "Observed",
    "observe",
    "Quantile",
    "RateResult",
    "DomainResult",
    "Analysis",
    "analyse",
    "check_level",
]

#: Delay quantiles reported per domain and end to end.
QUANTILES: tuple[float, ...] = (0.99, 0.999)



@dataclass(frozen=True)
class DomainTerms:
    """What domain ``domain_id`` signed in its grant: ``d_i`` (s) and ``eps_i``."""

    domain_id: str
    delay_budget_s: float
    epsilon: float


@dataclass(frozen=True)
class ContractTerms:
    """A contract's path (``domains``, in order) and the tenant's end-to-end budgets.

    ``deadline_s`` is ``d`` (s); ``epsilon_delay``, ``loss``, ``error`` and ``epsilon_total`` the
    probabilities the offer's bound promises (``ServiceContract.offer.bound``).
    """

    contract_id: str
    tenant_id: str
    domains: tuple[DomainTerms, ...]
    deadline_s: float
    epsilon_delay: float
    loss: float
    error: float
    epsilon_total: float


@dataclass(frozen=True, eq=False)
class Observed:
    """One tenant's packets in one domain, sorted by ``packet_id``; ``windows`` (k, 2) s."""

    packet_id: np.ndarray
    ingress: np.ndarray
    egress: np.ndarray
    lost: np.ndarray
    error: np.ndarray
    windows: np.ndarray

    def __len__(self) -> int:
        return len(self.packet_id)

    def covers(self, t: np.ndarray) -> np.ndarray:
        """Whether each time ``t`` (s) lies in a reported window ``[start, end)``."""
        if len(self.windows) == 0:
            return np.zeros(len(t), bool)
        w = self.windows[np.argsort(self.windows[:, 0], kind="stable")]
        i = np.searchsorted(w[:, 0], t, side="right") - 1
        ok = i >= 0
        out = np.zeros(len(t), bool)
        out[ok] = t[ok] < np.maximum.accumulate(w[:, 1])[i[ok]]
        return out


def observe(batches: Sequence[Batch], tenant_id: str) -> Observed | None:
    """The packets of ``tenant_id`` in a domain's batches (None when it reported no batch at all)."""
    if not batches:
        return None
    parts = []
    for b in batches:
        if tenant_id not in b.tenants:
            continue
        m = b.tenant_index == b.tenants.index(tenant_id)
        parts.append((b.packet_id[m], b.ingress[m], b.egress[m], b.lost[m], b.error[m]))
    cols = [np.concatenate([p[k] for p in parts]) if parts else np.empty(0, t)
            for k, t in enumerate((np.uint64, np.float64, np.float64, bool, bool))]
    order = np.argsort(cols[0], kind="stable")
    windows = np.array([b.window for b in batches], np.float64).reshape(-1, 2)
    ids, ingress, egress, lost, error = (c[order] for c in cols)
    return Observed(ids, ingress, egress, lost, error, windows)


@dataclass(frozen=True)
class Quantile:
    """A delay quantile at probability ``p``: value and interval (s), or inconclusive."""

    p: float
    value_s: float
    low_s: float
    high_s: float
    conclusive: bool
    method: str


@dataclass(frozen=True)
class RateResult:
    """A rate ``events / n`` judged against ``budget``: interval at the analysis' level, verdict."""

    name: str
    budget: float
    events: int
    n: int
    low: float
    high: float
    verdict: str
    method: str
    n_eff: float

    @property
    def rate(self) -> float:
        return self.events / self.n if self.n else math.nan


@dataclass(frozen=True)
class DomainResult:
    """One domain's verdict against its grant, its quantiles and its share of the violations."""

    terms: DomainTerms
    exceedance: RateResult
    quantiles: tuple[Quantile, ...]
    attributed: float
    share: float
    findings: tuple[Finding, ...]

    @property
    def verdict(self) -> str:
        return self.exceedance.verdict


@dataclass(frozen=True)
class Analysis:
    """Everything a report says about one contract (see the module Notes)."""

    terms: ContractTerms
    level: float
    domains: tuple[DomainResult, ...]
    budgets: tuple[RateResult, ...]  # delay, loss, error, total
    quantiles: tuple[Quantile, ...]
    packets: int
    violations: int
    unattributed: float
    window: tuple[float, float]
    findings: tuple[Finding, ...] = field(default=())

    @property
    def verdict(self) -> str:
        """The end-to-end verdict (the ``total`` budget's)."""
        return self.budgets[-1].verdict


def check_level(level: float) -> float:
    """``level`` as a float in (0, 1), else :class:`InputError` naming it ``confidence``."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise InputError(f"confidence(={level!r}) must be in (0, 1)")
    return float(level)


def _rate(name: str, events: np.ndarray, budget: float, level: float, blocked: bool,
          samples: np.ndarray | None = None, threshold: float = math.nan) -> RateResult:
    """``events`` (in time order) judged against ``budget``; from ``samples > threshold`` when given.

    With the samples (delays in time order, inf where the packet counts as exceeding whatever its
    delay, -inf where it never does) the estimate is :func:`~federation.stats.tail_probability_of`,
    which can judge rare and absent exceedances; ``events`` must then be ``samples > threshold``.
    """
    est = (tail_probability(events, independent=False) if samples is None
           else tail_probability_of(samples, threshold, independent=False))
    iv = est.interval(level)
    verdict = str(judge(est, budget, level)) if len(events) else "INCONCLUSIVE"
    if blocked and verdict == "COMPLIANT":
        verdict = "INCONCLUSIVE"
    return RateResult(name, float(budget), int(np.count_nonzero(events)), len(events), float(iv.low),
                      float(iv.high), verdict, str(est.method), float(getattr(est, "n_eff", len(events))))


def _quantiles(delays: np.ndarray, level: float) -> tuple[Quantile, ...]:
    """Quantiles of delays in time order (s; a lost packet counts as inf)."""
    if len(delays) == 0:
        return tuple(Quantile(p, math.nan, math.nan, math.nan, False, "none") for p in QUANTILES)
    qs = tail_quantiles(delays, QUANTILES, independent=False)
    out = []
    for p in QUANTILES:
        q = qs[p]
        iv = q.interval(level)
        out.append(Quantile(p, float(q.value), float(iv.low), float(iv.high), bool(q.conclusive(level)),
                            str(q.method)))
    return tuple(out)


def _find(ids: np.ndarray, sorted_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``ids`` in ``sorted_ids`` and whether they are there."""
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.minimum(pos, max(len(sorted_ids) - 1, 0))
    found = sorted_ids[pos] == ids if len(sorted_ids) else np.zeros(len(ids), bool)
    return pos, found


def _check_link(a: Observed, b: Observed, name_a: str, name_b: str, link: float, tolerance_s: float,
                egress_a: np.ndarray, findings: list[Finding]) -> np.ndarray:
    """Hold ``a``'s egress against ``b``'s ingress (``link`` s later); returns the ids that vanished.

    Contradicted egress times are replaced in ``egress_a`` by the neighbour's witness; the
    findings are appended to ``findings``.
    """
    sidx = np.flatnonzero(~a.lost)
    pos, found = _find(a.packet_id[sidx], b.packet_id)
    m = sidx[found]
    gap = b.ingress[pos[found]] - a.egress[m] - link
    bad = np.abs(gap) > tolerance_s
    if bad.any():
        early = int(np.count_nonzero(gap[bad] > 0))
        why = (f"{early} reported leaving before {name_b} saw them arrive: {name_a} under-reports its delay, "
               f"unless {name_b} reports them arriving late" if early
               else f"{name_a} reports them leaving after {name_b} saw them arrive")
        findings.append(Finding(
            FindingKind.INCONSISTENT, name_a,
            f"egress times of {name_a} contradicted by the ingress times of {name_b} for {int(bad.sum())} of "
            f"{len(gap)} packets (median disagreement {float(np.median(gap[bad])):.6g} s; {why})",
            packets=int(bad.sum())))
        egress_a[m[bad]] = b.ingress[pos[found][bad]] - link
    t = a.egress[sidx[~found]] + link
    gone = b.covers(t)
    if gone.any():
        findings.append(Finding(
            FindingKind.MISSING_PACKETS, name_b,
            f"{int(gone.sum())} packets {name_a} delivered inside the windows {name_b} reported were never "
            f"reported by {name_b}", packets=int(gone.sum())))
    return a.packet_id[sidx[~found][gone]]


def analyse(
    terms: ContractTerms,
    observed: Sequence[Observed | None],
    level: float = 0.95,
    *,
    receiver: Observed | None = None,
    chain_findings: Sequence[Finding] = (),
    link_delay_s: Sequence[float] | None = None,
    tolerance_s: float = 1e-6,
) -> Analysis:
    """Judge one contract (see the module Notes).

    Parameters
    ----------
    terms
        The contract's path and budgets.
    observed
        Per domain of ``terms.domains`` (same order): the tenant's packets, or None if the domain
        reported nothing.
    level
        Confidence level of every interval, in (0, 1).
    receiver
        The tenant's own receipts, if it reports them (``ingress`` = arrival at the tenant): the
        downstream witness of the last domain's egress.
    chain_findings
        Findings about the path's domains' batch chains (gaps, tampering, ...), kept in the
        analysis and blocking COMPLIANT verdicts of the domains they name.
    link_delay_s
        Delay of each link ``i -> i+1``, s (default 0: the data plane's).
    tolerance_s
        Largest disagreement between adjacent domains' times that is not a contradiction, s.

    Raises
    ------
    InputError
        ``observed`` or ``link_delay_s`` of the wrong length.
    """
    n = len(terms.domains)
    if len(observed) != n:
        raise InputError(f"observed: {len(observed)} domains given, the contract's path has {n}")
    links = [0.0] * max(n - 1, 0) if link_delay_s is None else [float(x) for x in link_delay_s]
    if len(links) != max(n - 1, 0):
        raise InputError(f"link_delay_s: {len(links)} given for {max(n - 1, 0)} links")
    ids = [t.domain_id for t in terms.domains]
    findings: list[Finding] = list(chain_findings)
    obs = list(observed)
    for i, o in enumerate(obs):
        if o is None or len(o) == 0:
            findings.append(Finding(FindingKind.MISSING_TELEMETRY, ids[i],
                                    f"no telemetry of tenant {terms.tenant_id!r} for contract {terms.contract_id!r}"))
    have = [o is not None and len(o) > 0 for o in obs]
    egress = [o.egress.copy() if o is not None else np.empty(0) for o in obs]  # re-measured below
    vanished: list[np.ndarray] = [np.empty(0, np.uint64) for _ in range(n)]  # ids that vanished entering i
    for i in range(n):
        a = obs[i]
        b, name_b, link = (obs[i + 1], ids[i + 1], links[i]) if i < n - 1 else (receiver, terms.tenant_id, 0.0)
        if a is None or b is None or len(a) == 0 or len(b) == 0:
            continue
        gone = _check_link(a, b, ids[i], name_b, link, tolerance_s, egress[i], findings)
        if i < n - 1:
            vanished[i + 1] = gone
    blocked = {f.domain_id for f in findings if f.kind not in HARMLESS}

    # ---- end to end: the fate of every packet that entered the first domain
    base = next((i for i in range(n) if have[i]), None)
    universe = obs[base].packet_id if base is not None else np.empty(0, np.uint64)  # type: ignore[union-attr]
    U = len(universe)
    alive = np.ones(U, bool)
    lost_e2e = np.zeros(U, bool)
    err_e2e = np.zeros(U, bool)
    resp = np.zeros((n, U), bool)
    last_seen: int | None = None
    for i in range(n):
        if not have[i] or base is None or i < base:
            continue
        o = obs[i]
        assert o is not None
        pos, found = _find(universe, o.packet_id)
        if last_seen is not None:
            gone = alive & ~found
            if last_seen == i - 1 and len(vanished[i]):
                v = np.isin(universe, vanished[i]) & gone
                lost_e2e |= v
                resp[i] |= v
            alive &= found
        last_seen = i
        p = pos[alive]
        d_i = egress[i][p] - o.ingress[p]
        lost_here = o.lost[p]
        idx = np.flatnonzero(alive)
        resp[i, idx] = lost_here | (np.nan_to_num(d_i, nan=math.inf) > terms.domains[i].delay_budget_s)
        resp[i, idx] |= o.error[p] & ~lost_here
        err_e2e[idx] |= o.error[p] & ~lost_here
        lost_e2e[idx[lost_here]] = True
        alive[idx[lost_here]] = False
    delivered = alive if (base == 0 and have[n - 1]) else np.zeros(U, bool)
    if base != 0:
        lost_e2e[:] = False  # what entered the path is unknown
    known = delivered | lost_e2e
    delay = np.full(U, math.nan)
    if delivered.any():
        last = obs[n - 1]
        assert last is not None and base is not None
        pos, _ = _find(universe[delivered], last.packet_id)
        delay[delivered] = egress[n - 1][pos] - obs[base].ingress[delivered]  # type: ignore[union-attr]
    late = delivered & (delay > terms.deadline_s)
    errors = delivered & err_e2e
    total = late | lost_e2e | errors
    order = np.argsort(obs[base].ingress, kind="stable") if base is not None else np.empty(0, np.int64)  # type: ignore[union-attr]
    order = order[known[order]]
    e2e_blocked = bool(blocked) or base != 0 or not have[n - 1]
    delivered_s = np.where(delivered, delay, -math.inf)  # s; a packet not delivered is never late
    late_s = delivered_s[order]
    total_s = np.where(lost_e2e | errors, math.inf, delivered_s)[order]  # lost or wrong: always counts
    d = terms.deadline_s
    budgets = (
        _rate("delay", late[order], terms.epsilon_delay, level, e2e_blocked, late_s, d),
        _rate("loss", lost_e2e[order], terms.loss, level, e2e_blocked),
        _rate("error", errors[order], terms.error, level, e2e_blocked),
        _rate("total", total[order], terms.epsilon_total, level, e2e_blocked, total_s, d),
    )
    viol = np.flatnonzero(total)
    k = resp[:, viol].sum(axis=0)
    shares = np.where(k > 0, resp[:, viol] / np.maximum(k, 1), 0.0).sum(axis=1) if len(viol) else np.zeros(n)
    unattributed = float(np.count_nonzero(k == 0)) / len(viol) if len(viol) else 0.0

    # ---- per domain, against its grant
    results = []
    for i, t in enumerate(terms.domains):
        o = obs[i]
        mine = tuple(f for f in findings if f.domain_id == t.domain_id)
        if not have[i]:
            ex = RateResult("exceedance", t.epsilon, 0, 0, 0.0, 1.0, "INCONCLUSIVE", "none", 0.0)
            results.append(DomainResult(t, ex, _quantiles(np.empty(0), level), float(shares[i]), 0.0, mine))
            continue
        assert o is not None
        d_i = egress[i] - o.ingress
        x_i = np.where(o.lost, math.inf, np.nan_to_num(d_i, nan=math.inf))  # s; a lost packet exceeds
        tord = np.argsort(o.ingress, kind="stable")
        ex = _rate("exceedance", x_i[tord] > t.delay_budget_s, t.epsilon, level, t.domain_id in blocked,
                   x_i[tord], t.delay_budget_s)
        share = float(shares[i]) / len(viol) if len(viol) else 0.0
        results.append(DomainResult(t, ex, _quantiles(np.where(o.lost, math.inf, d_i)[tord], level),
                                    float(shares[i]), share, mine))
    windows = [o.windows for o in obs if o is not None and len(o.windows)]
    w = np.concatenate(windows) if windows else np.zeros((1, 2))
    e2e_delay = np.where(lost_e2e, math.inf, delay)[order]  # known packets in time order, lost as inf
    return Analysis(terms, level, tuple(results), budgets, _quantiles(e2e_delay, level), int(known.sum()),
                    len(viol), unattributed, (float(w[:, 0].min()), float(w[:, 1].max())), tuple(findings))

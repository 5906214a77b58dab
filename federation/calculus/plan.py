"""Rate planning: the cheapest reserved rates whose composed bound meets a tenant's ``(delay, epsilon)``.

The reverse of :func:`federation.calculus.compose.compose_path`: the broker asks
:func:`plan_rates` for the rates to reserve in every domain of a path, and its guarantee is the
composition's own, ``compose_path(path at these rates, ...).delay <= delay``.

The search (see :func:`plan_rates`, Notes) rests on the bounds *at a fixed theta*, which any
theta makes valid: the MGF tandem bound (:func:`federation.calculus.tandem.tandem_log_bound`) and
the max-plus bound (:func:`federation.calculus.packet.maxplus_log_bound`), evaluated straight from
the group rates in microseconds, by the same implementations the optimised bounds use. The plan
is then corrected on the optimised bounds and checked on the composed delay bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from federation.calculus.arrivals import Arrival, PoissonArrival, TokenBucket
from federation.calculus.bound import Bound, BoundMethod, TandemDetail
from federation.calculus.compose import DomainSlice, delay_bound, packetized, slice_services, violation_bound
from federation.calculus.packet import maxplus_applies, maxplus_log_bound, size_correlation_log
from federation.calculus.roots import bracket_root
from federation.calculus.services import ConstantRate, Service
from federation.calculus.sojourn import fluid_holds, own_log_mgf
from federation.calculus.tandem import tandem_log_bound
from federation.errors import InputError, NoFiniteBound

__all__ = ["plan_rates", "PLAN_MAX_SURROGATE", "PLAN_MAX_BOUNDS", "PLAN_MAX_DELAYS"]

#: Work caps of :func:`plan_rates` (it raises :class:`NoFiniteBound` rather than run longer).
PLAN_MAX_BOUNDS = 240  # evaluations of the theta-optimised violation bound
PLAN_MAX_DELAYS = 12  # evaluations of the composed delay bound (what compose_path returns)
PLAN_MAX_SURROGATE = 4000  # evaluations of the bound at a fixed theta (microseconds each)
_BIG = 1e150  # stands for "infeasible" inside scipy's minimisers (inf makes them produce nan)
_PLAN_LOG_MARGIN = 2e-3  # plan at log(epsilon) - margin: the composed delay then lands below the deadline
_FACTORS = (1.002, 1.01, 1.03, 1.1, 1.3, 2.0, 4.0)  # step 4: common factors of the excess rates tried first

#: A log bound as a function of the group rates (bits/s), non-increasing in every rate.
_LogBound = Callable[[np.ndarray], float]
#: (scale, method, theta) of a direction: the cheapest scale found and the bound that gave it.
_Scan = tuple[float, BoundMethod | None, float]


class _WorkCap(NoFiniteBound):
    """plan_rates ran out of its evaluation budget."""


class _Counter:
    """Counts evaluations of one kind and raises :class:`NoFiniteBound` (``_WorkCap``) past its cap."""

    def __init__(self, what: str, cap: int):
        self.what, self.cap, self.n = what, cap, 0

    def tick(self) -> None:
        self.n += 1
        if self.n > self.cap:
            raise _WorkCap(f"plan_rates: no plan found within {self.cap} evaluations of the {self.what}")


def plan_rates(
    path: Sequence[DomainSlice],
    traffic: Arrival,
    *,
    delay: float,
    epsilon: float,
    costs: Sequence[float] | None = None,
    max_rates: Sequence[float] | None = None,
) -> tuple[float, ...]:
    """Cost-minimising reserved rates (bits/s) whose composed bound meets ``(delay, epsilon)``.

    The returned rates satisfy ``compose_path(path with these rates, traffic, epsilon=epsilon).delay
    <= delay`` (the same composed bound, packetizer latencies included), and so also
    ``path_violation_probability(..., delay=delay) <= epsilon``.

    Parameters
    ----------
    path : sequence of DomainSlice
        The domains in order; their ``rate`` fields are ignored (a template).
    traffic : Arrival
        The tenant's traffic (bits, bits/s).
    delay : float
        End-to-end deadline (s), latencies and propagation included.
    epsilon : float
        Delay-violation probability in (0, 1).
    costs : sequence of float, optional
        Price per bit/s of each domain (default 1).
    max_rates : sequence of float, optional
        Cap of each domain's rate (bits/s; default unlimited).

    Returns
    -------
    tuple of float
        One rate (bits/s) per domain, each above the traffic's mean rate.

    Raises
    ------
    NoFiniteBound
        If no rates within ``max_rates`` meet the target (naming the domains), or the work caps
        are reached.
    InputError
        For a bad ``epsilon``, ``costs`` or ``max_rates``, or an empty path.

    Notes
    -----
    Deterministic paths (token bucket, ``service="size"``) have the closed form
    ``r = max(rho, (sigma + (H-1) L)/(delay - sum T_i))`` (``L`` the packet size of a packetized
    flow in continuous time, 0 for fluid traffic: the packetizer latencies ``L/r`` of the ``H-1``
    first hops). Otherwise the deterministic domains share one rate (only the bottleneck enters the
    tandem bound) and every random-service domain has its own; a plan is ``rho + s*w`` for a
    direction ``w`` and a scale ``s``:

    1. the cheapest scale of the equal direction, minimised over ``theta`` of the scale at which
       the bound *at that fixed theta* meets ``epsilon`` (any theta gives a valid bound; the
       fixed-theta MGF tandem and max-plus bounds are computed straight from the rates in
       microseconds): a log grid of theta, then bounded Brent;
    2. the cheapest direction with that theta fixed, then the theta scan again on it; once more
       for two groups (alternating minimisation);
    3. the scale of that direction on the *optimised* bound (min over every method, theta
       optimised as :func:`~federation.calculus.compose.compose_path` does), which corrects a
       theta the optimiser would not resolve and lets methods without a theta (martingale,
       product form) lower the plan;
    4. the composed delay bound (:func:`~federation.calculus.compose.delay_bound`, what
       ``compose_path`` returns) at the plan; if it exceeds ``delay`` (optimiser tolerances), the
       excess rates ``r - rho`` are scaled up by the smallest common factor that meets it.

    The work is capped (:data:`PLAN_MAX_SURROGATE`, :data:`PLAN_MAX_BOUNDS`,
    :data:`PLAN_MAX_DELAYS` evaluations, about a second in the worst case): past a cap
    :class:`NoFiniteBound` is raised, except in the direction search of step 2, which then keeps
    the best plan found so far. Typical time on a 3-hop path with one compute domain: 10-40 ms.
    """
    # a domain whose requests cost work_bits (DomainSlice.service_rate) is planned in the flow's
    # own bits -- the rate r' = r*k, k = service_rate/rate, at the price c/k and the cap cap*k --
    # and its rate converted back: the same services, costs and caps
    k = np.array([replace(s, rate=1.0).service_rate(traffic) for s in path])
    path = [replace(s, work_bits=0.0) for s in path] if np.any(k != 1.0) else path
    c, cap = _check_request(path, traffic, delay, epsilon, costs, max_rates, k)
    if traffic.deterministic and all(s.service == "size" for s in path):
        return _plan_deterministic(path, traffic, delay, epsilon, cap)
    rates = _Planner(path, traffic, delay, epsilon, c, cap).plan()
    return tuple(float(r / f) for r, f in zip(rates, k))


def _check_request(
    path: Sequence[DomainSlice],
    traffic: Arrival,
    delay: float,
    epsilon: float,
    costs: Sequence[float] | None,
    max_rates: Sequence[float] | None,
    k: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(costs, caps) as arrays, after the checks of :func:`plan_rates` (raises its errors); with
    ``k``, per domain, in the flow's own bits (``costs / k``, ``caps * k``)."""
    if not 0.0 < epsilon < 1.0:
        raise InputError(f"epsilon(={epsilon!r}) must be in (0, 1)")
    n = len(path)
    if n == 0:
        raise InputError("the path has no domains")
    c = np.ones(n) if costs is None else np.asarray(costs, dtype=float)
    if c.shape != (n,) or np.any(c <= 0):
        raise InputError("costs must be one positive number per domain")
    cap = np.full(n, np.inf) if max_rates is None else np.asarray(max_rates, dtype=float)
    if cap.shape != (n,) or np.any(cap <= 0):
        raise InputError("max_rates must be one positive number per domain")
    if k is not None:
        c, cap = c / k, cap * k
    rho = traffic.mean_rate
    for s, m in zip(path, cap):
        if m <= rho:
            raise NoFiniteBound(
                f"domain {s.domain_id!r}: max rate {m:g} bits/s <= traffic mean rate {rho:g} bits/s"
            )
    lat = sum(s.latency + s.propagation_delay for s in path)
    if delay <= lat:
        raise NoFiniteBound(f"delay {delay:g} s is not above the path's latencies ({lat:g} s)")
    return c, cap


def _plan_deterministic(
    path: Sequence[DomainSlice], traffic: Arrival, delay: float, epsilon: float, cap: np.ndarray
) -> tuple[float, ...]:
    """The closed form of a token bucket through rate-latency domains: one rate for all."""
    n = len(path)
    lat = sum(s.latency + s.propagation_delay for s in path)
    pkt = 0.0
    if traffic.time == "continuous" and n >= 2 and isinstance(traffic, TokenBucket) and traffic.packet_size_ > 0:
        pkt = (n - 1) * traffic.packet_size_  # packetizer latencies L/r of all hops but the last
    sig = traffic.beta(1.0)
    need = max((sig + pkt) / (delay - lat), traffic.mean_rate * (1.0 + 1e-9))  # compose_path needs rate > rho
    for _ in range(64):  # no rounding above the deadline: check what compose_path computes
        planned = [replace(s, rate=float(need)) for s in path]
        if delay_bound(traffic, slice_services(planned, traffic), epsilon).delay <= delay:
            break
        need *= 1.0 + 1e-14
    for s, m in zip(path, cap):
        if need > m:
            raise NoFiniteBound(f"domain {s.domain_id!r}: needs {need:g} bits/s > max rate {m:g} bits/s")
    return tuple(float(need) for _ in path)


def _infinite(v: np.ndarray) -> float:
    """The log bound at a theta with no finite bound."""
    return math.inf


class _TandemAtTheta:
    """The fixed-theta MGF tandem log bound (:func:`tandem_log_bound`) as a function of the group rates.

    What :func:`~federation.calculus.tandem.tandem_log_at` gives on the packetized services of
    the rates, without building them: a constant-rate hop has ``gamma = theta*r``, an
    exponential-service hop ``gamma = r*(1 - exp(-theta*L))/L`` (continuous time) or
    ``log(1 + theta*r)`` (discrete time); the deterministic domains, merged, are the last hop.
    """

    def __init__(self, planner: _Planner, theta: float, kappa: float, beta: float):
        self.p, self.theta, self.kappa, self.beta = planner, theta, kappa, beta
        size = planner.traffic.packet_size
        self.per_rate = math.nan if planner.discrete else -math.expm1(-theta * size) / size
        self.own = own_log_mgf(planner.traffic, theta)

    def __call__(self, v: np.ndarray) -> float:
        p, theta = self.p, self.theta
        p.n_surr.tick()
        vs = v.tolist()
        n_exp0 = 1 if p.det else 0  # v[0] is the shared rate of the deterministic domains
        gam = [math.log1p(theta * x) if p.discrete else x * self.per_rate for x in vs[n_exp0:]]
        dv = p.delay - p.lat_sum
        if p.det:
            gam.append(theta * vs[0])
            dv -= p.pk_count * p.pk / vs[0]
        if dv < 0:
            return 0.0
        if not all(g > self.kappa for g in gam):
            return math.inf
        # + a Poisson packet's own size, as the composed bound (federation.calculus.sojourn)
        return tandem_log_bound(self.kappa, self.beta, gam, dv, p.discrete)[0] + self.own


class _MaxplusAtTheta:
    """The fixed-theta max-plus log bound (:func:`maxplus_log_bound`) as a function of the group rates.

    A packet's service time of ``L`` bits has ``log M = theta*L/r`` at a constant-rate hop and
    ``-log(1 - theta/mu)``, ``mu = r/L``, at an exponential-service hop (``inf`` if ``theta >= mu``);
    an exponential size of mean ``L`` has ``-log(1 - theta*L/r)`` at a constant-rate hop, and the
    size's correlation over those hops (:func:`~federation.calculus.packet.size_correlation_log`).
    """

    def __init__(self, planner: _Planner, theta: float, lam: float):
        self.p, self.theta, self.lam = planner, theta, lam
        self.exp_size = isinstance(planner.traffic, PoissonArrival) and planner.traffic.size == "exp"

    def __call__(self, v: np.ndarray) -> float:
        p, theta = self.p, self.theta
        p.n_surr.tick()
        vs = v.tolist()
        size = p.traffic.packet_size
        corr = 0.0
        if not p.det:
            log_mgfs = []
        elif self.exp_size:
            if not theta * size < vs[0]:
                return math.inf
            log_mgfs = [-math.log1p(-theta * size / vs[0])] * len(p.det)
            corr = size_correlation_log(size, [vs[0]] * len(p.det), theta)
            if not math.isfinite(corr):
                return math.inf
        else:
            log_mgfs = [theta * size / vs[0]] * len(p.det)
        for x in vs[1 if p.det else 0:]:
            mu = x / size
            if not theta < mu:
                return math.inf
            log_mgfs.append(-math.log1p(-theta / mu))
        return maxplus_log_bound(self.lam, log_mgfs, p.delay - p.lat_sum, theta, correlation=corr)


class _Planner:
    """The search of :func:`plan_rates` for a random path (steps 1-4 of its Notes).

    The rates are grouped: the deterministic domains share one rate (group 0 when there are
    any), every exponential-service domain has its own. A plan is the vector ``v`` of group
    rates (bits/s), ``v = rho + s*w`` for a direction ``w`` (``w[0] = 1``) and a scale ``s``.
    """

    def __init__(self, path: Sequence[DomainSlice], traffic: Arrival, delay: float, epsilon: float,
                 costs: np.ndarray, caps: np.ndarray):
        self.path, self.traffic, self.delay, self.epsilon = path, traffic, delay, epsilon
        n = len(path)
        self.det = [i for i, s in enumerate(path) if s.service != "exp"]
        self.groups: list[list[int]] = ([self.det] if self.det else []) + [
            [i] for i, s in enumerate(path) if s.service == "exp"
        ]
        self.k = len(self.groups)
        self.gcost = np.array([costs[g].sum() for g in self.groups])
        self.gcap = np.array([caps[g].min() for g in self.groups])
        self.rho = traffic.mean_rate
        self.target = math.log(epsilon) - _PLAN_LOG_MARGIN
        self.n_bound = _Counter("violation bound", PLAN_MAX_BOUNDS)
        self.n_delay = _Counter("composed delay bound", PLAN_MAX_DELAYS)
        self.n_surr = _Counter("fixed-theta bound", PLAN_MAX_SURROGATE)
        self.discrete = traffic.time == "discrete"
        self.lat_sum = sum(s.latency + s.propagation_delay for s in path)
        self.pk = packetized(traffic, [ConstantRate(1.0, 0.0, traffic.time)] * 2)[0].latency  # L (0: none)
        self.pk_count = sum(1 for i, s in enumerate(path) if s.service != "exp" and i < n - 1)  # packetizing
        # generous rates: the theta range only grows with the rates
        self.big = np.where(np.isfinite(self.gcap), self.gcap, self.rho * 1e3)
        big_services = self.services_of(self.big)
        # the fluid MGF tandem bound does not hold for random packet sizes through several hops
        self.methods = [BoundMethod.MGF_TANDEM] if fluid_holds(traffic, big_services) else []
        if delay > self.lat_sum and maxplus_applies(traffic, big_services):
            self.methods.append(BoundMethod.MGF_MAXPLUS)
        self.ranges = {m: self.theta_hi(m) for m in self.methods}

    def rates_of(self, v: np.ndarray) -> np.ndarray:
        """The domains' rates (bits/s) of the group rates ``v``."""
        r = np.empty(len(self.path))
        for g, x in zip(self.groups, v):
            r[g] = x
        return r

    def services_of(self, v: np.ndarray) -> list[Service]:
        """The calculus services of the path at the group rates ``v``."""
        return slice_services([replace(s, rate=float(x)) for s, x in zip(self.path, self.rates_of(v))], self.traffic)

    def full(self, v: np.ndarray) -> tuple[float, Bound | None]:
        """(log of the optimised violation bound at ``delay`` (min over the methods), the bound)."""
        self.n_bound.tick()
        try:
            b = violation_bound(self.traffic, self.services_of(v), self.delay)
        except NoFiniteBound:
            return math.inf, None
        if isinstance(b.detail, TandemDetail):  # the MGF tandem bound: its unclipped log
            return float(b.detail.log_epsilon), b
        return (math.log(b.epsilon) if b.epsilon > 0 else -math.inf), b

    def full_log(self, v: np.ndarray) -> float:
        return self.full(v)[0]

    def composed(self, v: np.ndarray) -> float:
        """The composed delay bound (s) at ``epsilon``: what ``compose_path`` returns."""
        self.n_delay.tick()
        try:
            return float(delay_bound(self.traffic, self.services_of(v), self.epsilon).delay)
        except NoFiniteBound:
            return math.inf

    def surrogate(self, method: BoundMethod, theta: float) -> _LogBound:
        """The log bound of ``method`` at the fixed ``theta`` as a function of the group rates."""
        traffic = self.traffic
        if method == BoundMethod.MGF_TANDEM:
            if not 0 < theta < traffic.theta_max:
                return _infinite
            kap = traffic.kappa(theta)
            if not math.isfinite(kap):
                return _infinite
            return _TandemAtTheta(self, theta, kap, traffic.beta(theta))
        assert isinstance(traffic, PoissonArrival)  # MGF_MAXPLUS: Poisson packets
        if not theta > 0:
            return _infinite
        return _MaxplusAtTheta(self, theta, traffic.rate)

    def scale_limit(self, w: np.ndarray) -> float:
        """The largest scale of direction ``w`` within the caps."""
        return float(np.min(np.where(np.isfinite(self.gcap), (self.gcap - self.rho) / w, np.inf)))

    def cost_of(self, w: np.ndarray, sc: float) -> float:
        """The cost of the plan ``rho + sc*w`` (``inf`` for an infinite scale)."""
        return float(self.gcost @ (self.rho + sc * w)) if math.isfinite(sc) else math.inf

    @staticmethod
    def direction(u: np.ndarray) -> np.ndarray:
        """The direction of log-coordinates ``u`` (``k - 1``; the first group's weight is 1)."""
        return np.exp(np.concatenate([[0.0], np.atleast_1d(u)]))

    def infeasible(self) -> NoFiniteBound:
        which = ", ".join(self.path[g[0]].domain_id for g in self.groups)
        return NoFiniteBound(f"no rates within max_rates meet delay {self.delay:g} s at epsilon {self.epsilon:g} "
                             f"(domains {which})")

    def cheapest_scale(self, w: np.ndarray, f: _LogBound, rtol: float, guess: float | None = None,
                       growth: float = 1.5) -> float:
        """Smallest ``s`` with ``f(rho + s*w) <= target`` (``inf`` if none within the caps).

        ``f`` must be non-increasing in the rates. From ``guess`` the bracket is grown
        geometrically (factor ``growth``), else from the caps (or ``rho`` without caps) by
        halving/doubling.
        """
        smax = self.scale_limit(w)

        def h(sc: float) -> float:
            return f(self.rho + sc * w) - self.target

        if guess is None or not 0 < guess:
            guess, step = (smax if math.isfinite(smax) else max(self.rho, 1e-300)), 2.0
        else:
            guess, step = min(guess, smax), growth
        hg = h(guess)
        bracket = _bracket_down(h, guess, hg, step) if hg <= 0 else _bracket_up(h, guess, hg, step, smax)
        if isinstance(bracket, tuple):
            return bracket_root(h, *bracket, rtol)
        return math.inf if bracket is None else bracket

    def theta_hi(self, method: BoundMethod) -> float | None:
        """The largest theta with a finite fixed-theta bound at generous rates (``None``: none)."""
        def finite(t: float) -> bool:
            return math.isfinite(self.surrogate(method, t)(self.big))

        size = self.traffic.packet_size
        t = 1.0 / size if method == BoundMethod.MGF_TANDEM else self.rho / size
        if finite(t):
            for _ in range(60):
                if not finite(t * 2.0):
                    break
                t *= 2.0
            else:
                return t
        else:
            for _ in range(200):
                t /= 2.0
                if finite(t):
                    break
            else:
                return None
        lo, hi = t, 2.0 * t
        for _ in range(12):
            m = math.sqrt(lo * hi)
            lo, hi = (m, hi) if finite(m) else (lo, m)
        return lo

    def scan(self, w: np.ndarray, guess: float | None, around: dict[BoundMethod, float] | None) -> _Scan:
        """(cheapest scale, method, theta) of direction ``w``: min over theta of the fixed-theta scale.

        ``around`` gives a theta per method to scan near (three points a factor ``e`` apart)
        instead of the full log grid of six decades below the method's theta range.
        """
        best: _Scan = (math.inf, None, math.nan)
        for m in self.methods:
            th_hi = self.ranges[m]
            if th_hi is None:
                continue
            sc, theta = self._scan_method(w, m, th_hi, guess, None if around is None else around.get(m))
            if sc < best[0]:
                best = (sc, m, theta)
        return best

    def _scan_method(self, w: np.ndarray, m: BoundMethod, th_hi: float, guess: float | None,
                     near: float | None) -> tuple[float, float]:
        """(cheapest scale, theta) of ``w`` on the fixed-theta bound of ``m``: a grid, then bounded Brent."""
        s_of = _ScaleOfLogTheta(self, w, m, guess)
        if near is not None:
            c0 = math.log(near)
            xs = np.array([c0 - 1.0, c0, c0 + 1.0])
        else:
            xs = np.linspace(math.log(th_hi) - 6 * math.log(10), math.log(th_hi), 10)
        vals = [s_of(float(x)) for x in xs]
        i = int(np.argmin(vals))
        if not math.isfinite(vals[i]):
            return math.inf, math.nan
        a_, b_ = float(xs[max(i - 1, 0)]), float(xs[min(i + 1, len(xs) - 1)])
        b_ = min(b_, math.log(th_hi))
        x_best = float(xs[i])
        if b_ > a_:
            res = minimize_scalar(lambda x: min(s_of(x), _BIG), bounds=(a_, b_), method="bounded",
                                  options={"xatol": 2e-2, "maxiter": 10})
            if res.fun < vals[i]:
                x_best = float(res.x)
        return s_of(x_best), math.exp(x_best)

    def plan(self) -> tuple[float, ...]:
        """Steps 1-4: the rates (bits/s) of the domains."""
        u, w, sc, meth, th = self.start()
        w, sc = self.improve(u, w, sc, meth, th)
        # step 3: the scale of the chosen direction on the optimised bound itself (min over all
        # the methods, theta optimised as compose_path does): corrects the fixed-theta scan both
        # ways (a theta the optimiser does not resolve; methods without a theta that do better).
        s2 = self.cheapest_scale(w, self.full_log, 1e-3, sc, growth=1.05)
        if not math.isfinite(s2):
            raise self.infeasible()
        return tuple(float(x) for x in self.rates_of(self.meet_composed(self.rho + s2 * w)))

    def start(self) -> tuple[np.ndarray, np.ndarray, float, BoundMethod, float]:
        """Step 1: (u, w, scale, method, theta) of the equal direction (or the best one-sided one)."""
        k = self.k
        u = np.zeros(k - 1)
        w = self.direction(u)
        sc, meth, th = self.scan(w, None, None)
        if not math.isfinite(sc) and k > 1:
            # the equal direction may hit a cap first: put the excess where the caps allow
            for i in range(k):
                wi = np.full(k, 1e-3)
                wi[i] = 1.0
                s2, m2, t2 = self.scan(wi, None, None)
                if self.cost_of(wi, s2) < self.cost_of(w, sc):
                    w, sc, meth, th = wi, s2, m2, t2
                    u = np.log(wi[1:] / wi[0])
        if math.isfinite(sc):
            assert meth is not None
            return u, w, sc, meth, th
        # the theta grid missed a narrow window: the optimised bound on the equal direction
        u = np.zeros(k - 1)
        w = self.direction(u)
        sc = self.cheapest_scale(w, self.full_log, 1e-3)
        if not math.isfinite(sc):
            raise self.infeasible()
        b0 = self.full(self.rho + sc * w)[1]
        if b0 is None or b0.method not in self.methods or not math.isfinite(b0.theta):
            return u, w, sc, BoundMethod.MGF_TANDEM, (self.ranges.get(BoundMethod.MGF_TANDEM) or 1.0) * 0.5
        return u, w, sc, b0.method, b0.theta

    def improve(self, u: np.ndarray, w: np.ndarray, sc: float, meth: BoundMethod, th: float
                ) -> tuple[np.ndarray, float]:
        """Step 2: (direction, scale) after the alternating direction/theta search (``k > 1``).

        Only improves a feasible plan: out of budget, the best plan so far is kept.
        """
        if self.k < 2:
            return w, sc
        best_cost, best_v = self.cost_of(w, sc), self.rho + sc * w
        thetas = {meth: th}
        try:
            for _ in range(2 if self.k == 2 else 1):
                u_new = self._cheapest_direction(u, self.surrogate(meth, th), sc, best_cost)
                w_new = self.direction(u_new)
                s_new, m_new, t_new = self.scan(w_new, float(np.min((best_v - self.rho) / w_new)), thetas)
                c_new = self.cost_of(w_new, s_new)
                if not c_new < best_cost * (1 - 1e-4):
                    break
                assert m_new is not None
                best_cost, best_v, u, w, sc, meth, th = c_new, self.rho + s_new * w_new, u_new, w_new, s_new, m_new, t_new
                thetas[meth] = th
        except _WorkCap:
            pass
        return w, sc

    def _cheapest_direction(self, u: np.ndarray, f: _LogBound, guess: float, best_cost: float) -> np.ndarray:
        """The log-coordinates of the cheapest direction on the fixed-theta bound ``f``, from ``u``."""
        def cost_at(x: np.ndarray | float) -> float:
            ww = self.direction(np.asarray(x))
            return min(self.cost_of(ww, self.cheapest_scale(ww, f, 1e-3, guess)), _BIG)

        if self.k == 2:
            c0 = float(u[0])
            res = minimize_scalar(cost_at, bounds=(c0 - 3.0, c0 + 3.0), method="bounded",
                                  options={"xatol": 1e-2, "maxiter": 25})
            return np.array([res.x])
        res = minimize(cost_at, u, method="Nelder-Mead",
                       options={"xatol": 1e-2, "fatol": 1e-4 * best_cost, "maxfev": 20 * self.k})
        return np.asarray(res.x)

    def meet_composed(self, v: np.ndarray) -> np.ndarray:
        """Step 4: the group rates ``rho + fac*(v - rho)`` with the smallest common factor ``fac >= 1``
        (to 0.1 %) at which the composed delay bound meets the deadline."""
        if self.composed(v) <= self.delay:
            return v
        excess = v - self.rho
        fmax = self.scale_limit(excess)
        fac_lo, fac_hi = 1.0, None
        for fac in _FACTORS:
            fac = min(fac, fmax)
            if fac <= fac_lo:
                break
            if self.composed(self.rho + fac * excess) <= self.delay:
                fac_hi = fac
                break
            fac_lo = fac
        if fac_hi is None:
            raise NoFiniteBound(
                f"the composed delay bound stays above delay {self.delay:g} s within max_rates "
                f"(domains {', '.join(self.path[g[0]].domain_id for g in self.groups)})"
            )
        while fac_hi / fac_lo > 1.001 and self.n_delay.n < PLAN_MAX_DELAYS:
            mid = math.sqrt(fac_lo * fac_hi)
            if self.composed(self.rho + mid * excess) <= self.delay:
                fac_hi = mid
            else:
                fac_lo = mid
        return self.rho + fac_hi * excess


class _ScaleOfLogTheta:
    """``x -> cheapest scale of direction w on the fixed-theta bound of method m at theta = e^x``,
    memoised; each finite scale becomes the next search's guess."""

    def __init__(self, planner: _Planner, w: np.ndarray, method: BoundMethod, guess: float | None):
        self.p, self.w, self.method, self.guess = planner, w, method, guess
        self.memo: dict[float, float] = {}

    def __call__(self, x: float) -> float:
        if x not in self.memo:
            sc = self.p.cheapest_scale(self.w, self.p.surrogate(self.method, math.exp(x)), 1e-3, self.guess)
            self.memo[x] = sc
            if math.isfinite(sc):
                self.guess = sc
        return self.memo[x]


def _bracket_down(h: Callable[[float], float], hi: float, f_hi: float, step: float
                  ) -> tuple[float, float, float, float] | float:
    """From ``h(hi) <= 0``, shrink to a bracket ``(lo, hi, h(lo), h(hi))`` with ``h(lo) > 0``
    (steps ``step``, ``step^2``, ... capped at 4x); ``hi`` itself when none is found in 64 steps."""
    for _ in range(64):
        x = hi / step
        fx = h(x)
        if fx > 0:
            return x, hi, fx, f_hi
        hi, f_hi = x, fx
        step = min(step * step, 4.0)
    return hi


def _bracket_up(h: Callable[[float], float], lo: float, f_lo: float, step: float, smax: float
                ) -> tuple[float, float, float, float] | None:
    """From ``h(lo) > 0``, grow to a bracket ``(lo, hi, h(lo), h(hi))`` with ``h(hi) <= 0`` below
    ``smax`` (steps as in :func:`_bracket_down`); ``None`` when there is none."""
    for _ in range(64):
        if lo >= smax:
            return None
        x = min(lo * step, smax)
        fx = h(x)
        if fx <= 0:
            return lo, x, f_lo, fx
        lo, f_lo = x, fx
        step = min(step * step, 4.0)
    return None

"""The stochastic network calculus: arrival and service models, bounds, composition, planning, budgets.

Models: :mod:`.arrivals` and :mod:`.services` (MGF envelopes). Bounds, each returning a
:class:`~.bound.Bound` (:mod:`.bound`: the result types and the :class:`~.bound.BoundMethod` enum):
:mod:`.tandem` (the MGF tandem bound, bursts paid once; Hölder for dependent hops; the
single-hop backlog bound), :mod:`.martingale` (single queues), :mod:`.fifo` (the FIFO residual service at hops shared
with cross traffic, MGF and martingale), :mod:`.packet` (max-plus and
product form for Poisson packets), :mod:`.baseline` (the published-toolbox bound, for
comparison); :mod:`.roots` inverts them (and ports SciPy's ``brentq`` and bounded
``minimize_scalar``, which keeps ``scipy.optimize`` off the bounds' import path). :mod:`.compose`
takes the smallest valid bound and composes a tenant's end-to-end envelope from its domains,
:mod:`.plan` sizes the cheapest reserved rates that meet one, :mod:`.budget` splits the risk
budget per domain, and :mod:`.reference` holds the simulators the bounds are validated against.
Pure: numpy and scipy (the heavy parts of scipy imported only where used).

Dependencies point one way (no cycles; lint-imports checks it): :mod:`.bound` and :mod:`.roots` at
the bottom, the bounds on them (:mod:`.martingale` and :mod:`.baseline` also on :mod:`.tandem`,
:mod:`.fifo` on both),
:mod:`.compose` on the bounds, :mod:`.plan` on :mod:`.compose`.
"""

"""The stochastic network calculus: arrival and service models, bounds, composition, budgets.

Arrivals (:mod:`.arrivals`) and services (:mod:`.services`) carry MGF envelopes; :mod:`.mgf` holds
the single-hop, tandem and packet bounds, :mod:`.martingale` the martingale bounds, :mod:`.compose`
the end-to-end composition of Tail-Risk Envelopes and rate planning, :mod:`.budget` the risk-budget
split, :mod:`.reference` the simulators the bounds are validated against. Pure: numpy and scipy.
"""

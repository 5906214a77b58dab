"""The packet-level Monte-Carlo data plane.

Tenant traffic (:mod:`.traffic`), the engine that carries it through a tandem of domains
(:mod:`.engine`), the compiled per-packet loops (:mod:`.kernels`), impairments
(:mod:`.impairments`) and the per-packet telemetry with its estimators (:mod:`.telemetry`).
"""

"""The packet-level Monte-Carlo data plane.

Tenant traffic (:mod:`.traffic`), the path of domains it crosses and who is admitted
(:mod:`.path`), the engine that carries it through them (:mod:`.engine`), the compiled per-packet loops (:mod:`.kernels`), impairments
(:mod:`.impairments`) and the per-packet telemetry and its streaming summaries (:mod:`.telemetry`).
"""

"""The AIaaS broker: its transactions (:mod:`.logic`: admission, two-phase reservations, release,
clean-up), its client of the domains (:mod:`.client`: the ``DomainClient`` interface and the
group-commit gRPC client), its verified envelope cache (:mod:`.envelopes`), its pure planning
(:mod:`.plan`: config to calculus, priced offers) and its gRPC service and Ray agent (:mod:`.servicer`).
"""

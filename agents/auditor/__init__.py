"""The auditor: its logic (:mod:`.logic`: the ``Auditor`` service over an audit ledger, learning
contracts from the broker), its client of the broker (:mod:`.client`) and its gRPC service and
Ray agent (:mod:`.servicer`). The audit itself (verification, hash chains, findings, verdicts,
signed reports) is the pure core's :mod:`federation.audit`.
"""

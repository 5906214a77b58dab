"""The AIaaS broker: admission, two-phase reservations (:mod:`.logic`) and its gRPC service and
Ray agent (:mod:`.servicer`).
"""

"""A domain controller: its logic (:mod:`.logic`), its SQLite reservation store (:mod:`.store`) and
its gRPC service and Ray agent (:mod:`.servicer`).
"""

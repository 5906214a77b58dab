"""A domain controller: its reservation logic (:mod:`.logic`), its exact capacity books (:mod:`.books`),
its envelope signing (:mod:`.publication`), its SQLite reservation store (:mod:`.store`) and its
gRPC service and Ray agent (:mod:`.servicer`).
"""

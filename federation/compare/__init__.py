"""Bound against simulation on the same model: the compared model and its refusals (:mod:`.model`),
the bound curve (:mod:`.curve`), the simulation and the verdict (:mod:`.run`), its figures
(:mod:`.plots`) and its markdown report (:mod:`.report`).
"""

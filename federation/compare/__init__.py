"""Bound against simulation on the same model: the comparison (:mod:`.run`), its figures
(:mod:`.plots`) and its markdown report (:mod:`.report`).
"""

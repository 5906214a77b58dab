"""Tail-Risk Envelopes: their YAML/dict codec (:mod:`.envelope`), Ed25519 signing (:mod:`.signing`),
the trust store that verifies envelopes and grants (:mod:`.trust`) and key files (:mod:`.keys`).
"""

"""The exception tree of trefed, in one place.

::

    TrefedError                      base of everything trefed raises on purpose
    ├── InputError (ValueError)      bad user input: a spec, a config field, a file; names the culprit
    │   ├── SpecError                a --arrival/--hop/--cross spec (names the offending key)
    │   └── ConfigError              a config file field (names the field path)
    ├── VerificationError            a signed object was rejected; ``.reason`` is a stable code
    └── NoFiniteBound                the calculus cannot bound the model (``.reason`` says why)

Foreign exceptions (yaml, protobuf, cryptography, grpc) are translated at the boundary:
``raise InputError(...) from exc``. The CLI turns every ``InputError`` into exit code 2 with
its message, never a traceback.
"""

from __future__ import annotations

__all__ = ["TrefedError", "InputError", "SpecError", "ConfigError", "VerificationError", "NoFiniteBound"]


class TrefedError(Exception):
    """Base class of every error trefed raises on purpose."""


class InputError(TrefedError, ValueError):
    """Bad user input. The message names the file, spec or field at fault."""


class SpecError(InputError):
    """A malformed ``KIND:key=value,...`` spec; the message names the offending key."""


class ConfigError(InputError):
    """A config file failed validation; the message names the field path."""


class VerificationError(TrefedError):
    """A signed envelope, grant or report was rejected.

    ``reason`` is a stable machine-readable code (see ``federation.tre.signing.Reason``),
    ``detail`` a human sentence.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class NoFiniteBound(TrefedError):
    """The model admits no finite bound (e.g. unstable: arrival rate >= service rate)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

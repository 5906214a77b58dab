"""The exception tree of trefed, in one place.

::

    TrefedError                      base of everything trefed raises on purpose; survives pickling
    ├── InputError (ValueError)      bad user input: a spec, a config field, a file; names the culprit
    │   ├── SpecError                a --arrival/--hop/--cross spec (names the offending key)
    │   └── ConfigError              a config file field (names the field path)
    │       └── FieldError           one field of a message or config: ``.field``, ``.problem``
    ├── VerificationError            a signed object was rejected; ``.reason`` is a stable code
    ├── NotFoundError (LookupError)  an id nobody knows (e.g. a contract the auditor never saw)
    └── NoFiniteBound                the calculus cannot bound the model (``.reason`` says why)

The agents add their RPC errors below :class:`TrefedError` (``agents.errors.ServiceError``).

Foreign exceptions (yaml, protobuf, cryptography, grpc) are translated at the boundary:
``raise InputError(...) from exc``. The CLI turns every ``InputError`` into exit code 2 with
its message, never a traceback.

Every exception survives :mod:`pickle` (Ray carries exceptions between processes) with its
message, its ``args`` and its attributes, whatever its ``__init__`` takes: :class:`TrefedError`
pickles the instance's state instead of calling ``__init__`` again (see
:meth:`TrefedError.__reduce__`), so subclasses with their own constructor need nothing more.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "TrefedError",
    "InputError",
    "SpecError",
    "ConfigError",
    "FieldError",
    "VerificationError",
    "NotFoundError",
    "NoFiniteBound",
]


class TrefedError(Exception):
    """Base class of every error trefed raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as ``cls.__new__(cls, *args)`` plus the instance ``__dict__``.

        The default (``cls(*args)``) calls ``__init__`` with the *message* only, which fails
        for subclasses whose constructor takes other parameters (``FieldError(field,
        problem)``) and loses attributes set from them; here ``__init__`` is not called again
        and ``args``, ``str(exc)`` and every attribute come back as they were.
        """
        return _rebuild, (type(self), self.args), self.__dict__ or None


def _rebuild(cls: type[TrefedError], args: tuple[Any, ...]) -> TrefedError:
    """An instance of ``cls`` with ``args``, without calling ``__init__`` (see ``TrefedError.__reduce__``)."""
    return cls.__new__(cls, *args)


class InputError(TrefedError, ValueError):
    """Bad user input. The message names the file, spec or field at fault."""


class SpecError(InputError):
    """A malformed ``KIND:key=value,...`` spec; the message names the offending key."""


class ConfigError(InputError):
    """A config file failed validation; the message names the field path."""


class FieldError(ConfigError):
    """A field of a message (envelope, grant) or of a config is missing, of the wrong type or out of range.

    The rules that raise it are in :mod:`federation.tre.validate`.

    Attributes
    ----------
    field
        Dotted path of the field, e.g. ``"model.inference.mean_s"``.
    problem
        What is wrong with it (quotes the value).
    """

    def __init__(self, field: str, problem: str) -> None:
        # "rate_bps(=-1.0) must be > 0" when the problem quotes the value, else "rate_bps: problem"
        super().__init__(f"{field}{problem}" if problem.startswith("(=") else f"{field}: {problem}")
        self.field = field
        self.problem = problem


class VerificationError(TrefedError):
    """A signed envelope, grant or report was rejected.

    ``reason`` is a stable machine-readable code (see ``federation.tre.signing.Reason``),
    ``detail`` a human sentence.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class NotFoundError(TrefedError, LookupError):
    """An id nobody knows, e.g. a contract the auditor was never given; the message names it."""


class NoFiniteBound(TrefedError):
    """The model admits no finite bound (e.g. unstable: arrival rate >= service rate)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

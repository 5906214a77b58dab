"""Every exception class of federation/ and agents/ survives pickling: Ray carries exceptions between
processes, and one that cannot be rebuilt reaches the caller as ``UnserializableException``."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

import grpc
import pytest

import agents
import federation
from federation.errors import (
    ConfigError,
    FieldError,
    InputError,
    NoFiniteBound,
    TrefedError,
    VerificationError,
)
from federation.tre.signing import Reason


def _all_exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in (federation, agents):
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for obj in vars(module).values():
                if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


CLASSES = _all_exception_classes()

#: Constructor arguments of the classes whose ``__init__`` takes more than a message.
SAMPLE_ARGS: dict[str, tuple] = {
    "federation.errors.FieldError": ("model.rate_bps", "(=-1.0) must be > 0"),
    "federation.errors.VerificationError": (Reason.EXPIRED, "header.not_after was 3.000 s before now"),
    "federation.errors.NoFiniteBound": ("unstable: arrival rate 1.2 >= service rate 1",),
    "agents.broker.client.DomainCallError": ("access", "Prepare", grpc.StatusCode.UNAVAILABLE, "connection refused"),
    "agents.broker.client._StreamError": (grpc.StatusCode.DEADLINE_EXCEEDED, "batch unanswered after 2 s"),
}

def _init_owner(cls: type[BaseException]) -> str | None:
    """The class whose ``__init__`` ``cls`` uses, if it is not a builtin exception's."""
    for k in cls.__mro__:
        if "__init__" in vars(k):
            return None if k.__module__ == "builtins" else f"{k.__module__}.{k.__qualname__}"
    return None  # pragma: no cover - BaseException defines __init__


def _sample(name: str) -> tuple:
    return SAMPLE_ARGS.get(_init_owner(CLASSES[name]) or "", ("something went wrong: field(=3) must be > 4",))


def test_the_enumeration_finds_the_known_classes():
    assert {"federation.errors.TrefedError", "federation.errors.FieldError", "agents.errors.ServiceError",
            "agents.errors.InvalidArgument", "agents.broker.client.DomainCallError"} <= set(CLASSES)
    assert not any("config._FieldError" in n for n in CLASSES)  # the config uses FieldError itself


def test_every_class_with_its_own_constructor_has_sample_arguments():
    owners = {_init_owner(c) for c in CLASSES.values()} - {None}
    missing = sorted(owners - set(SAMPLE_ARGS))
    assert not missing, f"add constructor arguments for {missing} to SAMPLE_ARGS"


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_round_trips_through_pickle_with_message_and_attributes(name):
    cls = CLASSES[name]
    exc = cls(*_sample(name))
    exc.add_note("a note added on the way")
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        back = pickle.loads(pickle.dumps(exc, protocol=protocol))
        assert type(back) is cls
        assert back.args == exc.args
        assert str(back) == str(exc)
        assert vars(back) == vars(exc)


def test_attributes_survive_not_just_the_message():
    back = pickle.loads(pickle.dumps(FieldError("domains[0].validity_s", "(=1e-09) must be >= 1 s")))
    assert (back.field, back.problem) == ("domains[0].validity_s", "(=1e-09) must be >= 1 s")
    assert isinstance(back, ConfigError) and isinstance(back, InputError) and isinstance(back, ValueError)
    v = pickle.loads(pickle.dumps(VerificationError(Reason.REPLAY, "sequence 3 is not above 4")))
    assert (v.reason, v.detail, str(v)) == (Reason.REPLAY, "sequence 3 is not above 4",
                                           "replay-or-rollback: sequence 3 is not above 4")
    assert pickle.loads(pickle.dumps(NoFiniteBound("unstable"))).reason == "unstable"


def test_a_subclass_with_any_constructor_needs_nothing_more():
    class Odd(TrefedError):
        def __init__(self, a: int, *, b: str) -> None:
            super().__init__(f"odd {a} {b}")
            self.a, self.b = a, b

    globals()["Odd"] = Odd  # pickled by reference: make it importable from this module
    Odd.__qualname__ = "Odd"
    try:
        back = pickle.loads(pickle.dumps(Odd(3, b="x")))
    finally:
        del globals()["Odd"]
    assert (str(back), back.a, back.b) == ("odd 3 x", 3, "x")

"""Each concept lives once: no two modules of the core define a public class of the same name.

(``MMOO`` and ``CorrelatedMMOO`` used to be both the calculus' envelopes and the data plane's
traffic generators; the data plane's are ``MMOOTraffic`` and ``CorrelatedMMOOTraffic``.)
"""

from __future__ import annotations

import collections
import importlib
import inspect
import pkgutil

import federation


def _public_classes() -> dict[str, set[str]]:
    where: dict[str, set[str]] = collections.defaultdict(set)
    for m in pkgutil.walk_packages(federation.__path__, prefix="federation."):
        if m.ispkg:
            continue
        mod = importlib.import_module(m.name)
        for name, obj in vars(mod).items():
            if not name.startswith("_") and inspect.isclass(obj) and obj.__module__ == mod.__name__:
                where[name].add(mod.__name__)
    return where


def test_no_public_class_is_defined_twice():
    twice = {n: sorted(ms) for n, ms in _public_classes().items() if len(ms) > 1}
    assert not twice, f"one name, several classes: {twice}"


def test_the_data_plane_traffic_is_not_named_like_the_calculus_envelopes():
    import federation.calculus.arrivals as arrivals
    import federation.dataplane.traffic as traffic

    assert not set(arrivals.__all__) & set(traffic.__all__)
    assert {"MMOOTraffic", "CorrelatedMMOOTraffic"} <= set(traffic.__all__)

"""``trefed run`` without Ray: phases on stderr as they begin, pure JSON on stdout, tables on 80 columns.

The federation is replaced by a stand-in with the interface ``agents.cli.run`` uses (the real one
is exercised end to end by tests/test_federation_e2e.py); the outcomes are those of a real
``trefed run configs/quickstart.yaml``.
"""

from __future__ import annotations

import inspect
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from agents.cli.main import main
from agents.cli.run import phase_printer, render_outcomes

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")

_EDGE_FULL = ("tenant 'city-traffic' rejected: offer resnet50-int8 via access -> transport -> edge: domain 'edge': "
              "reservable capacity 2.5e+08 bps exceeded (committed 1.95846e+08, prepared 0, asked 1.11042e+08)")
_NO_MODEL = ("no offer meets the intent: model 'resnet50-int8': error probability 0.004 exceeds the intent's "
             "max_error_probability 0.0005; model 'vit-large': error probability 0.001 exceeds the intent's "
             "max_error_probability 0.0005")


def _outcomes() -> list[Any]:
    """The five quickstart tenants, as a real run reported them."""
    from agents.tenant import BudgetSummary, TenantOutcome

    def admitted(tenant: str, model: str, d: float, eps: float, total: float, price: float,
                 budgets: list[tuple[str, float, float, float]], released: bool = False) -> TenantOutcome:
        return TenantOutcome(tenant, True, offers=1, contract_id=f"ct-{tenant}", model_id=model,
                             path=("access", "transport", "edge"), delay_bound_s=d, epsilon_delay=eps,
                             loss_probability=1.1e-4, error_probability=0.004, epsilon_total=total,
                             price_per_hour=price, budgets=tuple(BudgetSummary(*b) for b in budgets), grants=3,
                             released=released)

    return [
        admitted("factory-vision", "resnet50-int8", 0.029994, 0.00589, 0.01, 1.7134,
                 [("access", 0.00765, 1.963e-3, 90.996e6), ("transport", 0.009657, 1.963e-3, 90.996e6),
                  ("edge", 0.012687, 1.963e-3, 104.04e6)]),
        admitted("retail-cams", "vit-large", 0.049973, 0.00889, 0.01, 1.9096,
                 [("access", 0.008141, 2.656e-3, 54.58e6), ("transport", 0.013821, 2.656e-3, 54.58e6),
                  ("edge", 0.02801, 3.578e-3, 54.58e6)]),
        admitted("drone-fleet", "resnet50-int8", 0.039856, 0.01589, 0.02, 0.88458,
                 [("access", 0.003, 5.3e-3, 37.4e6), ("transport", 0.0045, 5.3e-3, 37.4e6),
                  ("edge", 0.03236, 5.3e-3, 37.2e6)], released=True),
        TenantOutcome("city-traffic", False, code="RESOURCE_EXHAUSTED", reason=_EDGE_FULL, offers=1),
        TenantOutcome("medical-imaging", False, code="FAILED_PRECONDITION", reason=_NO_MODEL),
    ]


def _statuses() -> list[Any]:
    from trefed.v1 import services_pb2

    return [services_pb2.DomainStatus(domain_id=d, reservable_capacity_bps=c, committed_bps=u, prepared_bps=0.0,
                                      available_bps=c - u)
            for d, c, u in (("access", 400e6, 183.03e6), ("transport", 1e9, 183.03e6), ("edge", 250e6, 195.85e6))]


def test_tables_fit_80_columns_without_cutting_a_cell():
    from rich.console import Console

    from federation.config import load_config

    buf = io.StringIO()
    console = Console(file=buf, width=80, color_system=None, force_terminal=False)
    outcomes = _outcomes()
    render_outcomes(load_config(QUICKSTART), outcomes, _statuses(), console=console)
    text = buf.getvalue()
    assert "…" not in text, text
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    row = {o.tenant_id: next(line for line in lines if line.startswith(o.tenant_id)) for o in outcomes}
    for o in outcomes[:3]:  # every cell of an admitted tenant's row, whole, on its one line
        cells = [o.model_id, f"{o.delay_bound_s * 1e3:.2f}", f"{o.epsilon_delay:.1e}", f"{o.epsilon_total:.1e}",
                 f"{o.price_per_hour:.3f}"]
        assert all(c in row[o.tenant_id].split() for c in cells), (row[o.tenant_id], cells)
    assert "admitted" in row["factory-vision"] and "released" in row["drone-fleet"]
    assert "rejected" in row["city-traffic"] and "rejected" in row["medical-imaging"]
    flat = " ".join(text.split())
    assert "city-traffic (RESOURCE_EXHAUSTED): " + _EDGE_FULL in flat
    assert "medical-imaging (FAILED_PRECONDITION): " + _NO_MODEL in flat
    for d, cells in (("access", ["400.0", "183.0", "0.0", "217.0"]), ("edge", ["250.0", "195.8", "0.0", "54.1"])):
        assert next(line for line in lines if line.startswith(d + " ")).split()[1:] == cells
    budget = next(line for line in lines if line.startswith("retail-cams") and "access" in line)
    assert budget.split() == ["retail-cams", "access", "8.14", "2.66e-03", "54.6"]


def test_phase_printer_writes_plain_timed_lines():
    now = iter([10.0, 10.0, 11.25])
    buf = io.StringIO()
    on_phase = phase_printer(buf, clock=lambda: next(now))
    on_phase("starting Ray")
    assert buf.getvalue() == "[  0.0 s] starting Ray\n"
    on_phase("starting the broker")
    assert buf.getvalue().splitlines()[1] == "[  1.2 s] starting the broker"


class _Federation:
    """Stands in for agents.runner.Federation: announces phases, returns the quickstart outcomes."""

    seen: list[tuple[str, str, str]] = []
    capsys: Any = None

    def __init__(self, config: Any, *, runtime: Any = None, state_dir: Any = None,
                 on_phase: Any = None, **kw: Any) -> None:
        self.config = config
        self.on_phase = on_phase
        self.broker_address = "127.0.0.1:1"

    def _phase(self, text: str) -> None:
        self.on_phase(text)
        out, err = self.capsys.readouterr()  # what the user saw at this very moment
        self.seen.append((text, out, err))

    def __enter__(self) -> _Federation:
        self._phase("starting Ray")
        self._phase("starting 3 domain controllers")
        return self

    def __exit__(self, *exc: object) -> None:
        self._phase("stopping the federation")

    def run_tenants(self, concurrent: bool = False) -> list[Any]:
        self._phase("5 tenants request service")
        return _outcomes()

    def domain_status(self, domain_id: str) -> Any:
        return {s.domain_id: s for s in _statuses()}[domain_id]


def test_run_shows_each_phase_on_stderr_as_it_begins(monkeypatch, capsys):
    import agents.runner
    import agents.runtime

    if "on_phase" not in inspect.signature(agents.runner.Federation).parameters:
        pytest.skip("agents.runner.Federation does not accept on_phase= yet (its branch adds the hook)")
    monkeypatch.setattr(agents.runner, "Federation", _Federation)
    monkeypatch.setattr(agents.runtime, "Runtime", lambda address=None: None)
    _Federation.seen, _Federation.capsys = [], capsys
    assert main(["run", QUICKSTART, "--admissions-only", "--json"]) == 0
    out, err = capsys.readouterr()
    phases = [p for p, _, _ in _Federation.seen]
    assert phases == ["starting Ray", "starting 3 domain controllers", "5 tenants request service",
                      "stopping the federation"]
    for text, seen_out, seen_err in _Federation.seen:
        assert seen_out == "", "a phase went to stdout"
        assert seen_err.rstrip("\n").endswith(f"] {text}"), seen_err  # on stderr, at once
    assert "loading" in _Federation.seen[0][2] and "quickstart.yaml" in _Federation.seen[0][2]
    doc = json.loads(out)  # stdout is exactly one JSON document
    assert [t["tenant_id"] for t in doc["tenants"]][:2] == ["factory-vision", "retail-cams"]
    assert doc["domains"][2]["domain_id"] == "edge" and math.isclose(doc["domains"][2]["committed_bps"], 195.85e6)
    assert err == ""  # nothing after the last phase

"""An experiment's results as values and files: ``experiment.json``, ``report.md``, the summary.

Every kind (:mod:`federation.experiment.kinds`) turns its arms' results (:class:`ArmResult`) into
an :class:`Outcome`: the claim, the :class:`Check` s that decide it, per-arm metrics, a table and
the reading paragraph (computed from the numbers). :func:`experiment_document` is the JSON
document, :func:`write_experiment` writes it with ``report.md``, :func:`summary_lines` is what
``trefed run`` prints.

``experiment.json``, schema ``trefed.experiment/1`` (times in s, rates in bits/s, probabilities in
[0, 1]; non-finite numbers as ``null``):

* ``schema``, ``federation``, ``kind``, ``created_at`` (ISO 8601 UTC), ``trefed_version``;
* ``experiment``: the ``experiment:`` section as it ran (every knob, defaults included);
* ``claim``: ``statement``, ``holds``, ``exit_code`` (0 when it holds, else 1: what ``trefed run``
  exits with), ``checks`` -- each ``name``, ``value``, ``relation`` (``<=``, ``>=``, ``<``, ``==``),
  ``target``, ``holds``;
* ``reading``: the paragraph of ``report.md``;
* ``method``: how the arms ran (``loop``: the whole loop on Ray; ``plane``: the data plane only);
* ``arms``: per arm -- ``name``, ``mode``, ``overrides`` (``[dotted path, value]`` on the base
  config), ``params``, ``report`` (its ``report.json`` under ``arms/NAME/``, loop arms), ``metrics``
  (the kind's), ``wall_s``;
* ``table``: ``header`` and ``rows`` of the results table;
* ``figures``: file names; ``timings``: wall seconds (``total_s``, per arm).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.errors import InputError
from federation.experiment.arms import Arm
from federation.experiment.plane import PlaneRun
from federation.experiment.record import RunRecord

__all__ = ["SCHEMA", "Check", "ArmResult", "Outcome", "TenantCompliance", "compliance", "jsonable",
           "experiment_document", "experiment_markdown", "summary_lines", "write_experiment", "save_figure"]

#: The ``schema`` of ``experiment.json``.
SCHEMA = "trefed.experiment/1"

_RELATIONS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
              "==": lambda a, b: a == b}


def jsonable(x: Any) -> Any:
    """``x`` with NaN/inf as None, tuples as lists, numpy scalars as Python numbers (for JSON)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return int(x)
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if f.is_integer() and not isinstance(x, float) and abs(f) < 2**53:
        return int(f)
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class Check:
    """One test of the claim: ``value RELATION target``."""

    name: str
    value: float
    relation: str
    target: float

    @property
    def holds(self) -> bool:
        """The relation holds (False when ``value`` is NaN)."""
        if isinstance(self.value, float) and math.isnan(self.value):
            return False
        return bool(_RELATIONS[self.relation](self.value, self.target))


@dataclass(frozen=True, eq=False)
class ArmResult:
    """What one arm produced: the data plane (loop and plane arms), for a loop arm the run's record and
    report document, for a core arm (the calculus only) its kind's value."""

    arm: Arm
    plane: PlaneRun | None
    record: RunRecord | None = None
    doc: dict[str, Any] | None = None
    wall_s: float = 0.0
    value: Any = None


@dataclass(frozen=True, eq=False)
class Outcome:
    """An experiment's verdict (see the module docstring)."""

    statement: str
    checks: tuple[Check, ...]
    reading: str
    metrics: dict[str, dict[str, Any]]
    header: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    method: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        """Every check holds (and there is at least one)."""
        return bool(self.checks) and all(c.holds for c in self.checks)


@dataclass(frozen=True)
class TenantCompliance:
    """One served tenant against ``P(D > d or lost) <= 1 - quantile`` (its quantile within its deadline)."""

    tenant_id: str
    admitted: bool
    rate: float
    ci_low: float
    ci_high: float
    packets: int
    verdict: str
    compliant: bool


def compliance(record: RunRecord, quantile: float) -> list[TenantCompliance]:
    """Every served tenant of a run, measured in the data plane (:meth:`TenantRecord.measured`: the
    auditor's estimator over its packets in order of arrival, lost packets counted as late), and the auditor's
    end-to-end verdict for those with a contract. A tenant with no packet is not compliant."""
    out = []
    for t in record.tenants:
        if not t.served:
            continue
        est = t.measured(record.plane)
        if est is None:
            out.append(TenantCompliance(t.tenant_id, t.admitted, math.nan, 0.0, 1.0, 0, t.verdict, False))
            continue
        iv = est.interval(record.config.run.confidence)
        out.append(TenantCompliance(t.tenant_id, t.admitted, est.value, iv.low, iv.high, est.n, t.verdict,
                                    bool(est.value <= 1.0 - quantile)))
    return out


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trefed")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def experiment_document(spec: Any, federation: str, results: Sequence[ArmResult], outcome: Outcome,
                        figures: Sequence[str] = (), timings: dict[str, float] | None = None) -> dict[str, Any]:
    """The ``experiment.json`` document (see the module docstring)."""
    holds = outcome.holds
    arms = []
    for r in results:
        a = r.arm
        arms.append({"name": a.name, "mode": a.mode, "overrides": [[k, v] for k, v in a.overrides],
                     "params": dict(a.params), "report": f"arms/{a.name}/report.json" if r.record is not None else None,
                     "metrics": outcome.metrics.get(a.name, {}), "wall_s": r.wall_s})
    doc = {
        "schema": SCHEMA,
        "federation": federation,
        "kind": spec.kind,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trefed_version": _version(),
        "experiment": json.loads(spec.model_dump_json()),
        "claim": {"statement": outcome.statement, "holds": holds, "exit_code": 0 if holds else 1,
                  "checks": [{"name": c.name, "value": c.value, "relation": c.relation, "target": c.target,
                              "holds": c.holds} for c in outcome.checks]},
        "reading": outcome.reading,
        "method": outcome.method,
        "arms": arms,
        "table": {"header": list(outcome.header), "rows": [list(r) for r in outcome.rows]},
        "figures": list(figures),
        "timings": dict(timings or {}),
        **({"extra": outcome.extra} if outcome.extra else {}),
    }
    return jsonable(doc)


def _cell(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


def experiment_markdown(doc: dict[str, Any]) -> str:
    """``report.md`` of an experiment: the claim, the reading, the table, the checks, the arms, the figures."""
    c = doc["claim"]
    lines = [f"# trefed experiment: {doc['federation']} ({doc['kind']})", "",
             f"**Claim {'holds' if c['holds'] else 'does not hold'}** (exit code {c['exit_code']}): {c['statement']}",
             "", "## Reading", "", doc["reading"], "", "## Results", ""]
    head = doc["table"]["header"]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_cell(x) for x in row) + " |" for row in doc["table"]["rows"]]
    lines += ["", "## Checks", "", "| check | value | target | holds |", "|---|---|---|---|"]
    lines += [f"| {k['name']} | {_cell(k['value'])} | {k['relation']} {_cell(k['target'])} | "
              f"{'yes' if k['holds'] else '**no**'} |" for k in c["checks"]]
    lines += ["", "## Arms", ""]
    for a in doc["arms"]:
        sets = ", ".join(f"`{k}` = `{json.dumps(v)}`" for k, v in a["overrides"]) or "the base config"
        rep = f" ([report]({a['report'].removesuffix('.json')}.md))" if a["report"] else ""
        lines.append(f"- **{a['name']}** ({a['mode']}, {a['wall_s']:.1f} s): {sets}{rep}")
    if doc["figures"]:
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in doc["figures"]]
    lines += ["", f"Schema {doc['schema']}; total {doc['timings'].get('total_s', 0.0):.1f} s wall.", ""]
    return "\n".join(lines)


def summary_lines(doc: dict[str, Any], width: int = 80) -> list[str]:
    """The experiment's summary as lines of at most ``width`` characters (what ``trefed run`` prints)."""
    c = doc["claim"]
    lines = [f"trefed experiment: {doc['federation']} ({doc['kind']}) -- claim "
             + ("holds" if c["holds"] else "DOES NOT hold")]
    head = doc["table"]["header"]
    rows = [[_cell(x) for x in r] for r in doc["table"]["rows"]]
    widths = [max([len(str(h))] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    fmt = " ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines += [fmt.format(*head)] + [fmt.format(*r) for r in rows]
    lines += [f"{'ok ' if k['holds'] else 'NO '} {k['name']}: {_cell(k['value'])} {k['relation']} {_cell(k['target'])}"
              for k in c["checks"]]
    return [ln[:width] for ln in lines]


def write_experiment(doc: dict[str, Any], out: str | Path) -> None:
    """Write ``experiment.json`` and ``report.md`` into ``out`` (atomically, each).

    Raises
    ------
    InputError
        The directory ``out`` cannot be made.
    """
    from federation.tre.keys import write_atomic

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output directory ({exc.strerror or exc})") from None
    for name, text in (("experiment.json", json.dumps(doc, indent=2, allow_nan=False) + "\n"),
                       ("report.md", experiment_markdown(doc))):
        write_atomic(out / name, text.encode(), mode=0o644, overwrite=True)


def save_figure(fig: Any, out: Path, name: str) -> list[str]:
    """Lay out ``fig`` (matplotlib), write it as ``out/name`` (PNG, 110 dpi), close it; ``[name]``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return [name]

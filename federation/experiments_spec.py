"""What an experiment varies and claims: the optional ``experiment:`` section of a federation config.

``trefed run CONFIG`` with an ``experiment:`` section runs the config as the base of a list of
**arms** (variants made by dotted-path overrides, :mod:`federation.experiment.arms`), measures
each and checks the experiment's claim (:mod:`federation.experiment.kinds`). ``kind`` picks the
experiment; the other fields are that kind's knobs. Each kind is small and validated like the rest
of the config; an error names the field, e.g. ``experiment.loads[2]``.
:class:`~federation.config.FederationConfig` checks that the tenants and domains named here exist
(:meth:`ExperimentBase.check_refs`).

Units: seconds (s), bits/s, probabilities in [0, 1], loads as multiples of a capacity.

Schema (one of)::

    experiment:
      kind: overload-admission
      bottleneck: edge          # domain whose model rate_bps is the capacity (load 1.0)
      tenant: 0                 # index in tenants of the template tenant, replicated to make the load
      loads: [0.5, 1.0, 1.5, 2.0]   # offered load: replicas * rho / capacity
      quantile: 0.999           # compliant: P(D > d or lost) <= 1 - quantile, i.e. p99.9 within d
      on_at_least: 0.99         # claim: with admission control, compliance >= this at every load
      off_below: 0.5            # claim: without, compliance < this at the highest load

    experiment:
      kind: isolation
      victim: 0                 # index in tenants of the victim (Poisson)
      aggressor: 1              # index in tenants of the aggressor (correlated on-off)
      burstiness: [1, 2, 4, 8]  # multiplies the aggressor's mean_on_s and mean_off_s (same mean rate)
      schedulers: [fifo, wfq, partition]
      shares: [0.5, 0.5]        # fraction of every domain's rate reserved for victim, aggressor
      quantile: 0.999
      within: 0.05              # claim: wfq/partition keep the victim's quantile within 5 % of alone
      fifo_factor: 2.0          # claim: fifo at least doubles it at the highest burstiness

    experiment:
      kind: accountability
      impaired: transport       # the domain impaired in the arm "impaired"
      impairment: {kind: spikes, start_s: 10, end_s: 50, value: 0.01, prob: 0.05}
      liar: transport           # the domain under-reporting in the arm "liar"
      under_report_s: 0.004

    experiment:
      kind: budget-split
      tenant: 0                 # index in tenants of the template tenant (token bucket)
      epsilons: [1.0e-2, 1.0e-3, 1.0e-4]   # end-to-end risks at which the two splits are compared
      deadlines: [0.02, 0.03]   # end-to-end deadlines, s (default: the tenant's own)

    experiment:
      kind: inference
      deadlines: [0.025, 0.05]  # the tenants' deadlines d, s (one tenant per (d, eps) pair)
      epsilons: [1.0e-2, 2.0e-3]   # their epsilon
      template: 0               # index in tenants of the tenant whose traffic and access they share

    experiment:
      kind: admission-vs-dnc
      tenant: 0                 # index in tenants of the template, replicated `offered` times
      offered: 24               # tenants arriving one by one (more than any policy admits)
      policies: [snc, dnc, peak-rate]   # one arm each (broker.admission); then none at snc's count
      quantile: 0.999           # compliant: the 95 % interval of P(D > d or lost) below 1 - quantile
      ratio: 1.75               # claim: snc admits >= ratio x the tenants dnc admits
      none_below: 0.5           # claim: none at snc's count, compliant fraction < this

    experiment:
      kind: bound-validity
      level: 0.95               # the measured CCDF's lower confidence limit must not exceed the bound
      min_probability: 1.0e-4   # check the bound only where it is >= this (the run resolves it)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from federation.errors import FieldError

__all__ = [
    "EXPERIMENT_KINDS",
    "ExperimentBase",
    "OverloadAdmissionSpec",
    "IsolationSpec",
    "AccountabilitySpec",
    "BoundValiditySpec",
    "BudgetSplitSpec",
    "InferenceSpec",
    "AdmissionVsDncSpec",
    "ExperimentSpec",
]

_Id = Annotated[str, Field(min_length=1, max_length=128)]
_Prob = Annotated[float, Field(gt=0, lt=1)]
_Index = Annotated[int, Field(ge=0, le=100_000)]


class ExperimentBase(BaseModel):
    """Common to every kind: strict, frozen; :meth:`check_refs` checks what it names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def tenant_refs(self) -> dict[str, int]:
        """Field name -> tenant index this spec names (checked against the config's tenants)."""
        return {}

    def domain_refs(self) -> dict[str, str]:
        """Field name -> domain id this spec names (checked against the config's domains)."""
        return {}

    def check_refs(self, domains: set[str], tenants: int, prefix: str = "experiment") -> None:
        """Every domain named exists and every tenant index is below ``tenants``.

        Raises
        ------
        FieldError
            Naming the field, e.g. ``experiment.bottleneck``.
        """
        for name, d in self.domain_refs().items():
            if d not in domains:
                raise FieldError(f"{prefix}.{name}", f"unknown domain {d!r}")
        for name, i in self.tenant_refs().items():
            if i >= tenants:
                raise FieldError(f"{prefix}.{name}", f"(={i}) must be the index of a tenant (the config has {tenants})")


class OverloadAdmissionSpec(ExperimentBase):
    """Offered load against capacity, admission control on and off (see the module docstring)."""

    kind: Literal["overload-admission"]
    bottleneck: _Id
    tenant: _Index = 0
    loads: Annotated[tuple[Annotated[float, Field(gt=0, le=16, allow_inf_nan=False)], ...],
                     Field(min_length=1, max_length=16)] = (0.5, 1.0, 1.5, 2.0)
    quantile: _Prob = 0.999
    on_at_least: Annotated[float, Field(ge=0, le=1)] = 0.99
    off_below: Annotated[float, Field(gt=0, le=1)] = 0.5

    def tenant_refs(self) -> dict[str, int]:  # noqa: D102
        return {"tenant": self.tenant}

    def domain_refs(self) -> dict[str, str]:  # noqa: D102
        return {"bottleneck": self.bottleneck}


class IsolationSpec(ExperimentBase):
    """A victim beside a bursty aggressor under several schedulers (see the module docstring)."""

    kind: Literal["isolation"]
    victim: _Index = 0
    aggressor: _Index = 1
    burstiness: Annotated[tuple[Annotated[float, Field(ge=1, le=1000, allow_inf_nan=False)], ...],
                          Field(min_length=1, max_length=16)] = (1.0, 2.0, 4.0, 8.0)
    schedulers: Annotated[tuple[Literal["fifo", "wfq", "partition"], ...], Field(min_length=1)] = (
        "fifo", "wfq", "partition")
    shares: tuple[Annotated[float, Field(gt=0, lt=1)], Annotated[float, Field(gt=0, lt=1)]] = (0.5, 0.5)
    quantile: _Prob = 0.999
    within: Annotated[float, Field(gt=0, le=1)] = 0.05
    fifo_factor: Annotated[float, Field(ge=1, le=1000)] = 2.0

    @model_validator(mode="after")
    def _shape(self) -> IsolationSpec:
        if self.victim == self.aggressor:
            raise FieldError("aggressor", f"(={self.aggressor}) must differ from victim(={self.victim})")
        if sum(self.shares) > 1.0:
            raise FieldError("shares", f"(={list(self.shares)}) must sum to at most 1")
        if len(set(self.schedulers)) != len(self.schedulers):
            raise FieldError("schedulers", f"(={list(self.schedulers)}) lists a scheduler twice")
        return self

    def tenant_refs(self) -> dict[str, int]:  # noqa: D102
        return {"victim": self.victim, "aggressor": self.aggressor}


class AccountabilitySpec(ExperimentBase):
    """An impaired domain and a lying domain, each in its own arm, beside a clean run."""

    kind: Literal["accountability"]
    impaired: _Id
    impairment: dict[str, Any] = Field(
        default_factory=lambda: {"kind": "spikes", "start_s": 0.0, "end_s": 1.0, "value": 0.01, "prob": 0.05})
    liar: _Id
    under_report_s: Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)] = 0.004

    @model_validator(mode="after")
    def _shape(self) -> AccountabilitySpec:
        if "domain" in self.impairment:
            raise FieldError("impairment.domain", "is set by experiment.impaired; leave it out")
        return self

    def domain_refs(self) -> dict[str, str]:  # noqa: D102
        return {"impaired": self.impaired, "liar": self.liar}


class BoundValiditySpec(ExperimentBase):
    """The measured end-to-end CCDF of every admitted tenant against its composed bound."""

    kind: Literal["bound-validity"]
    level: _Prob = 0.95
    min_probability: _Prob = 1.0e-4


_Risks = Annotated[tuple[Annotated[float, Field(gt=0, lt=1)], ...], Field(min_length=1, max_length=16)]
_Delays = Annotated[tuple[Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)], ...],
                    Field(min_length=1, max_length=16)]


class BudgetSplitSpec(ExperimentBase):
    """The broker's optimised risk-budget split against an equal split, by the calculus."""

    kind: Literal["budget-split"]
    tenant: _Index = 0
    epsilons: _Risks = (1.0e-2, 1.0e-3, 1.0e-4)
    deadlines: _Delays | None = None

    def tenant_refs(self) -> dict[str, int]:  # noqa: D102
        return {"tenant": self.tenant}


class InferenceSpec(ExperimentBase):
    """Two models of one task sharing the end-to-end budget: which the broker picks, and at what cost."""

    kind: Literal["inference"]
    template: _Index = 0
    deadlines: _Delays = (0.025, 0.05)
    epsilons: _Risks = (1.0e-2, 2.0e-3)

    def tenant_refs(self) -> dict[str, int]:  # noqa: D102
        return {"template": self.template}


class AdmissionVsDncSpec(ExperimentBase):
    """Tenants admitted and their p99.9 compliance per admission policy (``federation.experiment.admission``).

    ``require_shown``: the claim needs every tenant ``snc`` admits *shown* compliant (its interval
    below eps), not only not shown violating (False: the latter; short runs cannot show it).
    """

    kind: Literal["admission-vs-dnc"]
    tenant: _Index = 0
    offered: Annotated[int, Field(ge=1, le=1000)] = 24
    policies: Annotated[tuple[Literal["snc", "dnc", "peak-rate"], ...], Field(min_length=1, max_length=3)] = (
        "snc", "dnc", "peak-rate")
    quantile: _Prob = 0.999
    ratio: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 1.75
    none_below: Annotated[float, Field(gt=0, le=1)] = 0.5
    require_shown: bool = True

    @model_validator(mode="after")
    def _shape(self) -> AdmissionVsDncSpec:
        if len(set(self.policies)) != len(self.policies):
            raise FieldError("policies", f"(={list(self.policies)}) lists a policy twice")
        if "snc" not in self.policies or "dnc" not in self.policies:
            raise FieldError("policies", f"(={list(self.policies)}) must include snc and dnc (the claim compares them)")
        return self

    def tenant_refs(self) -> dict[str, int]:  # noqa: D102
        return {"tenant": self.tenant}


#: The experiment section: one of the kinds, by ``kind``.
ExperimentSpec = Annotated[OverloadAdmissionSpec | IsolationSpec | AccountabilitySpec | BoundValiditySpec
                           | BudgetSplitSpec | InferenceSpec | AdmissionVsDncSpec, Field(discriminator="kind")]

#: The kinds, in the order the docs list them.
EXPERIMENT_KINDS: tuple[str, ...] = ("overload-admission", "isolation", "accountability", "bound-validity",
                                     "budget-split", "inference", "admission-vs-dnc")

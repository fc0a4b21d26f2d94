"""Tuning the baselines fairly (issue 3; appendix B.1, B.4, E.7).

* :func:`grid_configs`: the paper's grids. Table 5 (images): alpha_max ∈ {1e-1, 1e-2, 1e-3},
  mu ∈ {1e-1, 1e-2, 1e-3}, eta2 ∈ {0.5, 1.0}, power p ∈ {1, 2}; constant needs only
  alpha_max, cosine has no p (3 / 18 / 36 configurations for constant / cosine / polynomial).
  Adam-HD (B.4): alpha_0 ∈ {1e-1, 1e-2, 1e-3} × beta ∈ {1e-7, 1e-8, 1e-9}. Not in the paper,
  our choices: WSD tunes alpha_max over Table 5's values (20 % linear decay to 0), schedule-free
  AdamW its lr over {1e-2, 3e-3, 1e-3, 3e-4} (its authors' range for Adam-type models).
  Warmup eta1 is 0 for images, as in Table 5.
* :func:`grid_search`: evaluate every configuration, choose the highest validation metric
  (first one on ties).
* :func:`cma_search`: CMA-ES (package ``cma``) over Table 16's expanded space for cosine,
  alpha_max ~ LogUniform[1e-3, 1e-1], mu ~ LogUniform[1e-3, 1e-1], eta2 ~ U[0.5, 1]; the
  search runs in the unit cube (log-scaled where the prior is log-uniform) with bounds
  [0, 1], starts at its centre with sigma0 = 0.3, and stops after exactly ``budget``
  evaluations (a last partial generation is evaluated but not told). It records the
  best-so-far validation curve (Figure 5).

Cost is counted in one unit for every method: optimizer steps of the target network (and
wall seconds) summed over all tuning runs (:class:`Cost`).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import GNSError

Config = dict[str, Any]
#: evaluate(config) -> (validation metric, optimizer steps used, wall seconds)
Evaluate = Callable[[Config], tuple[float, int, float]]

TABLE5 = {"lr": (1e-1, 1e-2, 1e-3), "mu": (1e-1, 1e-2, 1e-3), "eta2": (0.5, 1.0), "power": (1.0, 2.0)}
HD_GRID = {"lr": (1e-1, 1e-2, 1e-3), "beta": (1e-7, 1e-8, 1e-9)}
SF_GRID = {"lr": (1e-2, 3e-3, 1e-3, 3e-4)}
#: Table 16: name -> (low, high, log-scaled)
TABLE16 = {"lr": (1e-3, 1e-1, True), "mu": (1e-3, 1e-1, True), "eta2": (0.5, 1.0, False)}


def product(space: dict[str, tuple]) -> list[Config]:
    """All combinations of a grid given as name -> values (first name varies slowest)."""
    names = list(space)
    return [dict(zip(names, vals)) for vals in itertools.product(*(space[n] for n in names))]


def grid_configs(schedule: str, space: dict[str, tuple] | None = None) -> list[Config]:
    """The grid of ``schedule`` (see the module docstring); ``space`` overrides the value
    lists (a smaller grid for quick runs), restricted to the schedule's own parameters."""
    base: dict[str, tuple] = {
        "constant": {"lr": TABLE5["lr"]},
        "cosine": {k: TABLE5[k] for k in ("lr", "mu", "eta2")},
        "polynomial": dict(TABLE5),
        "wsd": {"lr": TABLE5["lr"]},
        "adam-hd": dict(HD_GRID),
        "schedule-free": dict(SF_GRID),
    }.get(schedule)
    if base is None:
        raise GNSError(f"no grid for schedule {schedule!r}; allowed: constant, cosine, polynomial, wsd, "
                       "adam-hd, schedule-free.")
    if space:
        base = {k: tuple(space.get(k, v)) for k, v in base.items()}
    return product(base)


@dataclass
class Cost:
    """Tuning cost: optimizer steps of the target network and wall seconds."""

    steps: int = 0
    seconds: float = 0.0

    def add(self, steps: int, seconds: float) -> None:
        self.steps += int(steps)
        self.seconds += float(seconds)


@dataclass
class SearchResult:
    """Outcome of a search: the chosen configuration, every trial in order, the best-so-far
    validation curve and the cumulative cost after each trial."""

    best: Config
    best_val: float
    trials: list[tuple[Config, float]] = field(default_factory=list)
    best_so_far: list[float] = field(default_factory=list)
    cum_steps: list[int] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)

    def add(self, config: Config, val: float, steps: int, seconds: float) -> None:
        """Record one finished trial (its validation metric and its cost)."""
        val = val if math.isfinite(val) else -math.inf
        self.trials.append((config, val))
        self.cost.add(steps, seconds)
        if not self.best_so_far or val > self.best_so_far[-1]:
            self.best, self.best_val = config, val
        self.best_so_far.append(max(val, self.best_so_far[-1]) if self.best_so_far else val)
        self.cum_steps.append(self.cost.steps)

    def to_dict(self) -> dict:
        return {"best": self.best, "best_val": self.best_val, "trials": [[c, v] for c, v in self.trials],
                "best_so_far": self.best_so_far, "cum_steps": self.cum_steps,
                "cost_steps": self.cost.steps, "cost_seconds": self.cost.seconds}


def grid_search(configs: list[Config], evaluate: Evaluate) -> SearchResult:
    """Evaluate every configuration and choose the one with the highest validation metric
    (the first one on ties; a non-finite metric counts as -inf)."""
    if not configs:
        raise GNSError("grid search needs at least one configuration.")
    result = SearchResult(best=configs[0], best_val=-math.inf)
    for config in configs:
        result.add(config, *evaluate(config))
    return result


def from_unit(x, space: dict[str, tuple[float, float, bool]] = TABLE16) -> Config:
    """Map a point of the unit cube to a configuration of ``space`` (log-scaled where marked)."""
    out: Config = {}
    for xi, (name, (lo, hi, log)) in zip(x, space.items()):
        xi = min(max(float(xi), 0.0), 1.0)
        out[name] = math.exp(math.log(lo) + xi * (math.log(hi) - math.log(lo))) if log else lo + xi * (hi - lo)
    return out


def cma_search(evaluate: Evaluate, budget: int, seed: int = 0, space: dict[str, tuple[float, float, bool]] = TABLE16,
               sigma0: float = 0.3, popsize: int | None = None) -> SearchResult:
    """CMA-ES over ``space`` with exactly ``budget`` evaluations (see the module docstring).

    Deterministic for a given ``seed`` and evaluation results, so a resumed benchmark that
    answers already-finished evaluations from its records asks for the same points again.
    """
    import cma

    if not (isinstance(budget, int) and budget > 0):
        raise GNSError(f"CMA-ES budget must be a positive integer, got {budget!r}.")
    opts = {"bounds": [0.0, 1.0], "seed": seed + 1, "verbose": -9, "verb_log": 0, "verb_disp": 0}
    if popsize:
        opts["popsize"] = popsize
    es = cma.CMAEvolutionStrategy([0.5] * len(space), sigma0, opts)
    result = SearchResult(best={}, best_val=-math.inf)
    while len(result.trials) < budget:
        xs = es.ask()
        xs = xs[: budget - len(result.trials)]
        losses = []
        for x in xs:
            config = {k: float(v) for k, v in from_unit(x, space).items()}
            val, steps, seconds = evaluate(config)
            result.add(config, val, steps, seconds)
            losses.append(-val if math.isfinite(val) else 1.0)
        if len(xs) == es.popsize:
            es.tell(xs, losses)
    return result

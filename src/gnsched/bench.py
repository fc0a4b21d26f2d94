"""The benchmark (issue 3): tasks × methods × seeds, tuned fairly, resumable.

A *method* is a small registered entry (:class:`Method`): how to tune it on a task (a grid
search, CMA-ES, or training an agent) and how to run one evaluation seed with what tuning
chose. Adding a method is one :func:`register` call; the learned schedulers (GNS, SRLS, CSS,
FRS) are :func:`agent_method` entries of their agent kind (:mod:`gnsched.agent_kinds`).

Protocol (per task):

1. tune: every tuning run trains the target network with tuning seed 0 and is scored by its
   final *validation* metric; GNS trains its agent for ``profile.gns_episodes`` episodes.
2. evaluate: the chosen configuration (or the trained agent) is re-run on evaluation seeds
   10000 .. 10000 + seeds - 1 (model initialisation and data order shared by all methods)
   and scored by the *test* metric.
3. transfer (Table 3): for ``profile.transfer = (source, target)`` every method's choice on
   the source task (the GNS agent unchanged) is evaluated on the target task.

Resume: every finished run (tuning trial, agent training, evaluation seed) is one JSON file
under ``OUT/records/``, keyed by (task, method, kind, config, seed, epochs, split sizes).
Before running, the benchmark looks the key up and reuses the stored result, so an interrupted benchmark
restarted with the same command recomputes nothing it had finished. Records are written
atomically (temporary file + rename): a killed run leaves no half record.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import GNSError
from .target import RunRecord
from .tasks import Task, get_task
from .tuning import Config, SearchResult, cma_search, grid_configs, grid_search

log = logging.getLogger("gnsched")

TUNE_SEED = 0
EVAL_SEED0 = 10_000


# --------------------------------------------------------------------------- profiles
@dataclass
class Profile:
    """What one benchmark invocation runs.

    Attributes:
        tasks: task names.
        epochs: target-network epochs per task (missing: the task's default).
        seeds: evaluation seeds per method.
        methods: method names (registry keys), in table order.
        grid: value lists overriding Table 5 / B.4 grids (empty: the paper's grids).
        cma_budget: CMA-ES evaluations.
        gns_episodes: agent training episodes.
        transfer: (source task, target task) pairs evaluated with the source's choices.
    """

    name: str
    tasks: tuple[str, ...]
    epochs: dict[str, int] = field(default_factory=dict)
    seeds: int = 5
    methods: tuple[str, ...] = ("constant", "polynomial", "cosine", "wsd", "adam-hd", "schedule-free",
                                "cma-es", "gns")
    grid: dict[str, tuple] = field(default_factory=dict)
    cma_budget: int = 50
    gns_episodes: int = 30
    transfer: tuple[tuple[str, str], ...] = ()


PROFILES: dict[str, Profile] = {
    # Smoke test: 1 epoch, 2 seeds, 2-point grids, 4 CMA-ES evaluations, 3 agent episodes,
    # the paper's comparison (11 methods; add gns-g1 with --method).
    "quick": Profile("quick", ("fashion-mnist-mlp", "fashion-mnist-resnet"),
                     methods=("constant", "polynomial", "cosine", "wsd", "adam-hd", "schedule-free", "cma-es",
                              "gns", "frs", "srls", "css"),
                     epochs={"fashion-mnist-mlp": 1, "fashion-mnist-resnet": 1, "fashion-mnist-vgg": 1}, seeds=2,
                     grid={"lr": (1e-2, 1e-3), "mu": (1e-2,), "eta2": (1.0,), "power": (1.0,), "beta": (1e-8,)},
                     cma_budget=4, gns_episodes=3, transfer=(("fashion-mnist-resnet", "fashion-mnist-vgg"),)),
    # The real thing: the paper's grids, 5 seeds, 50 CMA-ES evaluations, 30 agent episodes.
    # SRLS / FRS / CSS are left out to keep the hour (each adds ~4 min to the MLP and ~7 to
    # the ResNet); add them with ``--method frs --method srls --method css`` on the same folder.
    # Projected on one core (CPU time, bench/time_profile.py): MLP at 6 epochs ≈ 19 min (wall
    # ≈ 35 min on the busy shared machine), ResNet (3 epochs on 6 000 images) + VGG transfer
    # ≈ 28 min. Deviation: the MLP task's default is 10 epochs; at 10 the MLP took ≈ 37 min of
    # CPU (≈ 52 min wall when busy), too close to the hour; ``--epochs fashion-mnist-mlp=10``
    # restores it.
    "full": Profile("full", ("fashion-mnist-mlp", "fashion-mnist-resnet"),
                    epochs={"fashion-mnist-mlp": 6, "fashion-mnist-resnet": 3, "fashion-mnist-vgg": 3}, seeds=5,
                    cma_budget=50, gns_episodes=30, transfer=(("fashion-mnist-resnet", "fashion-mnist-vgg"),)),
}


# --------------------------------------------------------------------------- records
def record_key(task: str, method: str, kind: str, config: Config, seed: int, epochs: int) -> dict:
    return {"task": task, "method": method, "kind": kind, "config": config, "seed": seed, "epochs": epochs}


class RecordStore:
    """One JSON file per finished run under ``root/records/<task>/<method>/``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.computed = 0  # runs executed and stored by this store (not answered from disk)
        self.reused = 0    # runs answered from disk

    def path(self, key: dict) -> Path:
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return self.root / "records" / key["task"] / key["method"] / f"{key['kind']}-{key['seed']}-{digest}.json"

    def get(self, key: dict) -> dict | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError:
            log.warning("ignoring unreadable record %s; it will be recomputed", p)
            return None

    def put(self, key: dict, result: dict) -> dict:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        rec = {"key": key, **result}
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=p.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(rec, f, default=float)
        os.replace(tmp, p)
        return rec

    def run(self, key: dict, fn: Callable[[], dict]) -> dict:
        """The stored result of ``key``, or run ``fn`` and store what it returns."""
        found = self.get(key)
        if found is not None:
            self.reused += 1
            return found
        result = fn()
        self.computed += 1
        return self.put(key, result)

    def all(self) -> list[dict]:
        out = []
        for p in sorted((self.root / "records").rglob("*.json")):
            try:
                out.append(json.loads(p.read_text()))
            except json.JSONDecodeError:
                continue
        return out


# --------------------------------------------------------------------------- context
@dataclass
class Context:
    """One task inside one benchmark invocation."""

    task: Task
    epochs: int
    profile: Profile
    store: RecordStore

    @property
    def steps_per_run(self) -> int:
        return self.epochs * self.task.steps_per_epoch()

    def key(self, method: str, kind: str, config: Config, seed: int) -> dict:
        key = record_key(self.task.name, method, kind, config, seed, self.epochs)
        splits = getattr(self.task, "splits", None)  # a redefined task never reuses old records
        key["data"] = list(splits.sizes()) if hasattr(splits, "sizes") else [self.task.num_train()]
        return key


def run_result(rec: RunRecord) -> dict:
    """What a record file holds for one training run."""
    return {"val": rec.val[-1][1] if rec.val else float("nan"), "test": rec.test_metric,
            "steps": rec.steps[-1] if rec.steps else 0, "seconds": rec.seconds, "run": rec.to_dict()}


def _schedule_run(ctx: Context, schedule: str, config: Config, seed: int, test: bool = True) -> dict:
    from .train import run_schedule

    params = {k: v for k, v in config.items() if k != "lr"}
    return run_result(run_schedule(ctx.task, schedule, config["lr"], seed=seed, epochs=ctx.epochs, test=test, **params))


# --------------------------------------------------------------------------- methods
@dataclass
class Tuned:
    """What tuning produced: the choice (a config, or an agent), its search record, its cost."""

    choice: Any
    search: SearchResult
    info: dict = field(default_factory=dict)


@dataclass
class Method:
    """A registered benchmark method.

    Attributes:
        name: registry key and table row.
        tune: ``tune(ctx) -> Tuned`` (runs through ``ctx.store`` so it resumes).
        run_seed: ``run_seed(ctx, tuned, seed) -> dict`` (a :func:`run_result` dict), one
            evaluation run with the tuned choice; ``ctx`` may be another task (transfer).
        choice_key: a JSON-able description of the choice, used in evaluation record keys.
        family: ``"grid"``, ``"cma-es"`` or ``"agent"`` (groups the tuning-cost plot).
    """

    name: str
    tune: Callable[[Context], Tuned]
    run_seed: Callable[[Context, Tuned, int], dict]
    choice_key: Callable[[Tuned], Any]
    family: str


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def _evaluator(ctx: Context, method: str, schedule: str):
    def evaluate(config: Config) -> tuple[float, int, float]:
        r = ctx.store.run(ctx.key(method, "trial", config, TUNE_SEED),
                          lambda: _schedule_run(ctx, schedule, config, TUNE_SEED, test=False))
        return r["val"], r["steps"], r["seconds"]
    return evaluate


def grid_method(name: str, schedule: str | None = None) -> Method:
    """A fixed schedule tuned by grid search over its grid (:func:`gnsched.tuning.grid_configs`)."""
    schedule = schedule or name

    def tune(ctx: Context) -> Tuned:
        search = grid_search(grid_configs(schedule, ctx.profile.grid), _evaluator(ctx, name, schedule))
        return Tuned(search.best, search)

    def run_seed(ctx: Context, tuned: Tuned, seed: int) -> dict:
        return _schedule_run(ctx, schedule, tuned.choice, seed)

    return Method(name, tune, run_seed, lambda t: t.choice, "grid")


def cma_method(name: str = "cma-es", schedule: str = "cosine") -> Method:
    """Cosine decay tuned by CMA-ES over Table 16 with ``profile.cma_budget`` evaluations."""

    def tune(ctx: Context) -> Tuned:
        search = cma_search(_evaluator(ctx, name, schedule), ctx.profile.cma_budget, seed=TUNE_SEED)
        return Tuned(search.best, search)

    def run_seed(ctx: Context, tuned: Tuned, seed: int) -> dict:
        return _schedule_run(ctx, schedule, tuned.choice, seed)

    return Method(name, tune, run_seed, lambda t: t.choice, "cma-es")


def agent_method(name: str, kind: str | None = None, overrides: dict | None = None) -> Method:
    """A learned scheduler of agent ``kind`` (:mod:`gnsched.agent_kinds`: gns, frs, srls,
    css; default: ``name``) trained by :func:`gnsched.train.train_agent` for
    ``profile.gns_episodes`` episodes and applied with :func:`gnsched.train.apply_agent`.

    ``overrides``: ``{"ppo.gamma": 1.0, "env.val_prob": 1.0, ...}``, fields of
    :class:`~gnsched.config.TrainConfig` changed from the paper's defaults
    (:meth:`~gnsched.config.TrainConfig.with_overrides`; they are part of the record key, so
    such a method never reuses another's agent). The same config applies the agent, so a
    p = 1 method also validates at every decision of its evaluation runs (more seconds, the
    same result: application follows the policy mean).

    Training checkpoints after every PPO update under ``OUT/agents/``, so an interrupted
    training resumes where it stopped. Tuning cost: episodes × T optimizer steps; the
    best-so-far curve uses each training episode's final validation metric.
    """
    from .agent import GNSAgent

    kind = kind or name

    def train_cfg(ctx: Context):
        from .config import TrainConfig

        cfg = TrainConfig(episodes=ctx.profile.gns_episodes, epochs=ctx.epochs, seed=TUNE_SEED)
        return cfg.with_overrides(overrides or {})

    def tune(ctx: Context) -> Tuned:
        from .train import train_agent

        cfg = train_cfg(ctx)
        key = ctx.key(name, "agent", {"train": cfg.to_dict(), "kind": kind}, TUNE_SEED)
        stem = ctx.store.path(key).stem  # the agent (+ its JSON sidecar) lives outside records/
        folder = ctx.store.root / "agents" / key["task"] / name
        agent_path = folder / f"{stem}.safetensors"

        def train() -> dict:
            t0 = time.perf_counter()
            trained, logs = train_agent(ctx.task, cfg, kind=kind, checkpoint_dir=folder / f"{stem}-checkpoint")
            folder.mkdir(parents=True, exist_ok=True)
            trained.save(agent_path)
            return {"episodes": [asdict(l) for l in logs], "seconds": time.perf_counter() - t0,
                    "steps": cfg.episodes * ctx.steps_per_run, "agent": str(agent_path.relative_to(ctx.store.root))}

        rec = ctx.store.run(key, train)
        if not agent_path.is_file():  # record without its agent (deleted by hand): retrain
            ctx.store.path(key).unlink()
            rec = ctx.store.run(key, train)
        search = SearchResult(best={"episodes": cfg.episodes}, best_val=-float("inf"))
        for ep in rec["episodes"]:
            search.add({"episode": ep["episode"], "lr0": ep["lr0"]}, ep["final_val"], ctx.steps_per_run, ep["seconds"])
        search.best = {"episodes": cfg.episodes}
        return Tuned(GNSAgent.load(agent_path), search,
                     {"train": cfg.to_dict(), "agent_file": str(agent_path.relative_to(ctx.store.root))})

    def run_seed(ctx: Context, tuned: Tuned, seed: int) -> dict:
        from .train import apply_agent

        rec = apply_agent(tuned.choice, ctx.task, train_cfg(ctx), seed=seed)
        rec.name = name
        return run_result(rec)

    return Method(name, tune, run_seed, lambda t: {"agent": t.info["train"], "source": t.info["agent_file"]},
                  "agent")


for _name in ("constant", "polynomial", "cosine", "wsd", "adam-hd", "schedule-free"):
    register(grid_method(_name))
register(cma_method())
# Learned schedulers: GNS, its ablations FRS (p = 1) and CSS (concatenated node states), and
# the SRLS baseline (Xu et al. 2019); the agent classes live in gnsched.agent_kinds.
for _name in ("gns", "frs", "srls", "css"):
    register(agent_method(_name))
#: GNS trained on the undiscounted return with a validation at every decision (ours). With
#: γ = 0.99 and p = 0.2 the Fashion-MNIST MLP policy learnt to decay at every decision
#: (early validation gains weigh most); γ = 1 makes the return the final metric minus the
#: first, p = 1 makes every reward exact, 3 episodes per update normalise advantages over
#: 3 initial learning rates, and actions up to ±0.25 let the 28 decisions of a 3-epoch
#: ResNet run decay as far as the tuned schedules do (bench/results/gns-variants/).
GNS_G1 = {"ppo.gamma": 1.0, "env.val_prob": 1.0, "ppo.episodes_per_update": 3, "agent.action_scale": 0.25}
register(agent_method("gns-g1", kind="gns", overrides=GNS_G1))

# --------------------------------------------------------------------------- driver
def _write_profile(path: Path, profile: Profile) -> None:
    """Record the profile; runs of single tasks of one profile (``--task``, e.g. one process
    per core on the same folder, or ``--method`` additions) accumulate their tasks, methods
    and transfers, and change the recorded epochs only of the tasks they ran."""
    data = asdict(profile)
    ran = set(profile.tasks) | {dst for src, dst in profile.transfer if src in profile.tasks}
    data["epochs"] = {t: e for t, e in data["epochs"].items() if t in ran}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("name") == profile.name:
            data["tasks"] = list(dict.fromkeys([*old.get("tasks", []), *data["tasks"]]))
            data["methods"] = list(dict.fromkeys([*old.get("methods", []), *data["methods"]]))
            data["epochs"] = {**old.get("epochs", {}), **data["epochs"]}
            data["transfer"] = [list(t) for t in dict.fromkeys(map(tuple, [*old.get("transfer", []), *data["transfer"]]))]
    path.write_text(json.dumps(data, indent=2))


def run_bench(profile: Profile, out: str | Path, data_dir: str | Path | None = None,
              load_task: Callable[[str], Task] | None = None, on_event: Callable[[str], None] | None = None) -> RecordStore:
    """Run (or resume) ``profile`` into ``out``; returns the record store. Rendering is
    separate (:func:`gnsched.report.render`)."""
    unknown = [m for m in profile.methods if m not in METHODS]
    if unknown:
        raise GNSError(f"unknown benchmark method {unknown[0]!r}; registered: {', '.join(METHODS)}.")
    store = RecordStore(out)
    store.root.mkdir(parents=True, exist_ok=True)
    _write_profile(store.root / "profile.json", profile)
    load_task = load_task or (lambda name: get_task(name, data_dir))
    say = on_event or (lambda msg: None)
    tasks: dict[str, Task] = {}

    def ctx_for(name: str) -> Context:
        if name not in tasks:
            tasks[name] = load_task(name)
            torch.set_num_threads(tasks[name].threads)
        t = tasks[name]
        return Context(t, profile.epochs.get(name, t.epochs), profile, store)

    sources = {src: dst for src, dst in profile.transfer}
    for task_name in profile.tasks:
        ctx = ctx_for(task_name)
        for mname in profile.methods:
            method = METHODS[mname]
            t0 = time.perf_counter()
            tuned = method.tune(ctx)
            store.put(ctx.key(mname, "tuning", {}, TUNE_SEED),
                      {"family": method.family, "steps_per_run": ctx.steps_per_run, **tuned.search.to_dict()})
            say(f"{task_name} {mname}: tuned ({len(tuned.search.trials)} trials, best val {tuned.search.best_val:.4f}, "
                f"{tuned.search.cost.steps} steps)")
            targets = [(ctx, "seed")] + ([(ctx_for(sources[task_name]), "transfer")] if task_name in sources else [])
            for tctx, kind in targets:
                for k in range(profile.seeds):
                    seed = EVAL_SEED0 + k
                    config = {"choice": method.choice_key(tuned), "tuned_on": task_name}
                    try:
                        tctx.store.run(tctx.key(mname, kind, config, seed),
                                       lambda: {**method.run_seed(tctx, tuned, seed), "family": method.family})
                    except GNSError as e:
                        if kind != "transfer":
                            raise
                        # e.g. CSS: its input size is fixed by the source graph's node count
                        say(f"{tctx.task.name} {mname}: transfer not possible ({e})")
                        break
            say(f"{task_name} {mname}: done in {time.perf_counter() - t0:.0f} s")
    return store

"""Task specifications: what a task declares, and what its ``build`` returns.

A task is a versioned, frozen spec (data, partition, models, budgets, metrics,
targets). ``build(data_dir, seed)`` makes the runtime instance the harness
drives. Tasks are found like methods: entry points in ``lsbench.tasks``, a
module ``pkg.mod:NAME`` or a file ``path.py:NAME``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional

from lsbench import api


from lsbench.errors import TaskError  # noqa: F401  (re-exported: tasks raise it)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str                       # e.g. "train/digits"
    version: str                    # bump whenever data, models or budgets change
    track: str                      # train | infer | plan
    description: str
    primary_metric: str
    higher_is_better: bool = True
    target: Optional[float] = None  # for cost-to-target
    headline_profile: str = "lte"
    tier: str = "default"           # "small" marks the CI-sized tier of a task
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    builder: Optional[Callable[..., Any]] = None  # (spec, data_dir, seed) -> instance

    def build(self, data_dir: str, seed: int):
        if self.builder is None:
            raise TaskError(f"task {self.name} has no builder")
        return self.builder(self, data_dir, seed)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("builder")
        return d


@dataclasses.dataclass
class TrainInstance:
    """Runtime data of a training task. Arrays are numpy; per-client arrays are
    padded to the largest client and stacked: x[C, n_max, ...], n[C].
    ``edge_views``: one edge view per tier name; ``cloud_view``: the cloud's."""
    edge_views: Mapping[str, api.TrainView]
    cloud_view: api.TrainView
    train_x: Any
    train_y: Any
    train_n: Any
    test_x: Any                 # per-client local test split, padded like train
    test_y: Any
    test_n: Any
    global_test_x: Any
    global_test_y: Any
    client_tier: Any            # int32[C], index into tiers
    tiers: tuple[str, ...]      # tier names, e.g. ("small", "large")
    rounds: int
    clients_per_round: int
    local_epochs: float
    batch_size: int
    max_local_steps: int
    eval_every: int
    straggler_fraction: float = 0.0
    hashes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Edge budgets the harness enforces (lsbench.harness.budgets): param_bytes,
    # flops_per_example, state_bytes; a missing key is not enforced.
    edge_budgets: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # The validation split (drawn from the task's data, disjoint from train and
    # test): evaluated like the global test set, reported as final.json's
    # ``validation``; the suite selects on it. None: the task has none.
    global_val_x: Any = None
    global_val_y: Any = None
    # Each client's own validation rows, padded like test (tasks whose primary metric is
    # personal: edge_personal_accuracy is then reported on validation too). None: none.
    val_x: Any = None
    val_y: Any = None
    val_n: Any = None
    # The centralized reference's passes over the pooled training data, in all, spread
    # evenly over the rounds (keeps the reference's cost bounded); None: ``local_epochs``
    # per round, like one client.
    pooled_epochs: Optional[float] = None
    # The task's Byzantine clients (lsbench.attacks.hook.Byzantine; None: a clean
    # task). Harness-side only: no view holds it; the train loop calls it.
    attack: Any = None

    def hidden(self) -> dict:
        """Task data no side may hold as a constant (clients' data, test sets)."""
        out = {"train_x": self.train_x, "train_y": self.train_y, "test_x": self.test_x,
               "test_y": self.test_y, "global_test_x": self.global_test_x,
               "global_test_y": self.global_test_y}
        if self.global_val_x is not None:
            out.update(global_val_x=self.global_val_x, global_val_y=self.global_val_y)
        if self.val_x is not None:
            out.update(val_x=self.val_x, val_y=self.val_y)
        if self.attack is not None:  # who is malicious (as a mask and as ids)
            out.update(self.attack.hidden())
        return out


@dataclasses.dataclass
class InferInstance:
    """Runtime data of an inference task.

    ``metrics_fn(preds, test, log) -> dict`` turns predictions (concatenated
    over batches) and the harness's per-example log (bytes, flops, sent, turns)
    into task metrics. ``edge_view``/``cloud_view``: what each side sees.
    """
    edge_view: api.InferView
    cloud_view: api.InferView
    calib: Mapping[str, Any]
    test: Mapping[str, Any]
    batch_size: int
    max_turns: int
    metrics_fn: Callable[..., Mapping[str, float]]
    # Optional task latency model: (log, net_profile, device_profile) -> float[N]
    # seconds per example; default: lsbench.metering.profiles.turn_latency.
    latency_fn: Optional[Callable] = None
    hashes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    edge_budgets: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # Inputs the oracle reference may read besides input_keys (e.g. correctness bits).
    oracle_keys: tuple = ()
    # The validation split: the same keys as ``test``, drawn from the task's data and
    # disjoint from test, calibration and the reference models' training data. No side
    # sees it; the harness runs the installed method on it after the test batches and
    # reports final.json's ``validation`` (the suite selects on it). None: none.
    val: Optional[Mapping[str, Any]] = None
    # What training each cached reference model cost, by cache name: wall_s, cores,
    # steps, flops (``lsbench.models.cache``); the manifest's ``reference_training``.
    reference_training: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def hidden(self) -> dict:
        out = {"test": dict(self.test)}
        if self.val is not None:
            out["val"] = dict(self.val)
        return out


@dataclasses.dataclass
class PlanInstance:
    """Runtime data of a planning task. ``reset(instance_i) -> (env_state, obs,
    world)``; ``step(env_state, action) -> (env_state, obs, done, info)`` are
    pure and per-episode (vmapped by the harness). ``cloud_cost(world, uplink)``
    is the harness-side secondary cost of one planner answer (expanded nodes; the
    planner's FLOPs are metered on the cloud's program).
    ``edge_view``/``cloud_view``: what each side sees (the planner is the cloud's)."""
    edge_view: api.PlanView
    cloud_view: api.PlanView
    instances: Any
    num_episodes: int
    max_steps: int
    reset: Callable
    step: Callable
    metrics_fn: Callable[..., Mapping[str, float]]
    cloud_kind: str = "learned"     # "solver" (nodes) or "learned" (FLOPs)
    cloud_cost: Optional[Callable] = None
    hashes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    edge_budgets: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # Validation episodes (disjoint from test): the loop runs them too and reports the same
    # metrics as ``validation`` (``metrics_fn(traj, inst, split="val")``); None if absent.
    val_instances: Any = None
    num_val: int = 0

    def hidden(self) -> dict:
        out = {"instances": self.instances}
        if self.val_instances is not None:
            out["val_instances"] = self.val_instances
        return out

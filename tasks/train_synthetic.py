"""train/synthetic: LEAF/FedProx Synthetic(1, 1), 100 devices, natural partition
(one device = one client; each device's 20% test split is its local test, all
of them together the global test). Edge: multinomial logistic regression (as in
FedProx); cloud: a 64-hidden MLP. 10 clients per round, 20 local epochs, batch
10 (FedProx's setting). ``STRAGGLERS``: 90% of the sampled clients do a random
1..S of their S local steps each round (FedProx's systems heterogeneity).
"""
import dataclasses

from lsbench.task import TaskSpec
from tasks._train_common import build

CONFIG = dict(
    dataset="synthetic", data={"alpha": 1.0, "beta": 1.0, "devices": 100, "seed": 0, "max_samples": 1000},
    partition="natural", clients=100,
    edge=("linear", {}), cloud=("mlp", {"hidden": (64,)}), tiers={"full": 1.0},
    rounds=100, clients_per_round=10, local_epochs=20.0, batch_size=10, max_local_steps=200,
    eval_every=10, stragglers=0.0,
    # The centralized reference: 20 passes over the pooled data in all (20 per round x 100
    # rounds would be 2,000).
    pooled_epochs=20,
    # Per edge: the logistic model holds 610 fp32 params; the budget leaves room for
    # FedGKT's conv stem + head (4,906 params), so every baseline fits.
    edge_budgets={"param_bytes": 4 * 5000},
)

TASK = TaskSpec(
    name="train/synthetic", version="3", track="train",
    description="Synthetic(1,1), 100 devices (natural partition), logistic edge, MLP cloud",
    primary_metric="edge_accuracy", target=0.45, config=CONFIG, builder=build)

STRAGGLERS = dataclasses.replace(
    TASK, name="train/synthetic-stragglers", description="train/synthetic with 90% stragglers",
    config=dict(CONFIG, stragglers=0.9))

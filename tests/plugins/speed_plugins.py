"""Tasks and methods for tests/test_speed*.py (scanned rounds, backends, seeds)."""
import dataclasses
import os
import sys

import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sgd_fedavg import TinyFedAvg, _xent  # noqa: E402
from tiny_train import TASK  # noqa: E402

from lsbench import api  # noqa: E402

# Six rounds evaluated once at the end: one compiled scan holds every round.
ONE_CHUNK = dataclasses.replace(TASK, name="test/tiny-one-chunk", config=dict(TASK.config, eval_every=6))
# Half the sampled clients straggle (a random step count each round); 7 clients, 2 tiers.
STRAGGLERS = dataclasses.replace(
    TASK, name="test/tiny-stragglers",
    config=dict(TASK.config, clients=7, clients_per_round=5, stragglers=0.5, tiers=("small", "full")))
# 10 of 10 clients per round: a client count not divisible by 4 in both tiers (5 + 5).
TEN = dataclasses.replace(TASK, name="test/tiny-ten",
                          config=dict(TASK.config, clients=10, clients_per_round=10, tiers=("small", "full")))


class NanAtRound(TinyFedAvg):
    """FedAvg whose local loss turns NaN from round ``nan_round`` (0-based) on:
    the cloud counts rounds and sends the count down with the model."""
    manifest = api.Manifest(name="nan-at-round", tracks=("train",))
    default_hparams = {"lr": 0.5, "nan_round": 3}

    def cloud_setup(self, rng):
        return {"p": super().cloud_setup(rng), "r": jnp.float32(0)}

    def cloud_downlink(self, cloud, tier, ids):
        return cloud

    def client_init(self, edge_state, down, rng):
        return down

    def client_step(self, cs, batch, rng):
        p, loss = super().client_step(cs["p"], batch, rng)
        bad = cs["r"] >= self.hp["nan_round"]
        return {"p": p, "r": cs["r"]}, jnp.where(bad, jnp.nan, loss)

    def client_final(self, cs, edge_state, rng):
        return cs["p"], cs["p"]

    def cloud_update(self, cloud, rnd, rng):
        return {"p": super().cloud_update(cloud["p"], rnd, rng), "r": cloud["r"] + 1}

    def predict_global_edge(self, cloud, x):
        return super().predict_global_edge(cloud["p"], x)

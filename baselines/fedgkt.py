"""FedGKT: group knowledge transfer (He, Annavaram & Avestimehr, NeurIPS 2020).

Small edge model = a conv stem (the feature extractor) + a linear head; large
cloud model = a deeper CNN that runs on the stem's feature maps (both plain
Flax, defined here because FedGKT needs this exact cut). No weights are
exchanged for training. Round r, per sampled client:
  down: the cloud's logits for the client's examples from its last upload
        (``Rows``, one row per example; nothing in a client's first round);
  edge: local SGD on CE + ``alpha``·KD(T) toward those cloud logits. Every
        example's stem features, logits and label are kept from its last
        pass in this round (the same forward pass, so no extra FLOPs hide);
  up:   ``Rows`` of (features f32[F], label int32, edge logits f32[C]) for
        every local example seen, plus the stem weights (see below);
  cloud: trains the large model on all uploaded features with CE +
        ``beta``·KD(T) toward the edge logits (``server_steps`` Adam steps),
        then stores its logits for every uploaded row, to send next time.
Uplink bytes grow with the client's data, not with any model size:
``n_k·(4F + 4 + 4C)`` per client per round (+ the stem, a few hundred bytes).

Matching: examples carry no ids in lsbench batches, so the edge keys each
example by a fixed random projection of its input (a local hash, never sent)
to pair it with its cloud logits and its upload slot.

``cloud_accuracy``: the paper scores the server model on client-extracted
test features (FedML also uploads test features). Here each client also sends
its stem weights (metered) and the cloud scores global-test row i through the
stem of client ``i mod num_clients``. All edges start from the same initial
model (as in FedML, where every client builds the same network).
Buffers are sized by ``view.num_clients`` and the most distinct examples a
client can see per round, its training set: ``view.max_client_n`` (the
largest client's). Empty slots are never billed (``Rows`` masks), but the
cloud's training and logit passes run over every slot.
"""
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from baselines import _distill as kd
from baselines._train_common import make_optimizer, soft_xent, xent
from lsbench import api
from lsbench.task import TaskError

tmap = jax.tree_util.tree_map


class Stem(nn.Module):
    ch: int
    k: int
    s: int
    dims: int

    @nn.compact
    def __call__(self, x):
        x = x.astype(jnp.float32)
        if x.ndim == self.dims + 1:
            x = x[..., None]
        return nn.relu(nn.Conv(self.ch, (self.k,) * self.dims, strides=(self.s,) * self.dims,
                               padding="SAME")(x))


class ServerCNN(nn.Module):
    classes: int
    dims: int

    @nn.compact
    def __call__(self, f):
        for ch, s in ((32, 1), (32, 2), (64, 2)):
            f = nn.relu(nn.Conv(ch, (3,) * self.dims, strides=(s,) * self.dims, padding="SAME")(f))
        f = f.reshape((f.shape[0], -1))
        return nn.Dense(self.classes)(nn.relu(nn.Dense(128)(f)))


@functools.lru_cache(maxsize=None)
def _projection(d: int):
    """The edge's fixed random projection for example keys (a 2 x d constant of
    the method, never sent)."""
    return np.random.default_rng(0).normal(size=(d, 2)).astype(np.float32)


class FedGKT(api.TrainMethod):
    manifest = api.Manifest(
        name="fedgkt", tracks=("train",),
        description="edge conv stem + cloud CNN on uploaded features; features/labels up, logits down",
        paper="He, Annavaram & Avestimehr, Group Knowledge Transfer: Federated Learning of Large CNNs "
              "at the Edge, NeurIPS 2020")
    default_hparams = {"lr": 0.05, "momentum": 0.9, "alpha": 1.0, "beta": 1.0, "T": 3.0,
                       "server_steps": 50, "server_batch": 64, "server_lr": 1e-3,
                       "stem_channels": 16, "stem_kernel": 5, "stem_stride": 2}
    sweep = ({"stem_channels": 8}, {"server_steps": 300})
    per_client_downlink = True

    def __init__(self, view, hp):
        super().__init__(view, hp)
        self.n_slots, self.n_clients = int(view.max_client_n), int(view.num_clients)
        if not (self.n_slots and self.n_clients):
            raise TaskError(f"fedgkt needs the client count and the largest client's example count; "
                            f"task {view.task} gives num_clients={view.num_clients}, "
                            f"max_client_n={view.max_client_n} in its views: set both")
        shape = tuple(view.input_shape)
        self.dims = 1 if len(shape) == 1 else 2
        self.C = view.num_classes
        self.stem = Stem(int(self.hp["stem_channels"]), int(self.hp["stem_kernel"]),
                         int(self.hp["stem_stride"]), self.dims)
        self.head = nn.Dense(self.C)
        self.server = ServerCNN(self.C, self.dims)
        # the stem's feature map (SAME padding): ceil(size / stride) per spatial axis, then channels
        s = int(self.hp["stem_stride"])
        self.fmap = tuple(-(-d // s) for d in shape[:self.dims]) + (int(self.hp["stem_channels"]),)
        self.F = math.prod(self.fmap)
        self.tx = make_optimizer(self.hp)
        self.tx_server = make_optimizer({"lr": self.hp["server_lr"], "optimizer": "adam"})

    # ---- models ----
    def _x0(self):
        return jnp.zeros((1,) + tuple(self.view.input_shape), jnp.float32)

    def _edge_init(self):
        ks, kh = jax.random.split(jax.random.PRNGKey(0))   # shared by all edges
        return {"stem": self.stem.init(ks, self._x0())["params"],
                "head": self.head.init(kh, jnp.zeros((1, self.F)))["params"]}

    def _features(self, stem, x):
        return self.stem.apply({"params": stem}, x).reshape((x.shape[0], -1))

    def _edge_apply(self, p, x):
        f = self._features(p["stem"], x)
        return self.head.apply({"params": p["head"]}, f), f

    def _server_apply(self, sp, f):
        return self.server.apply({"params": sp}, f.reshape((f.shape[0],) + self.fmap))

    def _hash(self, x):
        flat = x.reshape((x.shape[0], -1)).astype(jnp.float32)
        return flat @ _projection(flat.shape[1])

    # ---- cloud ----
    def cloud_setup(self, rng):
        stem = self._edge_init()["stem"]
        return {"server": self.server.init(rng, jnp.zeros((1,) + self.fmap))["params"],
                "table": jnp.zeros((self.n_clients, self.n_slots, self.C), jnp.float32),
                "valid": jnp.zeros((self.n_clients, self.n_slots), bool),
                "stems": tmap(lambda a: jnp.broadcast_to(a, (self.n_clients,) + a.shape), stem)}

    # ---- edge ----
    def edge_setup(self, rng):
        return {"p": self._edge_init(), "h": jnp.zeros((self.n_slots, 2), jnp.float32)}

    # ---- cloud ----
    def cloud_downlink(self, cloud, tier, ids):
        return api.Rows({"z": cloud["table"][ids]}, cloud["valid"][ids])

    # ---- edge ----
    def client_init(self, es, down, rng):
        S = self.n_slots
        return {"p": es["p"], "o": self.tx.init(es["p"]), "z": down.data["z"], "zv": down.mask,
                "hold": es["h"], "h": jnp.zeros((S, 2), jnp.float32), "fill": jnp.zeros((S,), bool),
                "f": jnp.zeros((S, self.F), jnp.float32), "y": jnp.zeros((S,), jnp.int32),
                "lg": jnp.zeros((S, self.C), jnp.float32)}

    def client_step(self, cs, batch, rng):
        x, y, mask = batch["x"], batch["y"], batch["mask"]
        hb = self._hash(x)                                            # [B, 2]
        tol = 1e-6 * (1.0 + jnp.abs(hb))
        close = lambda ref: jnp.all(jnp.abs(hb[:, None] - ref[None, :]) <= tol[:, None], -1)
        hit = close(cs["hold"]) & cs["zv"][None, :]
        zt = cs["z"][jnp.argmax(hit, 1)]
        has_t = mask & jnp.any(hit, 1)
        T, a = float(self.hp["T"]), float(self.hp["alpha"])

        def loss_fn(p):
            logits, f = self._edge_apply(p, x)
            loss = xent(logits, y, mask) + a * jnp.where(has_t.any(), soft_xent(logits, zt, has_t, T=T), 0.0)
            return loss, (logits, f)

        (loss, (logits, f)), g = jax.value_and_grad(loss_fn, has_aux=True)(cs["p"])
        upd, o = self.tx.update(g, cs["o"], cs["p"])
        p = optax.apply_updates(cs["p"], upd)
        # upload slots: an example seen before this round keeps its slot (last pass wins)
        same = close(cs["h"]) & cs["fill"][None, :]
        seen = jnp.any(same, 1)
        B = x.shape[0]
        dup = jnp.any(close(hb) & jnp.tril(jnp.ones((B, B), bool), -1) & mask[None, :], 1)
        new = mask & ~seen & ~dup
        slot = jnp.where(seen, jnp.argmax(same, 1), cs["fill"].sum() + jnp.cumsum(new) - 1)
        slot = jnp.where(mask & ~dup, slot, self.n_slots)           # out of range: dropped
        put = lambda buf, v: buf.at[slot].set(v, mode="drop")
        cs = dict(cs, p=p, o=o, h=put(cs["h"], hb), fill=put(cs["fill"], True), f=put(cs["f"], f),
                  y=put(cs["y"], y.astype(jnp.int32)), lg=put(cs["lg"], logits))
        return cs, loss

    def client_final(self, cs, es, rng):
        up = {"rows": api.Rows({"f": cs["f"], "y": cs["y"], "z": cs["lg"]}, cs["fill"]),
              "stem": cs["p"]["stem"]}
        return {"p": cs["p"], "h": jnp.where(cs["fill"][:, None], cs["h"], 0.0)}, up

    # ---- cloud ----
    def cloud_update(self, cloud, rnd: api.Round, rng):
        # every client's uplink has the same shapes whatever its tier: one stack of all clients
        rows = rnd.messages["rows"]
        f = rows.data["f"].reshape((-1, self.F))
        y = rows.data["y"].reshape((-1,))
        z = rows.data["z"].reshape((-1, self.C))
        m = rows.mask.reshape((-1,))
        T, b = float(self.hp["T"]), float(self.hp["beta"])

        def loss(sp, i, ok):
            lo = self._server_apply(sp, f[i])
            return xent(lo, y[i], ok) + b * soft_xent(lo, z[i], ok, T=T)

        sp = kd.fit(self.tx_server, cloud["server"], loss, f.shape[0], int(self.hp["server_steps"]),
                    int(self.hp["server_batch"]), rng, row_weight=m)
        logits = kd.predict_rows(lambda q, v: self._server_apply(q, v), sp, f)
        cid = rnd.client_ids
        stems = rnd.messages["stem"]
        return {"server": sp,
                "table": cloud["table"].at[cid].set(logits.reshape((len(cid), self.n_slots, self.C))),
                "valid": cloud["valid"].at[cid].set(m.reshape((len(cid), self.n_slots))),
                "stems": tmap(lambda s, n: s.at[cid].set(n), cloud["stems"], stems)}

    # ---- evaluation ----
    def predict_edge(self, es, x):
        return self._edge_apply(es["p"], x)[0]

    def predict_cloud(self, cloud, x):
        which = jnp.arange(x.shape[0]) % self.n_clients
        stems = tmap(lambda a: a[which], cloud["stems"])
        f = jax.vmap(lambda s, xi: self._features(s, xi[None])[0])(stems, x)
        return kd.predict_rows(lambda q, v: self._server_apply(q, v), cloud["server"], f)

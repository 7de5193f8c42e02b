"""The harness side of an attack: who is malicious, and what the train loop does
with them. ``with_attack(inst, attack, frac, seed)`` returns the instance with
the malicious clients' data poisoned and ``inst.attack`` set to a
:class:`Byzantine`, which the train loop calls (``lsbench.harness.train_loop``):

- ``round(loop, cloud, uplinks, picks, rkey)`` right before ``cloud_update``:
  ``uplinks`` is ``{tier: stacked delivered uplink}``; the malicious sampled
  clients' rows are replaced by the attack's (re-sent through the uplink codec;
  shapes unchanged, so the bytes billed are unchanged);
- ``evaluate(loop, state)`` with the loop's evaluation: ``attack_asr_edge`` /
  ``attack_asr_cloud`` for a backdoor.

The malicious clients are ``round(frac * C)`` of the C clients, drawn from the
root seed. No view holds them; ``hidden()`` lists them with the task's hidden
data, so a program that holds them as a constant is refused by the sealer.
"""
from __future__ import annotations

import dataclasses
import weakref

import jax
import jax.numpy as jnp
import numpy as np

from lsbench.attacks import Attack

SALT = 18  # seeds the draw of malicious clients: default_rng([seed, SALT])


def draw_malicious(num_clients: int, frac: float, seed: int) -> np.ndarray:
    """bool[C]: round(frac * C) clients, drawn from the root seed."""
    m = int(round(float(frac) * num_clients))
    mask = np.zeros(num_clients, bool)
    if m:
        mask[np.random.default_rng([seed, SALT]).choice(num_clients, m, replace=False)] = True
    return mask


def with_attack(inst, attack: Attack, frac: float, seed: int, num_classes: int):
    """The instance with ``attack`` on ``round(frac * C)`` malicious clients. With
    frac = 0 every array is the clean instance's own (bit for bit)."""
    mask = draw_malicious(len(inst.train_n), frac, seed)
    x, y = inst.train_x, inst.train_y
    if attack.poisons_data and mask.any():
        x, y = x.copy(), y.copy()
        for c in np.flatnonzero(mask):
            n = int(inst.train_n[c])
            rng = np.random.default_rng([seed, SALT, int(c)])
            x[c, :n], y[c, :n] = attack.poison(x[c, :n], y[c, :n], rng, num_classes)
    hp = ",".join(f"{k}={v}" for k, v in sorted(attack.hp.items()))
    hashes = dict(inst.hashes, attack=f"{attack.name}({hp}) f={float(frac)}")
    return dataclasses.replace(inst, train_x=x, train_y=y, hashes=hashes,
                               attack=Byzantine(attack, mask))


# --------------------------------------------------------------------- flattening
def _float_idx(leaves):
    return [i for i, a in enumerate(leaves) if jnp.issubdtype(a.dtype, jnp.floating)]


def _flatten(stacked):
    """float32[k, D] of each client's floating leaves, and how to undo it."""
    leaves, tdef = jax.tree_util.tree_flatten(stacked)
    idx = _float_idx(leaves)
    k = leaves[idx[0]].shape[0] if idx else 0
    rows = [leaves[i].reshape(k, -1).astype(jnp.float32) for i in idx]
    sizes = [r.shape[1] for r in rows]

    def unflatten(u):
        out, o = list(leaves), 0
        for i, s in zip(idx, sizes):
            out[i] = u[:, o:o + s].reshape(leaves[i].shape).astype(leaves[i].dtype)
            o += s
        return jax.tree_util.tree_unflatten(tdef, out)
    return (jnp.concatenate(rows, 1) if rows else jnp.zeros((k, 0), jnp.float32)), unflatten


def _row_sig(tree, lead: bool):
    leaves, tdef = jax.tree_util.tree_flatten(tree)
    return tdef, tuple((tuple(a.shape[1:] if lead else a.shape), jnp.dtype(a.dtype)) for a in leaves)


class Byzantine:
    """Harness-side state of a task's malicious clients (``TrainInstance.attack``)."""

    def __init__(self, attack: Attack, malicious: np.ndarray):
        self.attack = attack
        self.malicious = np.asarray(malicious, bool)
        self._jit = weakref.WeakKeyDictionary()  # loop -> compiled helpers

    @property
    def active(self) -> bool:
        """Whether rounds need the hook (some client is malicious and the attack acts on
        uplinks); else the loop runs its usual compiled rounds (f = 0: bit for bit)."""
        return bool(self.malicious.any()) and self.attack.attacks_uplink

    def hidden(self) -> dict:
        return {"malicious_mask": self.malicious.astype(np.int32),
                "malicious_ids": np.flatnonzero(self.malicious).astype(np.int32)}

    def _cache(self, loop) -> dict:
        if loop not in self._jit:
            self._jit[loop] = {}
        return self._jit[loop]

    # ---- a round ------------------------------------------------------------------
    def _reference(self, loop, cloud, t, ids, up):
        """float32[k, D]: tier t's delivered downlink where it has the uplink's
        structure (per client or broadcast), else zeros."""
        cache, name = self._cache(loop), loop.inst.tiers[t]
        if ("down", t) not in cache:
            def down(c, i):
                d = loop.cloud("cloud_downlink", c, name, i)
                return (jax.vmap(loop.down.transmit)(d) if loop.per_client else loop.down.transmit(d, True))[0]
            cache[("down", t)] = jax.jit(down)
        d = cache[("down", t)](cloud, jnp.asarray(ids))
        k = len(ids)
        if not loop.per_client:
            d = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (k,) + a.shape), d)
        if _row_sig(d, True) != _row_sig(up, True):
            return jnp.zeros_like(_flatten(up)[0])
        return _flatten(d)[0]

    def round(self, loop, cloud, uplinks, picks, rkey):
        if not self.attack.attacks_uplink:
            return uplinks
        tiers = [t for t in loop.tiers if loop.inst.tiers[t] in uplinks]
        mals = {t: self.malicious[np.asarray(picks[t])] for t in tiers}
        if not any(m.any() for m in mals.values()):
            return uplinks  # nobody malicious sampled: the round is untouched
        names = [loop.inst.tiers[t] for t in tiers]
        flat = {t: _flatten(uplinks[n]) for t, n in zip(tiers, names)}
        refs = {t: self._reference(loop, cloud, t, picks[t], uplinks[n]) for t, n in zip(tiers, names)}
        # one group of all tiers when their uplinks match (statistics over every sampled client)
        same = len({_row_sig(uplinks[n], True) for n in names}) == 1
        groups = [tiers] if same else [[t] for t in tiers]
        out = dict(uplinks)
        cache = self._cache(loop)
        if "attack" not in cache:
            cache["attack"] = jax.jit(self._attack)
            cache["send"] = jax.jit(jax.vmap(lambda m: loop.up.transmit(m, True)[0]))
        for g, group in enumerate(groups):
            u = jnp.concatenate([flat[t][0] for t in group])
            ref = jnp.concatenate([refs[t] for t in group])
            mal = jnp.asarray(np.concatenate([mals[t] for t in group]))
            new = cache["attack"](u, mal, ref, jax.random.fold_in(jax.random.fold_in(rkey, 20_000), g))
            o = 0
            for t in group:
                k, name = len(picks[t]), loop.inst.tiers[t]
                sent = cache["send"](flat[t][1](new[o:o + k]))  # through the uplink codec
                m = jnp.asarray(mals[t])
                out[name] = jax.tree_util.tree_map(
                    lambda a, b: jnp.where(m.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), sent, uplinks[name])
                o += k
        return out

    def _attack(self, u, mal, ref, key):
        seen = u if self.attack.omniscient else jnp.where(mal[:, None], u, 0.0)
        new = self.attack.uplink(seen, mal, ref, key)
        return jnp.where(mal[:, None], jnp.asarray(new, jnp.float32), u)

    # ---- evaluation -----------------------------------------------------------------
    def evaluate(self, loop, state) -> dict:
        """``attack_asr_edge`` (the global edge model, else the mean over clients' edge
        models) and ``attack_asr_cloud``: the share of triggered global test inputs
        whose true label is not the target that the model classifies as the target."""
        a = self.attack
        if a.target is None:
            return {}
        cache = self._cache(loop)
        if "asr" not in cache:
            gx, gy = np.asarray(loop.inst.global_test_x), np.asarray(loop.inst.global_test_y)
            tx = jnp.asarray(a.trigger(gx[gy != a.target]))
            hit = lambda logits: (jnp.argmax(logits, -1) == a.target).astype(jnp.float32).mean()  # noqa: E731
            fns = {}
            for key, fname in (("attack_asr_edge", "predict_global_edge"), ("attack_asr_cloud", "predict_cloud")):
                if loop.cloud.shape(fname, state["cloud"], tx) is not None:
                    fns[key] = jax.jit(lambda c, f=fname: hit(loop.cloud(f, c, tx)))
            per_tier = {t: jax.jit(lambda et, t=t: jax.vmap(
                lambda es: hit(loop.edge(t)("predict_edge", es, tx)))(et)) for t in loop.tiers}
            cache["asr"] = (fns, per_tier)
        fns, per_tier = cache["asr"]
        out = {k: float(f(state["cloud"])) for k, f in fns.items()}
        if "attack_asr_edge" not in out:
            out["attack_asr_edge"] = float(np.concatenate(
                [np.asarray(per_tier[t](state["edge"][t])) for t in loop.tiers]).mean())
        return out

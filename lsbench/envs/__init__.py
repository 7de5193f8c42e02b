"""Pure-JAX planning environments (fogmaze, slidingtile) and the planning-track
helpers they share: packed action messages, episode metrics, budget curves.

Actions are 0..3 = up, right, down, left everywhere. A cloud answer of ``k``
actions travels packed 2 bits each in ``ceil(k/4)`` uint8 bytes.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

DIRS = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]], np.int32)  # up, right, down, left
NUM_ACTIONS = 4


def slip(key, action, p: float):
    """With probability ``p`` the action slips to one of the other three (uniformly).
    Returns (action taken, new key). The key lives in the env state: hidden from both sides."""
    import jax
    key, k1, k2 = jax.random.split(key, 3)
    other = (action + 1 + jax.random.randint(k2, (), 0, NUM_ACTIONS - 1)) % NUM_ACTIONS
    return jnp.where(jax.random.uniform(k1) < p, other, action).astype(jnp.int32), key


def packed_len(k: int) -> int:
    return math.ceil(k / 4)


def pack_actions(actions):
    """int[k] in 0..3 -> uint8[ceil(k/4)], 2 bits each, first action in the low bits."""
    a = jnp.asarray(actions, jnp.uint8)
    k = a.shape[0]
    a = jnp.pad(a, (0, 4 * packed_len(k) - k)).reshape(-1, 4)
    return (a[:, 0] | (a[:, 1] << 2) | (a[:, 2] << 4) | (a[:, 3] << 6)).astype(jnp.uint8)


def unpack_actions(packed, k: int):
    p = jnp.asarray(packed, jnp.uint8)
    a = jnp.stack([p & 3, (p >> 2) & 3, (p >> 4) & 3, p >> 6], axis=-1).reshape(-1)
    return a[:k].astype(jnp.int32)


def pack_nibbles(x):
    """uint[n] in 0..15 -> uint8[ceil(n/2)] (first value in the low nibble)."""
    x = jnp.asarray(x, jnp.uint8)
    n = x.shape[0]
    x = jnp.pad(x, (0, 2 * math.ceil(n / 2) - n)).reshape(-1, 2)
    return (x[:, 0] | (x[:, 1] << 4)).astype(jnp.uint8)


def unpack_nibbles(p, n: int):
    p = jnp.asarray(p, jnp.uint8)
    return jnp.stack([p & 15, p >> 4], axis=-1).reshape(-1)[:n].astype(jnp.int32)


# ---- metrics ------------------------------------------------------------------
def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of k successes in n trials."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def episode_metrics(traj, opt_len, ref_success=None) -> dict:
    """Task metrics from the plan loop's per-episode sums (``traj``) and the
    optimal lengths. ``ref_success = (edge_only, cloud_only)`` adds gap_recovered."""
    succ = np.asarray(traj["info"]["success"]).any(1)
    steps = np.asarray(traj["steps"], np.float64)
    calls = np.asarray(traj["calls"], np.float64)
    opt = np.asarray(opt_len, np.float64)
    n = succ.size
    lo, hi = wilson(int(succ.sum()), n)
    spl = succ * opt / np.maximum(steps, opt)
    m = {
        "success": float(succ.mean()), "success_lo95": lo, "success_hi95": hi,
        "steps": float(steps.mean()), "spl": float(spl.mean()),
        "calls_per_episode": float(calls.mean()),
        "call_rate": float(calls.sum() / max(steps.sum(), 1.0)),
        "bytes_up_per_episode": float(np.mean(traj["bytes_up"])),
        "bytes_down_per_episode": float(np.mean(traj["bytes_down"])),
        "peer_bytes_per_episode": float(np.mean(traj["peer_bytes"])),
        "edge_flops_per_episode": float(np.mean(traj["edge_flops"])),
        "cloud_flops_per_episode": float(np.mean(traj["cloud_flops"])),
        "cloud_nodes_per_episode": float(np.mean(traj["cloud_nodes"])),
    }
    if ref_success is not None:
        m["gap_recovered"] = gap_recovered(m["success"], *ref_success)
    return m


def gap_recovered(success, edge_success, cloud_success) -> float:
    """Share of the edge-to-cloud success gap a method closes (RouteLLM's PGR)."""
    gap = cloud_success - edge_success
    return float((success - edge_success) / gap) if gap > 1e-9 else float("nan")


def budget_summary(points, edge_success, cloud_success, cloud_calls,
                   fractions=(0.05, 0.2)) -> dict:
    """From several runs' ``(calls_per_episode, success)`` points (a sweep),
    returns the best success and gap recovered within call budgets of
    ``fractions`` x cloud-only's calls per episode. Edge-only's (0 calls,
    edge_success) point is always available; no interpolation between points."""
    pts = [(0.0, float(edge_success))] + [(float(c), float(s)) for c, s in points]
    out = {}
    for f in fractions:
        budget = f * cloud_calls
        best = max(s for c, s in pts if c <= budget + 1e-9)
        tag = f"{round(100 * f)}pct"
        out[f"success_at_{tag}"] = best
        out[f"gap_recovered_at_{tag}"] = gap_recovered(best, edge_success, cloud_success)
    return out


def pick_on_validation(rows, cloud_val_calls, frac=0.3):
    """The run (a dict with ``validation`` metrics) with the best validation success
    among those whose validation calls per episode are within ``frac`` x cloud-only's
    validation calls; None if none is. Operating points are picked here, never on test."""
    ok = [r for r in rows if r.get("validation")
          and r["validation"]["calls_per_episode"] <= frac * cloud_val_calls + 1e-9]
    return max(ok, key=lambda r: r["validation"]["success"]) if ok else None


# ---- rollouts (task-side: expert data, DAgger, calibration, references) -------
def rollout(env, insts, T: int, act, label, keep_obs: bool = False, memory=None):
    """Runs ``act(obs, inst, env_state) -> action`` on every instance for T steps
    (vmapped; episodes freeze when done). Returns per step [E, T]: ``x`` uint8
    features, ``y`` expert labels ``label(inst, env_state)``, ``active``, and per
    episode ``success``; ``obs`` too when ``keep_obs``. A policy with memory:
    ``memory`` is its initial memory and ``act(obs, inst, env_state, mem) ->
    (action, mem)``; ``keep_obs`` then also keeps ``mem`` (the memory before each step)."""
    import jax

    def episode(inst):
        s, obs, _ = env.reset(inst)

        def body(c, _):
            s, obs, done, mem = c
            if memory is None:
                a, mem2 = act(obs, inst, s), mem
            else:
                a, mem2 = act(obs, inst, s, mem)
            rec = {"x": env.featurize(obs).astype(jnp.uint8), "y": label(inst, s), "active": ~done}
            if keep_obs:
                rec["obs"] = obs
                if memory is not None:
                    rec["mem"] = mem
            s2, obs2, d2, info = env.step(s, a)
            keep = lambda n, o: jax.tree_util.tree_map(lambda u, v: jnp.where(done, v, u), n, o)
            rec["success"] = info["success"] & ~done
            return (keep(s2, s), keep(obs2, obs), done | d2, keep(mem2, mem)), rec

        m0 = jnp.zeros((0,), jnp.float32) if memory is None else memory
        _, rec = jax.lax.scan(body, (s, obs, jnp.array(False), m0), None, length=T)
        rec["success"] = rec["success"].any()
        return rec

    return jax.vmap(episode)(insts)


def flat_rows(rec):
    """[E, T] rollout records -> (x[E*T, D], y[E*T], w[E*T]) for training."""
    x = rec["x"].reshape((-1,) + rec["x"].shape[2:])
    return x, rec["y"].reshape(-1), rec["active"].reshape(-1).astype(jnp.float32)

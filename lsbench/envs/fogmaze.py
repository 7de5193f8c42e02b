"""FogMaze: braided N x N mazes; the edge sees a window, the cloud the whole map.

The maze lives on a G x G block grid (G = 2N + 1): rooms at odd coordinates,
walls or passages between them, a solid border. Mazes come from a random
spanning tree (Prim on random edge weights) with a ``braid`` fraction of the
remaining interior walls knocked out, so there are loops and wall-following
fails. Everything here is pure JAX and vmaps over mazes.

Edge observation (the declared window, nothing else):
  view      uint8[(2r+1)^2]  1 = wall, egocentric, outside the grid = wall
  goal_vec  int8[2]          goal - pos, each clipped to [-clip, clip]
  pos       uint8[2]         the agent's own position (for the uplink)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lsbench.envs import DIRS


def _edges(n):
    """Endpoints (cell ids) and wall-cell coordinates of the 2n(n-1) interior edges."""
    a, b, wr, wc = [], [], [], []
    for r in range(n):
        for c in range(n):
            if c + 1 < n:
                a.append(r * n + c); b.append(r * n + c + 1); wr.append(2 * r + 1); wc.append(2 * c + 2)
            if r + 1 < n:
                a.append(r * n + c); b.append((r + 1) * n + c); wr.append(2 * r + 2); wc.append(2 * c + 1)
    return tuple(np.array(v, np.int32) for v in (a, b, wr, wc))


def generate(key, n: int, braid: float):
    """One braided maze: bool[G, G] free cells."""
    ea, eb, wr, wc = _edges(n)
    ea, eb = jnp.asarray(ea), jnp.asarray(eb)
    k1, k2 = jax.random.split(key)
    w = jax.random.uniform(k1, (ea.size,))

    def add(i, s):
        in_tree, open_ = s
        frontier = in_tree[ea] ^ in_tree[eb]
        e = jnp.argmin(jnp.where(frontier, w, 2.0))
        return in_tree.at[ea[e]].set(True).at[eb[e]].set(True), open_.at[e].set(True)

    in_tree = jnp.zeros(n * n, bool).at[0].set(True)
    _, open_ = jax.lax.fori_loop(0, n * n - 1, add, (in_tree, jnp.zeros(ea.size, bool)))
    open_ = open_ | (jax.random.uniform(k2, (ea.size,)) < braid)
    G = 2 * n + 1
    rooms = np.zeros((G, G), bool)
    rooms[1::2, 1::2] = True
    return jnp.asarray(rooms).at[wr, wc].set(open_)


def bfs_distance(free, goal):
    """Shortest-path steps from every free cell to ``goal`` (int32[G, G]; G*G where unreachable)."""
    G = free.shape[0]
    inf = G * G
    d0 = jnp.where(free, inf, inf).at[goal[0], goal[1]].set(0)

    def body(s):
        d, _ = s
        p = jnp.pad(d, 1, constant_values=inf)
        nb = jnp.minimum(jnp.minimum(p[:-2, 1:-1], p[2:, 1:-1]), jnp.minimum(p[1:-1, :-2], p[1:-1, 2:]))
        d2 = jnp.where(free, jnp.minimum(d, nb + 1), inf)
        return d2, jnp.any(d2 != d)

    return jax.lax.while_loop(lambda s: s[1], body, (d0, jnp.array(True)))[0]


def make_instance(key, n: int, braid: float, min_dist: int):
    """A maze with a goal room and a start room at least ``min_dist`` steps away
    (the farthest room if none is). Returns free, dist (to goal), start, goal, opt."""
    km, kg, ks = jax.random.split(key, 3)
    free = generate(km, n, braid)
    G = 2 * n + 1
    cell = lambda i: jnp.stack([2 * (i // n) + 1, 2 * (i % n) + 1]).astype(jnp.int32)
    goal = cell(jax.random.randint(kg, (), 0, n * n))
    dist = bfs_distance(free, goal)
    droom = dist[1::2, 1::2].reshape(-1)
    ok = droom >= min_dist
    score = jnp.where(ok, jax.random.uniform(ks, (n * n,)), -1.0 + droom / (G * G))
    start = cell(jnp.argmax(score))
    return {"free": free, "dist": dist.astype(jnp.int16), "start": start, "goal": goal,
            "opt": dist[start[0], start[1]].astype(jnp.int32)}


def expert_action(dist, pos):
    """The first action (up, right, down, left order) that lowers the distance."""
    dist = jnp.asarray(dist)
    G = dist.shape[0]
    nxt = jnp.clip(pos[None, :] + DIRS, 0, G - 1)
    d = dist[nxt[:, 0], nxt[:, 1]].astype(jnp.int32)
    return jnp.argmin(d).astype(jnp.int32)


def plan(dist, pos, k: int):
    """The next ``k`` expert actions from ``pos`` (the solver's answer)."""
    dist = jnp.asarray(dist)

    def body(p, _):
        a = expert_action(dist, p)
        at_goal = dist[p[0], p[1]] == 0
        return jnp.where(at_goal, p, p + jnp.asarray(DIRS)[a]), a
    return jax.lax.scan(body, pos.astype(jnp.int32), None, length=k)[1]


def nodes_expanded(dist, pos):
    """Cost of one exact answer: the rooms+passages a backward BFS from the goal
    expands before it reaches ``pos`` (every cell no farther than ``pos``)."""
    d = jnp.asarray(dist).astype(jnp.int32)
    return jnp.sum(d <= d[pos[0], pos[1]]).astype(jnp.int32)


class FogMaze:
    """The environment for one configuration (static sizes)."""

    def __init__(self, n: int, view_radius: int = 2, clip: int = 4):
        self.n, self.G, self.r, self.clip = n, 2 * n + 1, view_radius, clip
        self.view_size = (2 * view_radius + 1) ** 2

    def observe(self, free, goal, pos):
        r = self.r
        walls = jnp.pad(~free, r, constant_values=True)
        view = jax.lax.dynamic_slice(walls, (pos[0], pos[1]), (2 * r + 1, 2 * r + 1))
        gv = jnp.clip(goal - pos, -self.clip, self.clip)
        return {"view": view.reshape(-1).astype(jnp.uint8), "goal_vec": gv.astype(jnp.int8),
                "pos": pos.astype(jnp.uint8)}

    def reset(self, inst):
        pos = jnp.asarray(inst["start"], jnp.int32)
        budget = 2 * jnp.asarray(inst["opt"], jnp.int32) + 10
        env = {"free": inst["free"], "goal": inst["goal"], "pos": pos, "t": jnp.int32(0),
               "budget": budget}
        world = {"free": inst["free"], "dist": inst["dist"], "goal": inst["goal"]}
        return env, self.observe(inst["free"], inst["goal"], pos), world

    def step(self, env, action):
        new = env["pos"] + jnp.asarray(DIRS)[action]
        valid = env["free"][new[0], new[1]]
        pos = jnp.where(valid, new, env["pos"])
        t = env["t"] + 1
        success = jnp.all(pos == env["goal"])
        done = success | (t >= env["budget"])
        env = dict(env, pos=pos, t=t)
        return env, self.observe(env["free"], env["goal"], pos), done, \
            {"success": success, "invalid": ~valid}

    # ---- edge-side helpers (functions of the observation only) ---------------
    def featurize(self, obs):
        c = self.clip
        gv = obs["goal_vec"].astype(jnp.int32) + c
        oh = jax.nn.one_hot(gv, 2 * c + 1).reshape(-1)
        return jnp.concatenate([obs["view"].astype(jnp.float32), oh])

    @property
    def num_features(self):
        return self.view_size + 2 * (2 * self.clip + 1)

    def valid(self, obs, action):
        side = 2 * self.r + 1
        centre = self.r * side + self.r
        offs = jnp.array([-side, 1, side, -1], jnp.int32)
        return obs["view"][centre + offs[action]] == 0

    def state_key(self, obs):
        return obs["pos"][0].astype(jnp.int32) * 256 + obs["pos"][1].astype(jnp.int32)

    def progress(self, obs):
        """Heuristic distance seen by the edge (L1 of the clipped goal vector)."""
        return jnp.abs(obs["goal_vec"].astype(jnp.int32)).sum()

    def encode_up(self, obs):
        return {"pos": obs["pos"]}  # 2 uint8: row, col

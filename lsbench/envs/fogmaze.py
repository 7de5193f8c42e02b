"""FogMaze: braided N x N mazes that change under the plan; the edge sees a
window, the cloud knows the published map (not the moment).

The maze lives on a G x G block grid (G = 2N + 1): rooms at odd coordinates,
walls or passages between them, a solid border. Mazes come from a random
spanning tree (Prim on random edge weights) with a ``braid`` fraction of the
remaining interior walls knocked out, so there are loops and wall-following
fails. Everything here is pure JAX and vmaps over mazes.

Dynamics the published map cannot foresee (v3), all in the env state, hidden
from both sides: each action slips to one of the other three with probability
``slip``; ``doors`` passages open and close on hidden schedules (door i is
shut while ``(t + phase_i) mod period_i < period_i // 3``); a shut door blocks
entering. The edge sees the live map in its window; the cloud's ``world`` is
the published map and the goal only (not the start, not the doors' state).

Edge observation (the declared window, nothing else):
  view      uint8[(2r+1)^2]  1 = wall or shut door, egocentric, outside the grid = wall
  goal_vec  int8[2]          goal - pos, each clipped to [-clip, clip]
  pos       uint8[2]         the agent's own position (for the uplink)

The cloud's planner (:func:`bfs_field`) is a breadth-first wavefront over the
published map with the edge's reported window overlaid, written as ``sweeps``
3x3 convolutions in a ``lax.scan`` so the FLOP meter counts it: each sweep is
one ``conv_general_dilated`` of the G x G frontier, ``2 (3G - 2)^2`` matmul
FLOPs (taps on padding are not counted); see :func:`planner_flops`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lsbench.envs import DIRS, slip as _slip


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


def make_instance(key, n: int, braid: float, min_dist: int, doors: int = 0):
    """A maze with a goal room and a start room at least ``min_dist`` steps away
    (the farthest room if none is). Returns free, dist (to goal, on the published
    map), start, goal, opt, and the hidden dynamics: ``seed`` (the slip key's
    data), ``door`` (int32[doors, 2] passage cells), ``period``, ``phase``."""
    km, kg, ks, kd, kp, kr = jax.random.split(key, 6)
    free = generate(km, n, braid)
    G = 2 * n + 1
    cell = lambda i: jnp.stack([2 * (i // n) + 1, 2 * (i % n) + 1]).astype(jnp.int32)
    goal = cell(jax.random.randint(kg, (), 0, n * n))
    dist = bfs_distance(free, goal)
    droom = dist[1::2, 1::2].reshape(-1)
    ok = droom >= min_dist
    score = jnp.where(ok, jax.random.uniform(ks, (n * n,)), -1.0 + droom / (G * G))
    start = cell(jnp.argmax(score))
    # Doors: open passages (between two rooms), chosen at random.
    rc = np.indices((G, G)).reshape(2, -1).T
    passage = jnp.asarray(((rc[:, 0] + rc[:, 1]) % 2 == 1).reshape(G, G)) & free
    dscore = jnp.where(passage.reshape(-1), jax.random.uniform(kd, (G * G,)), -1.0)
    idx = jax.lax.top_k(dscore, doors)[1] if doors else jnp.zeros((0,), jnp.int32)
    period = jax.random.randint(kp, (doors,), 6, 13)
    return {"free": free, "dist": dist.astype(jnp.int16), "start": start, "goal": goal,
            "opt": dist[start[0], start[1]].astype(jnp.int32),
            "seed": kr,
            "door": jnp.stack([idx // G, idx % G], 1).astype(jnp.int32), "period": period.astype(jnp.int32),
            "phase": jax.random.randint(jax.random.fold_in(kp, 1), (doors,), 0, 12).astype(jnp.int32)}


def live_free(free, door, period, phase, t):
    """The map at time t: the published map minus the doors shut at t."""
    shut = (t + phase) % period < period // 3
    return jnp.asarray(free).at[door[:, 0], door[:, 1]].min(~shut)


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


def nodes_expanded(free):
    """Secondary cost of one planner answer: the wavefront expands every free cell
    of the known map."""
    return jnp.sum(jnp.asarray(free).astype(jnp.int32)).astype(jnp.int32)


PLUS = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], np.float32)


def bfs_field(free, goal, sweeps: int):
    """Steps to ``goal`` from every cell of the map ``free`` (bool[G, G]), by a
    wavefront of ``sweeps`` 3x3 convolutions (``sweeps + 1`` where not reached).
    Metered: ``sweeps`` x one ``conv_general_dilated`` (see :func:`planner_flops`)."""
    G = free.shape[0]
    reach0 = jnp.zeros((G, G), jnp.float32).at[goal[0], goal[1]].set(1.0)
    d0 = jnp.full((G, G), sweeps + 1, jnp.int32).at[goal[0], goal[1]].set(0)
    kern = jnp.asarray(PLUS)[None, None]

    def body(c, t):
        reach, d = c
        nb = jax.lax.conv_general_dilated(reach[None, None], kern, (1, 1), "SAME")[0, 0]
        new = (nb > 0) & free & (reach == 0)
        return (jnp.where(new, 1.0, reach), jnp.where(new, t + 1, d)), None

    return jax.lax.scan(body, (reach0, d0), jnp.arange(sweeps, dtype=jnp.int32))[0][1]


def planner_flops(G: int, sweeps: int) -> int:
    """Matmul FLOPs of one planner answer: ``sweeps`` SAME 3x3 convolutions of a
    G x G map, ``2 (3G - 2)^2`` each (the meter's real (output, tap) pairs)."""
    return sweeps * 2 * (3 * G - 2) ** 2


def known_map(free, pos, view, r: int):
    """The published map with the edge's reported window (1 = blocked) overlaid at ``pos``."""
    side = 2 * r + 1
    walls = jnp.pad(~free, r, constant_values=True)
    walls = jax.lax.dynamic_update_slice(walls, view.reshape(side, side) > 0, (pos[0], pos[1]))
    return ~walls[r:-r, r:-r]


def field_plan(d, pos, k: int):
    """The next ``k`` greedy actions down the field ``d`` (no-ops once at the goal)."""
    G = d.shape[0]

    def body(p, _):
        nxt = jnp.clip(p[None, :] + jnp.asarray(DIRS), 0, G - 1)
        a = jnp.argmin(d[nxt[:, 0], nxt[:, 1]]).astype(jnp.int32)
        return jnp.where(d[p[0], p[1]] == 0, p, nxt[a]), a
    return jax.lax.scan(body, pos.astype(jnp.int32), None, length=k)[1]


class FogMaze:
    """The environment for one configuration (static sizes)."""

    def __init__(self, n: int, view_radius: int = 2, clip: int = 4, slip: float = 0.0, sweeps: int = 0,
                 budget=(2, 10)):
        self.n, self.G, self.r, self.clip = n, 2 * n + 1, view_radius, clip
        self.budget = (float(budget[0]), int(budget[1]))  # steps per episode: a x opt + b
        self.view_size = (2 * view_radius + 1) ** 2
        self.slip = float(slip)
        self.sweeps = int(sweeps) or self.G * self.G // 2

    def observe(self, free, goal, pos):
        r = self.r
        walls = jnp.pad(~free, r, constant_values=True)
        view = jax.lax.dynamic_slice(walls, (pos[0], pos[1]), (2 * r + 1, 2 * r + 1))
        gv = jnp.clip(goal - pos, -self.clip, self.clip)
        return {"view": view.reshape(-1).astype(jnp.uint8), "goal_vec": gv.astype(jnp.int8),
                "pos": pos.astype(jnp.uint8)}

    def _live(self, env, t):
        return live_free(env["free"], env["door"], env["period"], env["phase"], t)

    def reset(self, inst):
        pos = jnp.asarray(inst["start"], jnp.int32)
        a, b = self.budget
        budget = jnp.floor(a * jnp.asarray(inst["opt"], jnp.float32)).astype(jnp.int32) + b
        env = {"free": inst["free"], "goal": inst["goal"], "pos": pos, "t": jnp.int32(0),
               "budget": budget, "key": jnp.asarray(inst["seed"], jnp.uint32), "door": inst["door"],
               "period": inst["period"], "phase": inst["phase"]}
        world = {"free": inst["free"], "goal": inst["goal"]}  # the published map: no start, no doors
        return env, self.observe(self._live(env, 0), inst["goal"], pos), world

    def step(self, env, action):
        a, key = _slip(env["key"], action, self.slip)
        new = env["pos"] + jnp.asarray(DIRS)[a]
        valid = self._live(env, env["t"])[new[0], new[1]]
        pos = jnp.where(valid, new, env["pos"])
        t = env["t"] + 1
        success = jnp.all(pos == env["goal"])
        done = success | (t >= env["budget"])
        env = dict(env, pos=pos, t=t, key=key)
        return env, self.observe(self._live(env, t), env["goal"], pos), done, \
            {"success": success, "invalid": ~valid, "slipped": a != action}

    # ---- the cloud's planner (metered) ------------------------------------------
    def plan(self, world, up, k: int):
        """The next k actions from the reported position, on the published map with the
        reported window overlaid (``sweeps`` metered conv sweeps + a greedy descent)."""
        pos = up["pos"].astype(jnp.int32)
        view = jnp.unpackbits(up["view"])[:self.view_size]
        free = known_map(world["free"].astype(bool), pos, view, self.r)
        return field_plan(bfs_field(free, world["goal"].astype(jnp.int32), self.sweeps), pos, k)

    def planner_flops(self) -> int:
        return planner_flops(self.G, self.sweeps)

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

    def expect(self, obs, action):
        """The state key the action leads to if nothing unforeseen happens."""
        p = obs["pos"].astype(jnp.int32) + jnp.where(self.valid(obs, action), jnp.asarray(DIRS)[action], 0)
        return p[0] * 256 + p[1]

    def progress(self, obs):
        """Heuristic distance seen by the edge (L1 of the clipped goal vector)."""
        return jnp.abs(obs["goal_vec"].astype(jnp.int32)).sum()

    def encode_up(self, obs):
        """The position (2 uint8) and the window as bits (ceil((2r+1)^2 / 8) bytes)."""
        return {"pos": obs["pos"], "view": jnp.packbits(obs["view"] > 0)}


# ---- a learned cloud planner: a value iteration network (Tamar et al. 2016) -------
def _conv(x, w):
    """SAME 3x3 convolution of x[C, G, G] by w[O, C, 3, 3] -> [O, G, G] (metered)."""
    return jax.lax.conv_general_dilated(x[None], w, (1, 1), "SAME")[0]


def vin_init(key, channels: int, tap: float = 4.0):
    """VIN weights: a reward conv of (map, goal), a Q conv of (reward, value) with
    ``channels`` outputs, and a head from the Q channels at the agent's cell to 4 actions.
    Channel c starts looking one step in direction c mod 4 (its V taps' softmax logits
    ``tap`` there, 0 elsewhere) and the head starts as channel -> its direction: a
    wavefront's structure; the reward (what is a wall, where the goal is) starts random."""
    k1, k2, k3 = jax.random.split(key, 3)
    taps = np.zeros((channels, 3, 3), np.float32)
    for c in range(channels):
        taps[c, 1 + DIRS[c % 4][0], 1 + DIRS[c % 4][1]] = tap
    wq = jnp.stack([0.1 * jax.random.normal(k2, (channels, 3, 3)), jnp.asarray(taps)], 1)
    head = np.tile(np.eye(4, dtype=np.float32), (-(-channels // 4), 1))[:channels]
    return {"wr": 0.1 * jax.random.normal(k1, (1, 2, 3, 3)), "br": jnp.zeros(()), "wq": wq,
            "wo": jnp.asarray(head) + 0.01 * jax.random.normal(k3, (channels, 4))}


def vin_q(p, free, goal, sweeps: int):
    """The VIN's Q channels [C, G, G] on map ``free`` with ``goal``: a learned reward map,
    then ``sweeps`` rounds of V = max_c Q, Q = conv(reward, V), and one more Q. Each
    channel's taps on V are a softmax (non-negative, sum 1), so V stays bounded."""
    G = free.shape[0]
    x = jnp.stack([free.astype(jnp.float32), jnp.zeros((G, G), jnp.float32).at[goal[0], goal[1]].set(1.0)])
    r = _conv(x, p["wr"])[0] + p["br"]
    wv = jax.nn.softmax(p["wq"][:, 1].reshape(-1, 9), -1).reshape(-1, 3, 3)
    w = jnp.stack([p["wq"][:, 0], wv], 1)
    q_of = lambda v: _conv(jnp.stack([r, v]), w)
    v = jax.lax.scan(lambda v, _: (jnp.max(q_of(v), 0), None), jnp.zeros((G, G), jnp.float32), None,
                     length=sweeps)[0]
    return q_of(v)


def vin_logits(p, q):
    """Action logits at every cell, [G, G, 4] (training: labels at every free cell)."""
    return jnp.einsum("cgh,ca->gha", q, p["wo"])


def vin_plan(p, free, goal, pos, k: int, sweeps: int):
    """The VIN's next k actions from ``pos``: its greedy action at each cell, walked on the
    map it was given (a move into a wall stays put; no-ops once at the goal)."""
    q = vin_q(p, free, goal, sweeps)
    G = free.shape[0]

    def body(c, _):
        a = jnp.argmax(q[:, c[0], c[1]] @ p["wo"]).astype(jnp.int32)
        nxt = jnp.clip(c + jnp.asarray(DIRS)[a], 0, G - 1)
        stay = jnp.all(c == goal) | ~free[nxt[0], nxt[1]]
        return jnp.where(stay, c, nxt), a
    return jax.lax.scan(body, pos.astype(jnp.int32), None, length=k)[1]


def vin_flops(G: int, sweeps: int, channels: int, k: int) -> int:
    """Matmul FLOPs of one VIN answer of k actions: the reward conv (2 -> 1), sweeps + 1 Q
    convs (2 -> channels), each ``2 C_in C_out (3G - 2)^2``, and k heads (channels x 4)."""
    pairs = (3 * G - 2) ** 2
    return 2 * 2 * pairs + (sweeps + 1) * 2 * 2 * channels * pairs + k * 2 * channels * 4

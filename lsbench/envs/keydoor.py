"""KeyDoorRooms: rooms behind locked doors; keys open the doors of their colour.
The cloud knows the published layout (where the keys should be), not the moment.

Layout: an R x Q grid of rooms with 3 x 3 interiors (an H x W cell grid, H = 4R + 1,
W = 4Q + 1: walls on every fourth row and column). Rooms are joined along a random
spanning tree by one-cell doorways; C doorways on the start-to-goal chain are doors
of colours 0..C-1, locked in nested order (key C-1 lies on the start's side of
every door, key c behind door c + 1), so every episode needs keys. Stepping on a
key picks it up (``keys``, a bit mask); a door cell can be entered only while its
key is held. There are no slips: what the published map cannot foresee is where the
keys really are. Each key, with probability ``misplace``, lies on another cell of
its room (hidden task data; the edge sees it when it is in the room, since a 5 x 5
window covers a whole 3 x 3 room).

Edge observation (the window, nothing else):
  view      uint8[(2r+1)^2]  0 free, 1 wall (or outside), 2 + c door of colour c,
                             2 + C + c key of colour c lying there (live)
  goal_vec  int8[2]          goal - pos, clipped to [-clip, clip]
  pos       uint8[2]         the agent's position
  keys      uint8            the keys it holds (bit c = colour c)

The cloud's ``world`` is the published layout: walls, doors (cells and colours),
the keys' published cells and the goal (no start, no live key cells).

The cloud planner (:meth:`KeyDoor.field`) is a backward wavefront over the product
of cells and key masks: ``sweeps`` steps of one batched 3 x 3 convolution of the
``M = 2^C`` reach maps (one per mask) in a ``lax.scan``, over the published map
with the keys the edge's window shows moved to where it shows them. It answers
with actions (greedy descent) or with subgoals (:meth:`KeyDoor.subgoals`: the
doorways, doors, keys and goal on the greedy path, as cell ids). Its cost is
``M * 2 (3H - 2)(3W - 2)`` matmul FLOPs per sweep (:func:`planner_flops`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lsbench.envs import DIRS, pack_nibbles, unpack_nibbles

PLUS = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], np.float32)
FREE, WALL = 0, 1


# ---- instances (numpy, on the host; deterministic from the rng) ----------------------
def _tree_path(adj, a, b):
    """Edges (as frozensets of room ids) on the tree path from room a to room b."""
    prev, todo = {a: None}, [a]
    while todo:
        u = todo.pop()
        for v in adj[u]:
            if v not in prev:
                prev[v] = u
                todo.append(v)
    out, u = [], b
    while prev[u] is not None:
        out.append(frozenset((u, prev[u])))
        u = prev[u]
    return out[::-1]


def _component(adj, a, cut):
    seen, todo = {a}, [a]
    while todo:
        u = todo.pop()
        for v in adj[u]:
            if v not in seen and frozenset((u, v)) not in cut:
                seen.add(v)
                todo.append(v)
    return seen


def generate(rng: np.random.Generator, R: int, Q: int, C: int, misplace: float) -> dict:
    """One solvable instance (numpy). Rooms are ids ``i * Q + j``."""
    H, W = 4 * R + 1, 4 * Q + 1
    n = R * Q
    pairs = [(i * Q + j, i * Q + j + 1) for i in range(R) for j in range(Q - 1)] + \
            [(i * Q + j, (i + 1) * Q + j) for i in range(R - 1) for j in range(Q)]
    while True:
        parent = list(range(n))

        def find(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x
        adj = {u: [] for u in range(n)}
        for e in rng.permutation(len(pairs)):  # random spanning tree (Kruskal, random order)
            a, b = pairs[e]
            if find(a) != find(b):
                parent[find(a)] = find(b)
                adj[a].append(b)
                adj[b].append(a)
        goal_room = int(rng.integers(n))
        dist = {r: len(_tree_path(adj, goal_room, r)) for r in range(n)}
        far = max(dist.values())
        start_room = int(rng.choice([r for r in range(n) if dist[r] == far]))
        cut, locks, key_rooms, target = set(), [], [], goal_room
        for c in range(C):
            path = [e for e in _tree_path(adj, start_room, target) if e not in cut]
            if not path:
                break
            e = path[int(rng.integers(len(path)))]
            cut.add(e)
            locks.append(e)
            comp = _component(adj, start_room, cut)
            cand = sorted(comp - {start_room}) if c < C - 1 else sorted(comp)
            if not cand:
                break
            target = int(rng.choice(cand))
            key_rooms.append(target)
        if len(key_rooms) == C:
            break
    wall = np.ones((H, W), bool)
    for r in range(n):
        i, j = divmod(r, Q)
        wall[4 * i + 1:4 * i + 4, 4 * j + 1:4 * j + 4] = False
    door = np.full((H, W), -1, np.int8)
    for u in range(n):
        for v in adj[u]:
            if u < v:
                (i, j), (i2, j2) = divmod(u, Q), divmod(v, Q)
                o = int(rng.integers(3))
                cell = (4 * i + 1 + o, 4 * j + 4) if i == i2 else (4 * i + 4, 4 * j + 1 + o)
                wall[cell] = False
                e = frozenset((u, v))
                if e in locks:
                    door[cell] = locks.index(e)

    def cells_of(room):
        i, j = divmod(room, Q)
        return [(4 * i + 1 + a, 4 * j + 1 + b) for a in range(3) for b in range(3)]

    def pick(room, taken):
        free = [x for x in cells_of(room) if x not in taken]
        return free[int(rng.integers(len(free)))]

    start = pick(start_room, set())
    goal = pick(goal_room, {start})
    taken = {start, goal}
    prior = []
    for kr in key_rooms:
        prior.append(pick(kr, taken))
        taken.add(prior[-1])
    true, moved = list(prior), np.zeros(C, bool)
    for c, kr in enumerate(key_rooms):
        if rng.random() < misplace:
            true[c] = pick(kr, taken | set(true))
            taken.add(true[c])
            moved[c] = True
    return {"wall": wall, "door": door, "start": np.array(start, np.int32),
            "goal": np.array(goal, np.int32), "key_prior": np.array(prior, np.int32),
            "key_true": np.array(true, np.int32), "misplaced": moved}


def generate_set(seed: int, count: int, R: int, Q: int, C: int, misplace: float) -> dict:
    rng = np.random.default_rng(seed)
    rows = [generate(rng, R, Q, C, misplace) for _ in range(count)]
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


# ---- the wavefront (shared by the exact expert and the metered cloud planner) ---------
def key_bits(shape, key_cells, held=None):
    """int32[H, W]: bit c set where key c lies (``held`` keys excluded)."""
    C = key_cells.shape[0]
    bits = (1 << jnp.arange(C, dtype=jnp.int32))
    if held is not None:
        bits = jnp.where((held >> jnp.arange(C)) & 1, 0, bits)
    return jnp.zeros(shape, jnp.int32).at[key_cells[:, 0], key_cells[:, 1]].add(bits)


def passable(wall, door, C):
    """bool[M, H, W]: cells enterable holding each key mask m."""
    m = jnp.arange(1 << C, dtype=jnp.int32)[:, None, None]
    d = jnp.asarray(door, jnp.int32)[None]
    ok_door = (d < 0) | ((m >> jnp.maximum(d, 0)) & 1).astype(bool)
    return ~jnp.asarray(wall, bool)[None] & ok_door


def _sweep_fn(wall, door, kb, C):
    """One backward step: from reach maps ``R[m]`` (goal within t steps holding m) to t + 1.
    Entering y holding m means holding ``m | kb(y)`` there; one batched conv spreads it."""
    M = 1 << C
    ok = passable(wall, door, C)
    nxt = jnp.arange(M, dtype=jnp.int32)[:, None, None] | kb[None]  # mask after entering y
    kern = jnp.asarray(PLUS)[None, None]

    def sweep(reach):
        enter = jnp.take_along_axis(reach, nxt, axis=0) * ok
        nb = jax.lax.conv_general_dilated(enter[:, None], kern, (1, 1), "SAME")[:, 0]
        return (nb > 0) & ok & (reach == 0)
    return sweep


def _reach0(shape, goal, C):
    return jnp.zeros((1 << C,) + tuple(shape), jnp.float32).at[:, goal[0], goal[1]].set(1.0)


def value_field(wall, door, key_cells, goal, sweeps: int):
    """Steps to the goal from every (mask, cell) by ``sweeps`` metered wavefront steps
    (``sweeps + 1`` where not reached): int32[M, H, W]."""
    C = key_cells.shape[0]
    shape = np.shape(wall)
    sweep = _sweep_fn(wall, door, key_bits(shape, key_cells), C)
    r0 = _reach0(shape, goal, C)
    d0 = jnp.where(r0 > 0, 0, sweeps + 1).astype(jnp.int32)

    def body(c, t):
        reach, d = c
        new = sweep(reach)
        return (jnp.where(new, 1.0, reach), jnp.where(new, t + 1, d)), None
    return jax.lax.scan(body, (r0, d0), jnp.arange(sweeps, dtype=jnp.int32))[0][1]


def exact_field(wall, door, key_cells, goal):
    """The same field run to convergence (task side: expert labels and optimal lengths);
    unreachable states get ``BIG``."""
    C = key_cells.shape[0]
    shape = np.shape(wall)
    sweep = _sweep_fn(wall, door, key_bits(shape, key_cells), C)
    r0 = _reach0(shape, goal, C)
    d0 = jnp.where(r0 > 0, 0, BIG).astype(jnp.int32)

    def body(s):
        reach, d, t, _ = s
        new = sweep(reach)
        return jnp.where(new, 1.0, reach), jnp.where(new, t + 1, d), t + 1, jnp.any(new)
    return jax.lax.while_loop(lambda s: s[3], body, (r0, d0, jnp.int32(0), jnp.array(True)))[1]


BIG = 10_000


def planner_flops(H: int, W: int, C: int, sweeps: int) -> int:
    """Matmul FLOPs of one planner answer: ``sweeps`` batched SAME 3 x 3 convolutions of
    the ``2^C`` reach maps, ``2 (3H - 2)(3W - 2)`` real (output, tap) pairs x 2 each."""
    return sweeps * (1 << C) * 2 * (3 * H - 2) * (3 * W - 2)


def greedy_step(d, ok, kb, pos, mask):
    """The action down the field ``d`` from (pos, mask) and the state it leads to."""
    H, W = d.shape[1:]
    nxt = jnp.clip(pos[None, :] + jnp.asarray(DIRS), 0, jnp.array([H - 1, W - 1]))
    m2 = mask | kb[nxt[:, 0], nxt[:, 1]]
    v = jnp.where(ok[mask, nxt[:, 0], nxt[:, 1]], d[m2, nxt[:, 0], nxt[:, 1]], BIG + 1)
    a = jnp.argmin(v).astype(jnp.int32)
    return a, nxt[a], m2[a]


def cell_ok(code, keys, C: int):
    """Whether a window code is enterable holding ``keys`` (free, a key, or a door whose
    key is held); public, for executors that plan inside the window."""
    code = jnp.asarray(code).astype(jnp.int32)
    is_door = (code >= 2) & (code < 2 + C)
    held = ((jnp.asarray(keys).astype(jnp.int32) >> jnp.clip(code - 2, 0, C - 1)) & 1) == 1
    return (code == FREE) | (code >= 2 + C) | (is_door & held)


class KeyDoor:
    """The environment for one configuration (static sizes)."""

    def __init__(self, rows: int, cols: int, colours: int, view_radius: int = 2, clip: int = 4,
                 sweeps: int = 0):
        self.R, self.Q, self.C = rows, cols, colours
        self.H, self.W = 4 * rows + 1, 4 * cols + 1
        self.M = 1 << colours
        self.r, self.clip = view_radius, clip
        self.side = 2 * view_radius + 1
        self.view_size = self.side ** 2
        self.codes = 2 + 2 * colours
        self.sweeps = int(sweeps) or self.H * self.W // 2

    # ---- task side -------------------------------------------------------------
    def fields(self, insts):
        """Adds the exact live field ``dist`` (int16[M, H, W]: on the true key cells) and
        ``opt`` (steps from the start holding nothing) to numpy instances."""
        f = jax.jit(jax.vmap(lambda w, d, k, g: exact_field(w, d, k, g)))
        out = []
        n = len(insts["start"])
        for i in range(0, n, 256):
            sl = {k: v[i:i + 256] for k, v in insts.items()}
            out.append(np.asarray(f(sl["wall"], sl["door"], sl["key_true"], sl["goal"])))
        dist = np.concatenate(out)
        s = insts["start"]
        opt = dist[np.arange(n), 0, s[:, 0], s[:, 1]]
        if np.any(opt >= BIG):
            raise AssertionError("keydoor: an unsolvable instance was generated")
        return {**insts, "dist": dist.astype(np.int16), "opt": opt.astype(np.int32)}

    def expert_action(self, inst, env):
        d = jnp.asarray(inst["dist"], jnp.int32)
        kb = key_bits((self.H, self.W), jnp.asarray(inst["key_true"]), env["keys"])
        ok = passable(inst["wall"], inst["door"], self.C)
        return greedy_step(d, ok, kb, env["pos"], env["keys"])[0]

    # ---- dynamics --------------------------------------------------------------
    def _codes(self, env):
        """int32[H, W]: the live cell codes (keys lying where they really are)."""
        C = self.C
        g = jnp.where(env["wall"], WALL, FREE).astype(jnp.int32)
        g = jnp.where(env["door"] >= 0, 2 + env["door"].astype(jnp.int32), g)
        lying = ((env["keys"] >> jnp.arange(C)) & 1) == 0
        kc = env["key_true"]
        cur = g[kc[:, 0], kc[:, 1]]
        return g.at[kc[:, 0], kc[:, 1]].set(jnp.where(lying, 2 + C + jnp.arange(C), cur))

    def observe(self, env):
        r = self.r
        g = jnp.pad(self._codes(env), r, constant_values=WALL)
        view = jax.lax.dynamic_slice(g, (env["pos"][0], env["pos"][1]), (self.side, self.side))
        gv = jnp.clip(env["goal"] - env["pos"], -self.clip, self.clip)
        return {"view": view.reshape(-1).astype(jnp.uint8), "goal_vec": gv.astype(jnp.int8),
                "pos": env["pos"].astype(jnp.uint8), "keys": env["keys"].astype(jnp.uint8)}

    def reset(self, inst):
        pos = jnp.asarray(inst["start"], jnp.int32)
        env = {"wall": jnp.asarray(inst["wall"], bool), "door": jnp.asarray(inst["door"], jnp.int8),
               "key_true": jnp.asarray(inst["key_true"], jnp.int32),
               "goal": jnp.asarray(inst["goal"], jnp.int32), "pos": pos, "keys": jnp.int32(0),
               "t": jnp.int32(0), "budget": 2 * jnp.asarray(inst["opt"], jnp.int32) + 10}
        # The published layout: no start, no live key cells.
        world = {"wall": env["wall"], "door": env["door"],
                 "key_prior": jnp.asarray(inst["key_prior"], jnp.int32), "goal": env["goal"]}
        return env, self.observe(env), world

    def step(self, env, action):
        new = env["pos"] + jnp.asarray(DIRS)[action]
        new = jnp.clip(new, 0, jnp.array([self.H - 1, self.W - 1]))
        ok = passable(env["wall"], env["door"], self.C)[env["keys"], new[0], new[1]]
        pos = jnp.where(ok, new, env["pos"])
        got = jnp.all(env["key_true"] == pos[None, :], axis=1)
        keys = env["keys"] | jnp.sum(jnp.where(got, 1 << jnp.arange(self.C), 0)).astype(jnp.int32)
        t = env["t"] + 1
        success = jnp.all(pos == env["goal"])
        done = success | (t >= env["budget"])
        env = dict(env, pos=pos, keys=keys, t=t)
        return env, self.observe(env), done, {"success": success, "invalid": ~ok,
                                              "keys_held": keys}

    # ---- the cloud's planner (metered) ------------------------------------------
    def decode_view(self, up):
        return unpack_nibbles(up["view"], self.view_size)

    def known_keys(self, world, up):
        """The published key cells, each replaced by where the reported window shows it."""
        C, r = self.C, self.r
        view = self.decode_view(up)
        pos = up["pos"].astype(jnp.int32)
        hit = view[None, :] == (2 + C + jnp.arange(C))[:, None]          # [C, cells]
        idx = jnp.argmax(hit, axis=1)
        seen = pos[None, :] + jnp.stack([idx // self.side, idx % self.side], 1) - r
        return jnp.where(hit.any(1)[:, None], seen, world["key_prior"].astype(jnp.int32))

    def field(self, world, up):
        keys = self.known_keys(world, up)
        return value_field(world["wall"], world["door"], keys, world["goal"].astype(jnp.int32),
                           self.sweeps), keys

    def _walk(self, world, up, steps: int):
        """The greedy path down the planner's field: per step (action, cell, mask)."""
        d, keys = self.field(world, up)
        held = up["keys"].astype(jnp.int32)
        kb = key_bits((self.H, self.W), keys, held)
        ok = passable(world["wall"], world["door"], self.C)
        goal = world["goal"].astype(jnp.int32)

        def body(c, _):
            p, m = c
            a, p2, m2 = greedy_step(d, ok, kb, p, m)
            stay = jnp.all(p == goal)
            p2, m2 = jnp.where(stay, p, p2), jnp.where(stay, m, m2)
            return (p2, m2), (a, p2, m2, m)
        return jax.lax.scan(body, (up["pos"].astype(jnp.int32), held), None, length=steps)[1]

    def plan(self, world, up, k: int):
        """The next k actions from the reported state."""
        return self._walk(world, up, k)[0]

    def subgoals(self, world, up, n: int):
        """The first ``n`` subgoals on the greedy path: the doorways and doors it crosses,
        the keys it picks up and the goal (padded with the goal). Returns ``cell``
        (int32[n], row * W + col) and ``tag`` (int32[n]: 0 go there, c + 1 pick up key c)."""
        _, p, m2, m = self._walk(world, up, self.sweeps)
        gained = m2 & ~m
        doorway = (p[:, 0] % 4 == 0) | (p[:, 1] % 4 == 0)
        goal = world["goal"].astype(jnp.int32)
        at_goal = jnp.all(p == goal[None], 1)
        first_goal = at_goal & (jnp.cumsum(at_goal) == 1)
        event = doorway | (gained > 0) | first_goal
        tag = jnp.where(gained > 0, jnp.argmax((gained[:, None] >> jnp.arange(self.C)) & 1, 1) + 1, 0)
        slot = jnp.where(event, jnp.cumsum(event) - 1, n)
        cell = p[:, 0] * self.W + p[:, 1]
        g = goal[0] * self.W + goal[1]
        cells = jnp.full((n + 1,), g, jnp.int32).at[slot].set(cell, mode="drop")
        tags = jnp.zeros((n + 1,), jnp.int32).at[slot].set(tag, mode="drop")
        return {"cell": cells[:n], "tag": tags[:n]}

    def nodes_expanded(self, world):
        """Secondary cost of one answer: every (mask, free cell) state of the known map."""
        return (self.M * jnp.sum(~jnp.asarray(world["wall"], bool))).astype(jnp.int32)

    def planner_flops(self) -> int:
        return planner_flops(self.H, self.W, self.C, self.sweeps)

    # ---- edge-side helpers (functions of the observation only) -------------------
    def cell_ok(self, code, keys):
        return cell_ok(code, keys, self.C)

    def featurize(self, obs):
        c = self.clip
        gv = obs["goal_vec"].astype(jnp.int32) + c
        held = (obs["keys"].astype(jnp.int32) >> jnp.arange(self.C)) & 1
        return jnp.concatenate([jax.nn.one_hot(obs["view"].astype(jnp.int32), self.codes).reshape(-1),
                                jax.nn.one_hot(gv, 2 * c + 1).reshape(-1), held.astype(jnp.float32)])

    @property
    def num_features(self):
        return self.view_size * self.codes + 2 * (2 * self.clip + 1) + self.C

    def _neighbour(self, obs, action):
        centre = self.r * self.side + self.r
        offs = jnp.array([-self.side, 1, self.side, -1], jnp.int32)
        return obs["view"][centre + offs[action]]

    def valid(self, obs, action):
        return self.cell_ok(self._neighbour(obs, action), obs["keys"])

    def state_key(self, obs):
        p = obs["pos"].astype(jnp.int32)
        return (obs["keys"].astype(jnp.int32) * 256 + p[0]) * 256 + p[1]

    def expect(self, obs, action):
        """The state key the action leads to (no slips here: a different key means a bug)."""
        ok = self.valid(obs, action)
        p = obs["pos"].astype(jnp.int32) + jnp.where(ok, jnp.asarray(DIRS)[action], 0)
        code = self._neighbour(obs, action).astype(jnp.int32)
        gain = jnp.where(ok & (code >= 2 + self.C), 1 << jnp.clip(code - 2 - self.C, 0, self.C - 1), 0)
        k = obs["keys"].astype(jnp.int32) | gain
        return (k * 256 + p[0]) * 256 + p[1]

    def progress(self, obs):
        return jnp.abs(obs["goal_vec"].astype(jnp.int32)).sum()

    def encode_up(self, obs):
        """Position (2 B), held keys (1 B) and the window's codes as nibbles."""
        return {"pos": obs["pos"], "keys": obs["keys"], "view": pack_nibbles(obs["view"])}

    def up_bytes(self) -> int:
        return 3 + -(-self.view_size // 2)

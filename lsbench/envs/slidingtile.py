"""SlidingTile: the 3x3 sliding puzzle with an exact distance table.

A board is uint8[9] (row-major; tile i at its place, 0 = blank); the goal is
1..8 then the blank. Actions move the *blank* up, right, down, left; a move
off the board is a no-op that still costs a step. Both sides see the whole
board: the gap is capacity. The exact distance table covers all 181,440
solvable states; it is built once by BFS (numpy) and indexed by the Lehmer
rank of the permutation (9! slots, -1 where unsolvable).

v3: each move slips to one of the other three with probability ``slip`` (a
key in the env state, hidden from both sides), so an open-loop plan goes
stale. The cloud's ``world`` is the goal board only: the live board reaches
it only in the edge's uplink. The solver (:func:`metered_plan`) ranks the
current board and its four successors per plan step as one ``[5, 9] x [9]``
product of Lehmer digits and factorials (90 matmul FLOPs, metered) and looks
the ranks up in the table (a gather: free). The table itself is a precomputed
pattern database, built offline like a learned planner's weights.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lsbench.envs import DIRS, pack_nibbles, slip as _slip, unpack_nibbles

GOAL = np.array([1, 2, 3, 4, 5, 6, 7, 8, 0], np.uint8)
NUM_STATES = 181440
_FACT = np.array([math.factorial(8 - i) for i in range(9)], np.int64)


def rank_np(boards):
    """Lehmer rank of each row of int[m, 9] (numpy, vectorised)."""
    b = np.asarray(boards, np.int64)
    less = (b[:, None, :] < b[:, :, None]) & np.triu(np.ones((9, 9), bool), 1)[None]
    return (less.sum(2) * _FACT).sum(1)


def rank(board):
    """Lehmer rank of one board (JAX)."""
    b = board.astype(jnp.int32)
    less = (b[None, :] < b[:, None]) & jnp.asarray(np.triu(np.ones((9, 9), bool), 1))
    return jnp.sum(less.sum(1) * jnp.asarray(_FACT, jnp.int32))


def rank_mm(boards):
    """Lehmer ranks of int[m, 9] boards as one [m, 9] x [9] product (metered matmul;
    exact in float32: ranks < 2^24)."""
    b = boards.astype(jnp.int32)
    less = (b[:, None, :] < b[:, :, None]) & jnp.asarray(np.triu(np.ones((9, 9), bool), 1))[None]
    return (less.sum(2).astype(jnp.float32) @ jnp.asarray(_FACT, jnp.float32)).astype(jnp.int32)


def metered_plan(table, board, k: int):
    """The exact solver's next ``k`` moves, ranking 5 boards per step with :func:`rank_mm`
    (``k x 90`` matmul FLOPs per answer; see :data:`PLAN_FLOPS_PER_ACTION`)."""
    table = jnp.asarray(table)

    def body(b, _):
        nb, ok = jax.vmap(lambda a: step_board(b, a))(jnp.arange(4))
        r = rank_mm(jnp.concatenate([b[None], nb]))
        d = table[r].astype(jnp.int32)
        a = jnp.argmin(jnp.where(ok, d[1:], 127)).astype(jnp.int32)
        return jnp.where(d[0] == 0, b, nb[a]), a
    return jax.lax.scan(body, board.astype(jnp.uint8), None, length=k)[1]


PLAN_FLOPS_PER_ACTION = 2 * 5 * 9


def _moves_np(boards):
    """All four successor boards of int[m, 9] (numpy) and their validity."""
    m = boards.shape[0]
    z = np.argmax(boards == 0, axis=1)
    zr, zc = z // 3, z % 3
    out, ok = [], []
    for dr, dc in DIRS:
        nr, nc = zr + dr, zc + dc
        v = (nr >= 0) & (nr < 3) & (nc >= 0) & (nc < 3)
        t = np.where(v, nr * 3 + nc, z)
        nb = boards.copy()
        rows = np.arange(m)
        nb[rows, z] = boards[rows, t]
        nb[rows, t] = 0
        out.append(nb)
        ok.append(v)
    return out, ok


def build_table():
    """BFS from the goal over all solvable states: int8[9!] distances (-1 = unsolvable)."""
    dist = np.full(math.factorial(9), -1, np.int8)
    frontier = GOAL[None].astype(np.int64)
    dist[rank_np(frontier)] = 0
    d = 0
    while frontier.size:
        d += 1
        nbs, oks = _moves_np(frontier)
        cand = np.concatenate([nb[ok] for nb, ok in zip(nbs, oks)])
        r = rank_np(cand)
        new = dist[r] < 0
        r, cand = r[new], cand[new]
        r, first = np.unique(r, return_index=True)
        dist[r] = d
        frontier = cand[first]
    return dist


def step_board(board, action):
    """(new board, valid) after moving the blank (JAX)."""
    z = jnp.argmax(board == 0)
    zr, zc = z // 3, z % 3
    dr, dc = jnp.asarray(DIRS)[action]
    nr, nc = zr + dr, zc + dc
    valid = (nr >= 0) & (nr < 3) & (nc >= 0) & (nc < 3)
    t = jnp.where(valid, nr * 3 + nc, z)
    nb = board.at[z].set(board[t]).at[t].set(0)
    return jnp.where(valid, nb, board), valid


def scramble(key, depth, max_depth: int):
    """A random walk of ``depth`` (<= max_depth) blank moves from the goal, never undoing the last move."""
    def body(c, k):
        b, last, i = c
        a = jax.random.randint(k, (), 0, 4)
        a = jnp.where(a == (last + 2) % 4, (a + 1) % 4, a)
        nb, ok = step_board(b, a)
        use = ok & (i < depth)
        return (jnp.where(use, nb, b), jnp.where(use, a, last), i + use.astype(jnp.int32)), None
    keys = jax.random.split(key, 4 * max_depth)
    (b, _, _), _ = jax.lax.scan(body, (jnp.asarray(GOAL), jnp.int32(-9), jnp.int32(0)), keys)
    return b


def table_distance(table, board):
    """Exact distance of ``board`` to the goal from a distance ``table`` (JAX)."""
    return jnp.asarray(table)[rank(board)].astype(jnp.int32)


def table_expert_action(table, board):
    """The first move (up, right, down, left order) that lowers the exact distance."""
    def cost(a):
        nb, ok = step_board(board, a)
        return jnp.where(ok, table_distance(table, nb), 127)
    return jnp.argmin(jax.vmap(cost)(jnp.arange(4))).astype(jnp.int32)


def table_plan(table, board, k: int):
    """The exact solver's next ``k`` moves from ``board`` (no-ops once solved)."""
    def body(b, _):
        a = table_expert_action(table, b)
        nb, _ = step_board(b, a)
        return jnp.where(table_distance(table, b) == 0, b, nb), a
    return jax.lax.scan(body, board.astype(jnp.uint8), None, length=k)[1]


class SlidingTile:
    """The environment plus the exact solver over a distance table."""

    def __init__(self, table, slip: float = 0.0, budget=(2, 10)):
        self.table = jnp.asarray(table)
        self.slip = float(slip)
        self.budget = tuple(int(v) for v in budget)  # steps per episode: budget[0] x opt + budget[1]
        counts = np.bincount(np.asarray(table)[np.asarray(table) >= 0].astype(np.int64))
        self.max_depth = len(counts) - 1
        self.cum_counts = jnp.asarray(np.cumsum(counts), jnp.int32)  # states within depth d

    def distance(self, board):
        return table_distance(self.table, board)

    def expert_action(self, board):
        return table_expert_action(self.table, board)

    def plan(self, board, k: int):
        return table_plan(self.table, board, k)

    def nodes_expanded(self, board):
        """A backward BFS from the goal expands every state no farther than ``board``."""
        return self.cum_counts[jnp.clip(self.distance(board), 0, self.max_depth)]

    # ---- environment ----------------------------------------------------------
    def reset(self, inst):
        b = jnp.asarray(inst["board"], jnp.uint8)
        mult, add = self.budget
        env = {"board": b, "t": jnp.int32(0), "budget": mult * jnp.asarray(inst["opt"], jnp.int32) + add,
               "key": jnp.asarray(inst["seed"], jnp.uint32)}
        return env, {"board": b}, {"goal": jnp.asarray(GOAL)}  # the cloud's prior: the goal only

    def step(self, env, action):
        a, key = _slip(env["key"], action, self.slip)
        b, valid = step_board(env["board"], a)
        t = env["t"] + 1
        success = jnp.all(b == jnp.asarray(GOAL))
        done = success | (t >= env["budget"])
        return dict(env, board=b, t=t, key=key), {"board": b}, done, \
            {"success": success, "invalid": ~valid, "slipped": a != action}

    # ---- edge-side helpers (functions of the observation only) ---------------
    num_features = 81

    @staticmethod
    def featurize(obs):
        return jax.nn.one_hot(obs["board"].astype(jnp.int32), 9).reshape(-1)

    @staticmethod
    def valid(obs, action):
        return step_board(obs["board"], action)[1]

    @staticmethod
    def state_key(obs):
        return rank(obs["board"]).astype(jnp.int32)

    @staticmethod
    def expect(obs, action):
        """The state key the move leads to if it does not slip."""
        return rank(step_board(obs["board"], action)[0]).astype(jnp.int32)

    @staticmethod
    def progress(obs):
        """Manhattan distance of the tiles to their goal places."""
        b = obs["board"].astype(jnp.int32)
        pos = jnp.arange(9)
        home = (b - 1) % 9
        md = jnp.abs(pos // 3 - home // 3) + jnp.abs(pos % 3 - home % 3)
        return jnp.sum(jnp.where(b > 0, md, 0))

    @staticmethod
    def encode_up(obs):
        return {"board": pack_nibbles(obs["board"])}  # 9 tiles x 4 bits = 5 bytes

    @staticmethod
    def decode_up(up):
        return unpack_nibbles(up["board"], 9).astype(jnp.uint8)

"""Sealed sides: each side's functions run as their own closed programs.

The harness builds a method once per side (``Cls(edge_view, hp)``,
``Cls(cloud_view, hp)``) and never calls a side's Python function inside
another side's trace. Instead :class:`Sealer` traces each function *alone*,
with abstract inputs, into a closed jaxpr (``jax.make_jaxpr``), inspects it,
and from then on evaluates exactly that program (also inside the harness's
jitted, vmapped and scanned rounds). So:

- a value one side stashes while traced (on ``self``'s class, a module global)
  and the other side reads shows up as a leaked tracer among the reader's
  constants: refused (:class:`SealError`);
- host callbacks (``pure_callback``, ``io_callback``, ``debug_callback``) in a
  side's program are refused; ``jax.debug.print`` is allowed;
- a constant in a side's program that equals an asset the side may not see
  (the other side's params, data, planner tables, calibration labels, the hidden
  test labels) is refused; so is a large constant (>= ``BIG_CONST`` elements)
  that is no array of the side's own view, i.e. array work done in NumPy at
  trace time, outside the meter;
- a constructor that does JAX work, or stores arrays, is refused: setup work
  belongs in ``edge_setup``/``cloud_setup``, where it is metered;
- FLOPs are counted on the very program that runs.

What in-process sealing does not stop: Python state outside JAX (a side may
write a small NumPy table or a Python number to a global at trace time, and
the other side may read it), arbitrary file or network I/O, and reading
another object's memory. Constants are compared by content (any dtype or
shape of the same numbers), so exact copies are caught; small derived tables
are not. Only a two-process mode (each side in its own interpreter, messages
over a pipe) closes those; lsbench does not have one yet. ``lsbench check``
adds a dynamic test: it reruns a method with every delivered payload replaced
by random values and flags it if its quality stays above edge-only.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np
from jax.extend import core as jcore

from lsbench.api import SIDES, PlanMethod
from lsbench.errors import PluginError, SealError

MIN_ASSET = 16          # arrays smaller than this are never compared (too common)
BIG_CONST = 1 << 16     # a constant this large must be an array of the side's own view
CALLBACKS = ("pure_callback", "io_callback", "debug_callback", "callback")


# ----------------------------------------------------------------- content keys
def _content_key(a) -> Optional[tuple]:
    """A dtype- and shape-independent key of an array's numbers, or None when the
    array is too small or constant to identify anything."""
    try:
        arr = np.asarray(a)
    except Exception:  # noqa: BLE001 - not an array (a tracer, an object)
        return None
    if arr.dtype == object or arr.size < MIN_ASSET:
        return None
    flat = arr.reshape(-1)
    if not np.issubdtype(flat.dtype, np.number) and flat.dtype != np.bool_:
        try:
            flat = flat.astype(np.float32)
        except (TypeError, ValueError):
            return None
    flat = flat.astype(np.float32)  # float32 numbers: a cast copy has the same key
    if flat[0] == flat[-1] and np.all(flat == flat[0]):
        return None
    return (flat.size, hashlib.sha1(flat.tobytes()).hexdigest())


def _walk_arrays(obj, path: str, out: dict, depth: int = 0, seen=None, rows=None):
    """Collects ``content key -> path`` for every array reachable from ``obj``
    (mappings, sequences, dataclasses, NamedTuples; function closures and
    partials too, so a task's helper tables count as that view's arrays)."""
    seen = set() if seen is None else seen
    if depth > 8 or id(obj) in seen:
        return out
    seen.add(id(obj))
    if isinstance(obj, (np.ndarray, jax.Array)) or (hasattr(obj, "shape") and hasattr(obj, "dtype")
                                                     and not isinstance(obj, type)):
        k = _content_key(obj)
        if k is not None:
            out.setdefault(k, path)
        if rows is not None and np.ndim(obj) >= 2:
            rows.update(_row_keys({"": obj}, path))
        return out
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _walk_arrays(v, f"{path}/{k}", out, depth + 1, seen, rows)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _walk_arrays(v, f"{path}/{i}", out, depth + 1, seen, rows)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            _walk_arrays(getattr(obj, f.name), f"{path}/{f.name}", out, depth + 1, seen, rows)
    elif isinstance(obj, functools.partial):
        _walk_arrays((obj.func, obj.args, obj.keywords), path, out, depth + 1, seen, rows)
    elif callable(obj):
        for cell in getattr(obj, "__closure__", None) or ():
            try:
                _walk_arrays(cell.cell_contents, path, out, depth + 1, seen, rows)
            except ValueError:  # empty cell
                pass
        if hasattr(obj, "__self__"):
            _walk_arrays(getattr(obj.__self__, "__dict__", {}), path, out, depth + 1, seen, rows)
    return out


MAX_ROWS = 1 << 16  # rows keyed per hidden array, or checked per constant


def _row_keys(tree, path: str) -> dict:
    """``content key -> path[i]`` of each leading-axis row of each array in ``tree``
    (rows of fewer than MIN_ASSET elements, or constant rows, are skipped)."""
    out: dict = {}
    for kp, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if not _is_array(leaf) or np.ndim(leaf) < 2:
            continue
        arr = np.asarray(leaf)
        for i in range(min(arr.shape[0], MAX_ROWS)):
            k = _content_key(arr[i])
            if k is not None:
                out.setdefault(k, f"{path}{jax.tree_util.keystr(kp)}[{i}]")
    return out


@dataclasses.dataclass
class Guard:
    """Per side: the content keys of the assets it may not use (``denied``) and of
    its own view's arrays (``own``)."""
    denied: dict
    own: dict

    @classmethod
    def build(cls, edge_views: Mapping[str, Any], cloud_view, hidden: Mapping[str, Any]) -> "Guard":
        """``edge_views``: the edge views (training: one per tier); ``hidden``:
        task data no side may hold (test labels, worlds, clients' data)."""
        edge_own: dict = {}
        edge_rows: dict = {}
        for name, v in edge_views.items():
            _walk_arrays(v, f"edge view {name}", edge_own, rows=edge_rows)
        cloud_rows: dict = {}
        cloud_own = _walk_arrays(cloud_view, "cloud view", {}, rows=cloud_rows)
        hid = _walk_arrays(dict(hidden), "hidden task data", {})
        # A slice of hidden rows is caught too, except rows the side holds itself (a
        # calibration query may equal a test query).
        hid_rows = _row_keys(dict(hidden), "hidden task data")
        shared = set(edge_own) & set(cloud_own)  # what both views hold is no secret of either
        edge_denied = {k: v for k, v in {**hid_rows, **hid, **cloud_own}.items()
                       if k not in edge_own and k not in edge_rows}
        cloud_denied = {k: v for k, v in {**hid_rows, **hid, **edge_own}.items()
                        if k not in cloud_own and k not in shared and k not in cloud_rows}
        return cls(denied={"edge": edge_denied, "cloud": cloud_denied},
                   own={"edge": edge_own, "cloud": cloud_own})

    @classmethod
    def open(cls) -> "Guard":
        return cls(denied={"edge": {}, "cloud": {}}, own={"edge": {}, "cloud": {}}, is_open=True)

    is_open: bool = False

    def for_team(self, edge_view, leader_view, agent_view) -> "Guard":
        """The guard of a team method (``PlanMethod.team``): every array of the full edge
        view (the members) that the acting agent's view does not hold is denied to the
        edge side, and all of them to the agents (side ``agent``), whose members arrive
        only as their setup's input. An open guard stays open."""
        if self.is_open:
            return self
        full_rows: dict = {}
        full = _walk_arrays(edge_view, "edge view", {}, rows=full_rows)
        members = {**full_rows, **full}
        lead_rows: dict = {}
        lead = _walk_arrays(leader_view, "leader view", {}, rows=lead_rows)
        agent_rows: dict = {}
        agent = _walk_arrays(agent_view, "agent view", {}, rows=agent_rows)
        edge = {**self.denied["edge"], **{k: v for k, v in members.items() if k not in lead and k not in lead_rows}}
        agent_denied = {k: v for k, v in {**self.denied["edge"], **members}.items()
                        if k not in agent and k not in agent_rows}
        return Guard(denied={**self.denied, "edge": edge, "agent": agent_denied},
                     own={**self.own, "edge": lead, "agent": agent})


# ----------------------------------------------------------------- eager work
def _eager_cost(prim, params) -> int:
    """FLOPs (all ops) of one primitive evaluated eagerly, 0 for data movement."""
    from lsbench.metering import flops
    if prim.name in flops.FREE:
        return 0
    sub = params.get("jaxpr") if isinstance(params, dict) else None
    if sub is not None:
        try:
            return flops.count_jaxpr(sub).total
        except Exception:  # noqa: BLE001 - an uncountable program is work too
            return 1
    return 1


@contextlib.contextmanager
def no_eager_work(what: str):
    """Refuses JAX work evaluated eagerly (``jax.ensure_compile_time_eval``, or
    outside any trace) while ``what`` runs: it would run outside the metered
    program. Data movement (array creation, casts) is allowed."""
    from jax._src import core as _core
    orig = _core.EvalTrace.process_primitive
    work: list = []

    def spy(self, prim, tracers, params):
        if _eager_cost(prim, params):
            work.append(prim.name)
        return orig(self, prim, tracers, params)

    _core.EvalTrace.process_primitive = spy
    try:
        yield
    finally:
        _core.EvalTrace.process_primitive = orig
    if work:
        raise SealError(f"{what} does eager JAX work ({', '.join(sorted(set(work))[:4])}) outside the "
                        f"metered program (jax.ensure_compile_time_eval?); let it be traced, in "
                        f"edge_setup/cloud_setup, so it is metered")


# ----------------------------------------------------------------- programs
def _subjaxprs(eqn):
    for v in eqn.params.values():
        for s in (v if isinstance(v, (tuple, list)) else (v,)):
            if isinstance(s, jcore.ClosedJaxpr):
                yield s.jaxpr, s.consts
            elif isinstance(s, jcore.Jaxpr):
                yield s, ()


def _walk(jaxpr, consts):
    """Yields (eqn or None, const) over a jaxpr and its sub-jaxprs."""
    for c in consts:
        yield None, c
    for eqn in jaxpr.eqns:
        yield eqn, None
        for sub, sc in _subjaxprs(eqn):
            yield from _walk(sub, sc)


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _abstract(x):
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype) if _is_array(x) else x


@dataclasses.dataclass
class Program:
    """One side's function, traced alone: calling it evaluates exactly ``closed``."""
    side: str
    name: str
    closed: Any
    in_tree: Any
    out_tree: Any
    static: tuple

    def __call__(self, *args):
        leaves, tree = jax.tree_util.tree_flatten(args)
        dyn = [x for x in leaves if _is_array(x)]
        if tree != self.in_tree:
            raise PluginError(f"{self.side} function {self.name}: called with a different input "
                              f"structure than it was sealed with")
        out = jcore.jaxpr_as_fun(self.closed)(*dyn)
        return jax.tree_util.tree_unflatten(self.out_tree, out)


def _signature(args):
    leaves, tree = jax.tree_util.tree_flatten(args)
    sig = tuple((tuple(np.shape(x)), str(x.dtype)) if _is_array(x) else ("static", repr(x))
                for x in leaves)
    return tree, sig


class Sealer:
    """Traces, inspects and caches each side's programs for one run.

    ``meter(closed) -> FlopCount`` counts a program's FLOPs (the run's FLOP
    meter); counts are cached with the program."""

    def __init__(self, guard: Optional[Guard] = None, meter: Optional[Callable] = None):
        self.guard = guard or Guard.open()
        self.meter = meter
        self._progs: dict = {}
        self._flops: dict = {}

    def program(self, side: str, name: str, fn: Callable, *args) -> Program:
        tree, sig = _signature(args)
        key = (side, name, tree, sig)
        prog = self._progs.get(key)
        if prog is None:
            prog = self._progs[key] = self._seal(side, name, fn, args)
        return prog

    def call(self, side: str, name: str, fn: Callable, *args):
        return self.program(side, name, fn, *args)(*args)

    def flops(self, side: str, name: str, fn: Callable, *args):
        prog = self.program(side, name, fn, *args)
        key = id(prog)
        if key not in self._flops:
            if self.meter is None:
                raise RuntimeError("this Sealer has no FLOP meter")
            try:
                self._flops[key] = self.meter(prog.closed)
            except PluginError as e:
                raise type(e)(f"{side} function {name}: {e}") from None
        return self._flops[key]

    # ---- tracing and inspection ------------------------------------------------
    def _seal(self, side, name, fn, args) -> Program:
        leaves, tree = jax.tree_util.tree_flatten(args)
        static = tuple(x for x in leaves if not _is_array(x))
        abstract = [_abstract(x) for x in leaves if _is_array(x)]

        def flat_fn(*dyn):
            it = iter(dyn)
            full = [next(it) if _is_array(x) else x for x in leaves]
            return fn(*jax.tree_util.tree_unflatten(tree, full))

        try:
            with no_eager_work(f"{side} function {name}"):
                closed, out_shape = jax.make_jaxpr(flat_fn, return_shape=True)(*abstract)
        except jax.errors.UnexpectedTracerError:
            raise SealError(f"{side} function {name} used a value traced in another function "
                            "(a leaked tracer); sides exchange values only through the channel") from None
        self._inspect(side, name, closed)
        out_tree = jax.tree_util.tree_structure(out_shape)
        return Program(side, name, closed, tree, out_tree, static)

    def _inspect(self, side, name, closed):
        denied, own = self.guard.denied.get(side, {}), self.guard.own.get(side, {})
        for eqn, const in _walk(closed.jaxpr, closed.consts):
            if eqn is not None:
                prim = eqn.primitive.name
                if prim in CALLBACKS or prim.endswith("_callback"):
                    raise SealError(f"{side} function {name} calls a host callback ({prim}); "
                                    "callbacks are refused in metered functions (jax.debug.print is allowed)")
                continue
            if isinstance(const, jax.core.Tracer):
                raise SealError(f"{side} function {name} reads a value traced in another function "
                                "(stashed on an object or a global); sides exchange values only "
                                "through the channel")
            k = _content_key(const)
            if k is None:
                continue
            if k in denied:
                raise SealError(f"{side} function {name} holds a constant equal to {denied[k]}, "
                                f"which the {side} may not see; pass what it needs through the channel")
            if np.ndim(const) >= 2:  # rows of the constant: a slice of a denied array
                arr = np.asarray(const)
                for i in range(min(arr.shape[0], MAX_ROWS)):
                    rk = _content_key(arr[i])
                    if rk is not None and rk in denied:
                        raise SealError(f"{side} function {name} holds a constant whose row {i} equals "
                                        f"{denied[rk]}, which the {side} may not see; pass what it "
                                        f"needs through the channel")
            if k[0] >= BIG_CONST and k not in own:
                raise SealError(f"{side} function {name} holds a {k[0]}-element constant that is no "
                                f"array of its view (array work outside the meter?); compute it in "
                                f"{side}_setup with jax.numpy so it is metered")


# ----------------------------------------------------------------- sides
class Side:
    """The harness's handle on one side of a method: calls go through the sealer.

    ``side('client_step', carry, batch, key)`` runs the sealed program of
    ``obj.client_step``; only functions of this side (``api.SIDES``) are callable.
    ``static`` keyword values (a tier name, a batch size) are closed over and
    become part of the program's name."""

    def __init__(self, side: str, track: str, obj, sealer: Sealer, tag: str = ""):
        self.side, self.track, self.obj, self.sealer, self.tag = side, track, obj, sealer, tag
        self.allowed = SIDES[track][side]

    def _fn(self, fname, static):
        if fname not in self.allowed:
            raise PluginError(f"the harness may not call {fname} on the {self.side} side")
        fn = getattr(self.obj, fname)
        if fn is None:
            raise PluginError(f"method {self.obj.manifest.name} has no {fname}")
        label = (f"{self.tag}:" if self.tag else "") + fname + \
            "".join(f"[{k}={v}]" for k, v in sorted(static.items()))
        return (functools.partial(fn, **static) if static else fn), label

    def __call__(self, fname: str, *args, **static):
        fn, label = self._fn(fname, static)
        return self.sealer.call(self.side, label, fn, *args)

    def program(self, fname: str, *args, **static) -> Program:
        fn, label = self._fn(fname, static)
        return self.sealer.program(self.side, label, fn, *args)

    def flops(self, fname: str, *args, **static):
        fn, label = self._fn(fname, static)
        return self.sealer.flops(self.side, label, fn, *args)

    def has(self, fname: str) -> bool:
        return getattr(self.obj, fname, None) is not None

    def shape(self, fname: str, *args, **static):
        """Abstract output of a sealed call (seals it as a side effect)."""
        prog = self.program(fname, *args, **static)
        outs = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in prog.closed.jaxpr.outvars]
        return jax.tree_util.tree_unflatten(prog.out_tree, outs)

    def __getattr__(self, item):
        # Plain (non-array) declarations are readable: manifest, hp, codecs, flags.
        if item in ("manifest", "hp", "codec_up", "codec_down", "per_client_downlink",
                    "edge_uses_public", "pooled", "view"):
            return getattr(self.obj, item)
        raise AttributeError(item)


def construct(cls, view, hp):
    """Builds one side's object, refusing array work in the constructor."""
    name = getattr(getattr(cls, "manifest", None), "name", cls.__name__)
    holder = {}

    def build():
        holder["obj"] = cls(view, hp)
        return 0

    with no_eager_work(f"method {name}: its constructor"):
        closed = jax.make_jaxpr(build)()
    if closed.jaxpr.eqns:
        prims = sorted({e.primitive.name for e in closed.jaxpr.eqns})
        raise SealError(f"method {name}: its constructor does JAX work ({', '.join(prims[:4])}); "
                        f"constructors may only read the view and hyper-parameters: move array "
                        f"work to edge_setup/cloud_setup, where it is metered")
    with no_eager_work(f"method {name}: its constructor"):
        obj = cls(view, hp)
    own = None
    for attr, val in vars(obj).items():
        if attr in ("view", "hp", "side"):
            continue
        for leaf in jax.tree_util.tree_leaves(val):
            if _is_array(leaf) and math.prod(np.shape(leaf)) >= MIN_ASSET:
                own = _walk_arrays(view, "view", {}) if own is None else own
                if _content_key(leaf) in own:
                    continue  # a reference to the view's own array
                raise SealError(f"method {name}: its constructor stores an array in self.{attr}; "
                                "constructors may do no array work: compute it in "
                                "edge_setup/cloud_setup (metered) and keep it in the state")
    return obj


@dataclasses.dataclass
class Sides:
    """A method built once per side. ``edge``: one :class:`Side` (inference,
    planning) or ``{tier: Side}`` (training: one edge object per capacity tier).
    A planning team (``PlanMethod.team``): ``team`` = (K, R), ``agent`` the agents'
    :class:`Side` (built on the agent view) and ``agent_params`` agent_setup's params
    (``{'edge': member i mod M}`` stacked over the K agents; {} where the edge has none)."""
    edge: Any
    cloud: Side
    sealer: Sealer
    agent: Optional[Side] = None
    team: Optional[tuple] = None
    agent_params: Any = None

    def edge_of(self, tier: Optional[str] = None) -> Side:
        return self.edge[tier] if isinstance(self.edge, dict) else self.edge


def build_sides(cls, track: str, inst, hp, sealer: Sealer) -> Sides:
    """Constructs the method per side from the instance's views."""
    cloud = Side("cloud", track, construct(cls, inst.cloud_view, hp), sealer)
    if track == "train":
        edge = {t: Side("edge", track, construct(cls, v, hp), sealer, tag=t)
                for t, v in inst.edge_views.items()}
    elif track == "plan" and getattr(cls, "team", None) is not getattr(PlanMethod, "team"):
        return _team_sides(cls, inst, hp, sealer, cloud)
    else:
        edge = Side("edge", track, construct(cls, inst.edge_view, hp), sealer)
    return Sides(edge, cloud, sealer)


def team_views(edge_view):
    """(leader view, agent view, members): the acting agent holds member 0 only
    (``params['edge']``), an agent holds no params (its member comes to
    ``agent_setup``); members: ``params['edge_ensemble']`` (stacked), else ``edge``."""
    p = edge_view.params
    leader = dataclasses.replace(edge_view, params={"edge": p["edge"]} if "edge" in p else {})
    agent = dataclasses.replace(edge_view, side="agent", params={})
    members = p.get("edge_ensemble")
    if members is None and "edge" in p:
        members = jax.tree_util.tree_map(lambda a: np.asarray(a)[None], p["edge"])
    return leader, agent, members


def _team_sides(cls, inst, hp, sealer, cloud) -> Sides:
    """A method that may run as a team: the acting agent on the leader view; when its
    ``team()`` is (K, R), K agents on the agent view, under the team guard."""
    leader_view, agent_view, members = team_views(inst.edge_view)
    edge = Side("edge", "plan", construct(cls, leader_view, hp), sealer)
    team = edge.obj.team()
    if team is None:
        return Sides(edge, cloud, sealer)
    K, R = int(team[0]), int(team[1])
    if K < 1 or R < 0:
        raise PluginError(f"method {edge.manifest.name}: team() must be (K >= 1 agents, R >= 0 rounds), "
                          f"got {team}")
    params = {}  # agent_setup's params, stacked over the K agents ({} where the edge has none)
    if members is not None:
        M = jax.tree_util.tree_leaves(members)[0].shape[0]
        params = {"edge": jax.tree_util.tree_map(lambda a: np.asarray(a)[np.arange(K) % M], members)}
    sealer.guard = sealer.guard.for_team(inst.edge_view, leader_view, agent_view)
    agent = Side("agent", "plan", construct(cls, agent_view, hp), sealer)
    return Sides(edge, cloud, sealer, agent=agent, team=(K, R), agent_params=params)


def guard_for(track: str, inst) -> Guard:
    edges = dict(inst.edge_views) if track == "train" else {"edge": inst.edge_view}
    return Guard.build(edges, inst.cloud_view, inst.hidden())


# ----------------------------------------------------------------- measured wall time (sanity only)
ONCE = ("edge_setup", "cloud_setup", "edge_install")  # programs run once per run: not timed


def time_programs(sealer: Sealer, reps: int = 3, max_s: float = 5.0) -> dict:
    """Measured seconds per call of every metered program, on this machine.

    Each program whose FLOPs the run billed is compiled alone
    (``jax.jit(jaxpr_as_fun(closed))``), called once on zeros of its input
    shapes to warm up, then ``reps`` more times; the median is kept. Programs
    are timed heaviest first (all-ops FLOPs); programs taking typed PRNG keys,
    programs that fail on zeros, and all programs after ``max_s`` seconds of
    timing are left unmeasured (``s_per_call: None``).
    Returns ``{"side:name": {"s_per_call", "flops", "flops_all"}}``. A sanity
    column: it is never ranked and never enters the modelled figures."""
    import statistics
    import time

    progs = {id(p): p for p in sealer._progs.values()}
    out: dict = {}
    t_begin = time.perf_counter()
    for key, fc in sorted(sealer._flops.items(), key=lambda kv: -kv[1].total):
        prog = progs.get(key)
        if prog is None:
            continue
        name, i = f"{prog.side}:{prog.name}", 1
        while name in out:
            i += 1
            name = f"{prog.side}:{prog.name}#{i}"
        rec = {"s_per_call": None, "flops": int(fc.matmul), "flops_all": int(fc.total)}
        out[name] = rec
        if time.perf_counter() - t_begin > max_s or prog.name.split("[")[0] in ONCE:
            continue  # setup runs once per run: timing it would repeat it reps + 1 times
        avals = [v.aval for v in prog.closed.jaxpr.invars]
        if any(jax.dtypes.issubdtype(a.dtype, jax.dtypes.extended) for a in avals):
            continue
        try:
            # Constants go in as arguments, so XLA does not constant-fold large ones.
            jaxpr, consts = prog.closed.jaxpr, [np.asarray(c) for c in prog.closed.consts]
            fn = jax.jit(lambda cs, *a: jax.core.eval_jaxpr(jaxpr, cs, *a))
            args = [np.zeros(a.shape, a.dtype) for a in avals]
            jax.block_until_ready(fn(consts, *args))
            times = []
            for _ in range(max(1, reps)):
                t0 = time.perf_counter()
                jax.block_until_ready(fn(consts, *args))
                times.append(time.perf_counter() - t0)
            rec["s_per_call"] = statistics.median(times)
        except Exception:  # noqa: BLE001 - a sanity measurement never stops a run
            rec["s_per_call"] = None
    return out


def measured(sealer: Sealer, costs: Mapping[str, int], reps: int = 3) -> dict:
    """final.json's ``measured`` block: the wall time of each side's programs
    (:func:`time_programs`) and, per side, an estimate of the run's compute time
    on this machine: the side's measured seconds per metered FLOP (sum of its
    programs' seconds per call over the sum of their all-ops FLOPs per call)
    times the side's metered all-ops FLOPs of the run (setup included). Never
    ranked; the modelled figures (``derived``) use only counts and profiles.
    ``LSBENCH_TIME_PROGRAMS=0`` in the environment skips the timing."""
    import os
    if os.environ.get("LSBENCH_TIME_PROGRAMS", "1") == "0":
        return {"note": "not measured (LSBENCH_TIME_PROGRAMS=0)", "programs": {}, "edge_s": None,
                "cloud_s": None}
    progs = time_programs(sealer, reps=reps)
    out = {"note": "measured on this machine, never ranked: seconds per call of each metered program "
                   "(jit, zeros inputs, median of repeated calls); <side>_s = the side's measured "
                   "seconds per metered FLOP x its metered FLOPs in the run",
           "platform": jax.default_backend(), "device": str(jax.devices()[0]), "programs": progs}
    for side in ("edge", "cloud"):
        mine = [r for n, r in progs.items() if n.startswith(side + ":") and r["s_per_call"] is not None]
        secs, fl = sum(r["s_per_call"] for r in mine), sum(r["flops_all"] for r in mine)
        run_flops = int(costs.get(f"{side}_flops_all", costs.get(f"{side}_flops", 0)) or 0) + \
            int(costs.get(f"setup_{side}_flops_all", costs.get(f"setup_{side}_flops", 0)) or 0)
        out[f"{side}_s"] = secs / fl * run_flops if fl > 0 else None
    return out

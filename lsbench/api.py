"""The lsbench plugin API, version 2: the one module that methods import.

**Sealed sides.** A method is a class, and the harness builds it once per side:
``Cls(edge_view, hp)`` and ``Cls(cloud_view, hp)`` (training: one edge object
per capacity tier). Each object sees only its side's :class:`View`: the edge
view never holds the cloud's params, data or planner, and the cloud view never
holds the edge's private params or the clients' data. The harness calls the
edge functions on the edge object and the cloud functions on the cloud object
(``SIDES`` below says which is which), and traces each function *on its own*,
with abstract inputs, into a closed program. The only values that pass from
one side's program to the other's are what the metered channel delivered.
A value stashed by one side (on a class, a module global) and read by the
other is refused as a leaked tracer; host callbacks are refused; a constant in
one side's program that is an asset of the other side is refused; constructors
may do no array work (do it in ``edge_setup``/``cloud_setup``, where it is
metered). See ``lsbench.harness.sealed`` for what in-process sealing stops and
what only a two-process mode would.

**One vocabulary across the tracks.**
- *setup*: ``edge_setup`` / ``cloud_setup`` (and ``edge_install`` where a cloud
  package comes down). Setup FLOPs are metered per side; setup messages are
  billed as ``setup_bytes_up`` / ``setup_bytes_down``.
- *carry*: the edge's working state within a batch or an episode.
- *query*: :class:`Query` — the new carry, an uplink, a send mask and (where
  the track has one) a done mask.
- *reply*: what the cloud returns for the rows or episodes that sent; the
  edge receives it as an :class:`Inbox` (``msg`` zeros where nothing came).

Messages are any pytree of arrays. A leaf whose leading axis is a batch of rows
goes inside :class:`Rows` with a boolean mask: only rows whose mask is set are
carried and billed (the mask itself is billed too: see ``lsbench.metering.channel``).
Methods never report costs.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

from lsbench.errors import (BudgetError, FlopError, LsbenchError, PluginError, SealError, TaskError,
                            UsageError)

API_VERSION = "2"
TRACKS = ("train", "infer", "plan")
SIDE_NAMES = ("edge", "cloud")
REFERENCE_KINDS = ("edge-only", "cloud-only", "centralized", "local", "oracle")

PyTree = Any
Array = Any


class Rows(NamedTuple):
    """Per-row payload: ``data`` leaves share leading axis n; ``mask`` is bool[n]."""
    data: PyTree
    mask: Array


class Inbox(NamedTuple):
    """What the channel delivered: ``msg`` (zeros where nothing came) and ``got``."""
    msg: PyTree
    got: Array


class Query(NamedTuple):
    """What an edge query step returns: the new ``carry``, the ``uplink``, whether
    to ``send`` it (bool[B] in inference, a bool scalar per episode in planning),
    ``done`` (inference: bool[B], rows whose answer is final) and an optional
    edge<->edge ``peer`` message (planning ensembles; metered in its own column)."""
    carry: PyTree
    uplink: PyTree
    send: Array
    done: Array = None
    peer: PyTree = None


class Round(NamedTuple):
    """What ``cloud_update`` receives: one record per round, clients in tier order.

    ``messages``: the delivered uplinks, concatenated over tiers along the client
    axis when every tier's uplink has the same structure and shapes, else a
    mapping ``{tier: stacked}`` in tier order. ``examples`` (float32[K]) and
    ``local_steps`` (int32[K]) are what each client reported: they travel in the
    uplink and are billed (4 bytes each). ``client_ids`` and ``tier`` (int32[K],
    an index into ``view.tiers``) the cloud knows because it sampled them."""
    messages: PyTree
    examples: Array
    client_ids: Array
    tier: Array
    local_steps: Array


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a method declares about itself.

    ``applies_to``: task-name patterns (``fnmatch``, e.g. ``"infer/shapes-split*"``)
    or task families (``spec.config['family']``, e.g. ``"arith"``); empty means
    every task of its tracks. It is the one source of truth for which tasks a
    method runs on (the registry, the suite and ``lsbench list`` all read it)."""
    name: str
    tracks: tuple[str, ...]
    applies_to: tuple[str, ...] = ()
    version: str = "1"
    api_version: str = API_VERSION
    description: str = ""
    paper: str = ""
    # None for a ranked method; else one of REFERENCE_KINDS (plotted, never ranked).
    reference: Optional[str] = None


def applies(manifest: Manifest, task_name: str, track: str, family: str) -> bool:
    """Whether a method with ``manifest`` runs on a task (name, track, family)."""
    if track not in manifest.tracks:
        return False
    if not manifest.applies_to:
        return True
    return any(p == family or fnmatch.fnmatch(task_name, p) for p in manifest.applies_to)


@dataclasses.dataclass(frozen=True)
class ModelDef:
    """A model as plain pure functions, so plugins can bring any framework.

    ``init(rng) -> params``; ``apply(params, x) -> logits``.
    Models with named split points also give ``stages`` (names in order, from
    ``"input"`` to ``"logits"``) and ``run(params, x, start, stop)``, which runs
    the model from stage ``start`` (``x`` is that stage's activation) up to and
    including stage ``stop``. Language models give ``decode(params, tokens,
    pos0, cache) -> (logits, cache)`` (one KV-cached step) and
    ``init_cache(batch) -> cache``. ``info`` holds documented facts (parameter
    count, FLOPs per example, config).
    """
    name: str
    init: Callable[..., PyTree]
    apply: Callable[..., Array]
    stages: tuple[str, ...] = ()
    run: Optional[Callable[..., Array]] = None
    decode: Optional[Callable[..., Any]] = None
    init_cache: Optional[Callable[..., Any]] = None
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------- views
@dataclasses.dataclass(frozen=True)
class View:
    """What one side of a method sees of a task. Read-only.

    ``models``: architectures by role (``edge``, ``cloud``, ``edge/<tier>``, ...);
    architectures are public to both sides. ``params``: this side's pretrained
    parameters only. ``budgets``: the task's edge budgets and protocol sizes
    (documented per track below)."""
    task: str
    version: str
    track: str
    side: str
    num_classes: int
    input_shape: tuple[int, ...]
    models: Mapping[str, ModelDef]
    params: Mapping[str, PyTree] = dataclasses.field(default_factory=dict)
    budgets: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TrainView(View):
    """Training. Both sides know the protocol: ``tiers`` (names, in order),
    ``tier_width`` (name -> width multiplier), ``num_clients``,
    ``clients_per_round``, ``rounds``, ``local_epochs``, ``batch_size``,
    ``max_local_steps``, ``stragglers`` (fraction), ``max_client_n`` (the largest
    client's training examples). ``tier``: the edge object's capacity tier (None
    on the cloud). ``public``: the unlabelled public split (the cloud's; on the
    edge only when the method sets ``edge_uses_public``, billed as setup bytes
    down). ``pretrained``: a model both sides start from (``adapt/*`` tasks),
    shipped to every client once and billed as setup bytes down. Each client's
    local data reaches the edge only as batches."""
    tiers: tuple[str, ...] = ()
    tier_width: Mapping[str, float] = dataclasses.field(default_factory=dict)
    tier: Optional[str] = None
    num_clients: int = 0
    clients_per_round: int = 0
    rounds: int = 0
    local_epochs: float = 1.0
    batch_size: int = 0
    max_local_steps: int = 0
    stragglers: float = 0.0
    max_client_n: int = 0
    public: Optional[Array] = None
    pretrained: Any = None
    dataset: str = ""
    partition: str = ""
    # A small clean labelled set the task gives the cloud ({'x', 'y'}), never the
    # edge; None where the task has none (the Byzantine tasks' root set, #18).
    calib: Optional[Mapping[str, Array]] = None


@dataclasses.dataclass(frozen=True)
class NetworkProfiles:
    """Public network and device profiles (``lsbench/metering/profiles.json``)."""
    network: Mapping[str, Mapping[str, float]]
    device: Mapping[str, Mapping[str, float]]
    headline: str = "lte"


@dataclasses.dataclass(frozen=True)
class InferView(View):
    """Inference. ``input_keys``: the batch keys the edge receives;
    ``batch_size`` and ``max_turns``: the loop's sizes. ``calib``: the
    calibration split the task gives the cloud (None on the edge).
    ``profiles``: network/device profiles. Family facts: ``mode`` (shapes:
    ``split`` or ``exit``), ``raw_bytes``/``pred_bytes`` (shapes),
    ``answer_tokens``, ``vocab``, ``pad`` (arith), ``prompt_len``, ``gen_len``,
    ``max_gamma`` (pcfg)."""
    input_keys: tuple[str, ...] = ("x",)
    batch_size: int = 0
    max_turns: int = 1
    calib: Optional[Mapping[str, Array]] = None
    profiles: Optional[NetworkProfiles] = None
    mode: str = ""
    raw_bytes: int = 0
    pred_bytes: int = 0
    answer_tokens: int = 0
    vocab: int = 0
    pad: int = 0
    prompt_len: int = 0
    gen_len: int = 0
    max_gamma: int = 0


@dataclasses.dataclass(frozen=True)
class PlanEnv:
    """Pure functions of an observation that both sides may use:
    ``featurize(obs) -> float[F]``, ``valid(obs, a) -> bool``, ``state_key(obs) ->
    int32``, ``progress(obs) -> int32`` (a heuristic distance to go),
    ``encode_up(obs) -> uplink`` (the task's fixed state uplink), ``num_actions``,
    ``expect(obs, a) -> int32`` (the state key ``a`` leads to if nothing unforeseen
    happens; a different key next step means a stale plan; None if not given)."""
    featurize: Callable
    valid: Callable
    state_key: Callable
    progress: Callable
    encode_up: Callable
    num_actions: int
    expect: Optional[Callable] = None


@dataclasses.dataclass(frozen=True)
class Planner:
    """The cloud's planner (cloud view only): ``plan(params, world, uplink, k) ->
    int32[k]`` (the next k actions from the state the uplink encodes);
    ``kind`` is ``solver`` or ``learned``; ``params`` a learned planner's.
    ``subgoals(params, world, uplink, n) -> {"cell": int32[n], "tag": int32[n]}``
    (planner -> executor tasks, e.g. plan/keydoor: the next n subgoal cells on the
    planner's path, ``row * view.budgets["grid_width"] + col``; tag 0 = go there,
    c + 1 = pick up the key of colour c there); None where the task has none."""
    plan: Callable
    kind: str = "solver"
    params: PyTree = None
    subgoals: Optional[Callable] = None


@dataclasses.dataclass(frozen=True)
class PlanView(View):
    """Planning. ``env``: observation functions (both sides). ``planner`` and
    ``calib`` (states the edge policy visits, with the expert's actions) are the
    cloud's (None on the edge). The per-episode ``world`` is passed to
    ``cloud_reply``. ``plan_len`` (a whole plan's length), ``ensemble`` (edge
    policies available), ``max_steps``."""
    env: Optional[PlanEnv] = None
    planner: Optional[Planner] = None
    calib: Optional[Mapping[str, Array]] = None
    plan_len: int = 0
    ensemble: int = 1
    max_steps: int = 0


# --------------------------------------------------------------------------- methods
class Method:
    """Base class of all methods. Subclass one of the track classes below.

    The constructor gets this side's view and the merged hyper-parameters; it
    must do no array work (the preflight check refuses it)."""
    manifest: Manifest
    default_hparams: Mapping[str, Any] = {}
    # Hyper-parameter overrides that trace a cost/quality curve; each point is a
    # dict merged over the defaults. The suite runs each point as its own run.
    sweep: Sequence[Mapping[str, Any]] = ()
    # Payload codecs, by name: raw, fp32, fp16, bf16, int8, int4, topk:<frac>.
    # hparams ``codec_up`` / ``codec_down`` override them.
    codec_up: str = "raw"
    codec_down: str = "raw"

    def __init__(self, view: View, hp: Mapping[str, Any]):
        self.view = view
        self.side = view.side
        self.hp = dict(hp)


class TrainMethod(Method):
    """Collaborative training, in rounds.

    Setup: ``cloud_setup`` on the cloud; ``edge_setup`` per client (vmapped
    over a tier's clients; ``self.view.tier`` names the tier). Per round the
    harness samples clients per tier, and for each tier: ``cloud_downlink`` ->
    channel -> vmap over clients of (``client_init``; ``scan`` of
    ``client_step`` over the real local steps; ``client_final``) -> channel.
    Then ``cloud_update`` gets one :class:`Round`. Edge state persists per
    client in the harness between rounds.
    """
    # True if cloud_downlink returns one message per client (leading axis k),
    # False if one message is broadcast to all clients of the tier.
    per_client_downlink: bool = False
    # True if edges hold the public split (billed once per client as setup bytes down).
    edge_uses_public: bool = False
    # True for the pooled-data reference: the harness makes one client of all data.
    pooled: bool = False

    # cloud
    def cloud_setup(self, rng) -> PyTree:
        """The cloud state before round 1."""
        raise NotImplementedError

    # edge
    def edge_setup(self, rng) -> PyTree:
        """One client's persistent edge state (tier: ``self.view.tier``)."""
        raise NotImplementedError

    # cloud
    def cloud_downlink(self, cloud_state, tier: str, client_ids) -> PyTree:
        """The message to the tier's sampled clients (``client_ids``: int32[k])."""
        raise NotImplementedError

    # edge
    def client_init(self, edge_state, downlink, rng) -> PyTree:
        """Local training state (the carry) from the edge state and the downlink."""
        raise NotImplementedError

    def client_step(self, carry, batch, rng) -> tuple[PyTree, Array]:
        """One local step on ``batch = {'x','y','mask'}``; returns (carry, loss)."""
        raise NotImplementedError

    def client_final(self, carry, edge_state, rng) -> tuple[PyTree, PyTree]:
        """Returns (new persistent edge state, uplink message)."""
        raise NotImplementedError

    # cloud
    def cloud_update(self, cloud_state, round: Round, rng) -> PyTree:
        """New cloud state from the round's delivered uplinks."""
        raise NotImplementedError

    # Evaluation (not collaboration, not metered). None where there is no such model.
    def predict_edge(self, edge_state, x) -> Array:
        """(edge) A client's own edge model (personalised accuracy)."""
        raise NotImplementedError

    def predict_global_edge(self, cloud_state, x) -> Optional[Array]:
        """(cloud) The global edge model, if the method keeps one."""
        return None

    def predict_cloud(self, cloud_state, x) -> Optional[Array]:
        """(cloud) The cloud's own model, if any."""
        return None


class _SetupProtocol:
    """Setup shared by inference and planning: ``edge_setup`` (may send one
    message up) -> ``cloud_setup`` (gets it; returns its state and a package for
    the edge, e.g. a router, an exit head, an encoder) -> ``edge_install``.
    Both messages go through the channel: ``setup_bytes_up`` / ``setup_bytes_down``."""

    def edge_setup(self, rng) -> tuple[PyTree, PyTree]:
        """(edge) Returns (edge_state, setup uplink). Default: own params, nothing sent."""
        return dict(self.view.params), {}

    def cloud_setup(self, uplink, rng) -> tuple[PyTree, PyTree]:
        """(cloud) Returns (cloud_state, package for the edge). Default: own params, no package."""
        return dict(self.view.params), {}

    def edge_install(self, edge_state, package, rng) -> PyTree:
        """(edge) The edge state after the package arrives. Default: unchanged."""
        return edge_state


class InferMethod(_SetupProtocol, Method):
    """Collaborative inference, in turns over a batch of B examples.

    After setup, per batch: ``edge_start`` (edge) and ``cloud_start`` (cloud),
    then turns of ``edge_query`` -> channel (rows whose send is set) ->
    ``cloud_reply`` -> channel (the same rows) -> ``edge_receive``, until every
    row is done or ``view.max_turns``; then ``finalize`` (edge).
    """

    def edge_start(self, edge_state, batch: Mapping[str, Array]) -> PyTree:
        """(edge) The batch's carry. ``batch`` holds ``view.input_keys``."""
        raise NotImplementedError

    def edge_query(self, edge_state, carry, rng) -> Query:
        """(edge) ``Query(carry, uplink, send bool[B], done bool[B])``. Uplink leaves
        lead with the batch (or are wrapped in Rows); rows are carried where send
        (and the Rows mask) is set. A done row is not queried again."""
        raise NotImplementedError

    def cloud_start(self, cloud_state, batch_size: int) -> PyTree:
        """(cloud) The cloud's per-batch carry (e.g. a KV cache)."""
        return ()

    def cloud_reply(self, cloud_state, cloud_carry, uplink, rng) -> tuple[PyTree, PyTree]:
        """(cloud) Gets the delivered uplink in the form the edge sent it (a Rows
        whose mask is the rows sent, or the plain pytree; unsent rows are zeros).
        Returns (cloud_carry, reply); reply rows reach the rows that sent."""
        raise NotImplementedError

    # Optional: used instead of ``cloud_reply`` on a batch's first turn (same
    # signature, metered on its own), e.g. to prefill a prompt's KV cache once.
    cloud_first_reply: Optional[Callable] = None

    def edge_receive(self, edge_state, carry, inbox: Inbox, rng) -> PyTree:
        """(edge) The carry after the reply arrives (``inbox.got``: bool[B])."""
        raise NotImplementedError

    def finalize(self, edge_state, carry) -> Mapping[str, Array]:
        """(edge) Predictions, e.g. ``{'pred': int32[B]}`` or ``{'tokens': int32[B, N]}``."""
        raise NotImplementedError


class PlanMethod(_SetupProtocol, Method):
    """Collaborative planning, per episode (the harness vmaps over episodes).

    After setup, per episode ``edge_start``; each step: ``edge_query`` ->
    channel (if ``send``) -> ``cloud_reply`` (gets the episode's ``world``: the
    cloud's prior of the map) -> channel -> ``edge_act`` -> environment step.
    """

    def edge_start(self, edge_state, obs) -> PyTree:
        """(edge) The episode's carry."""
        raise NotImplementedError

    def edge_query(self, edge_state, carry, obs, rng, team: Optional[Inbox] = None) -> Query:
        """(edge) ``Query(carry, uplink, send)`` (send: a bool scalar), optional ``peer``.
        ``team`` (team methods only): the K agents' reports of the step (leaves lead with K;
        row 0 is the acting agent's own)."""
        raise NotImplementedError

    def cloud_reply(self, cloud_state, world, uplink, rng) -> PyTree:
        """(cloud) The reply to a delivered uplink. The harness runs it on every step of
        every episode (vmapped), but where the edge did not send, ``world`` and ``uplink``
        are zeros and the reply is dropped (nothing billed)."""
        raise NotImplementedError

    def edge_act(self, edge_state, carry, obs, inbox: Inbox, rng) -> tuple[PyTree, Array]:
        """(edge) Returns (carry, action)."""
        raise NotImplementedError

    # ---- a team of edge agents (optional: debate) -------------------------------
    def team(self) -> Optional[tuple[int, int]]:
        """``(K, R)`` when the edge is a team of K agents, each its own device, talking over
        R message rounds per step; None (default): the edge is one device. A team's agents
        are built on an *agent view* (the edge view without params) and run as their own
        sealed programs (``agent_*``: one agent's state and carry each; the harness vmaps them
        over the K agents). The edge functions above are the acting agent's (agent 0's device):
        its view holds member 0 only (``params['edge']``). No team program may hold another
        agent's member: what one agent learns of another passes through the peer channel."""
        return None

    def agent_setup(self, params, rng) -> PyTree:
        """(agent) Agent i's state from its member, ``params = {'edge': member i mod M}``
        (``view.params['edge_ensemble']`` of the edge view, M members; ``{}`` where the edge
        view has no params)."""
        return {"policy": params["edge"]}

    def agent_start(self, agent_state, obs) -> PyTree:
        """(agent) The agent's episode carry."""
        return ()

    def agent_round(self, agent_state, carry, obs, inbox: Inbox, rng, r: int = 0) -> tuple[PyTree, PyTree]:
        """(agent) Round ``r`` (static, 0..R) of a step: returns (carry, message). ``inbox``:
        round r - 1's messages of the K agents (leaves lead with K; the agent's own row
        zeros, ``got`` bool[K] marks its peers); round 0's is ``Inbox((), got=False)``.
        A message of rounds < R is broadcast to the K - 1 peers (billed once per sender); the
        message of round R is the agent's report to the acting agent (``edge_query``'s
        ``team``; billed for agents 1..K-1)."""
        raise NotImplementedError


TRACK_BASES = {"train": TrainMethod, "infer": InferMethod, "plan": PlanMethod}

# Which side calls each function (the harness builds and traces them per side).
SIDES = {
    "train": {"edge": ("edge_setup", "client_init", "client_step", "client_final", "predict_edge"),
              "cloud": ("cloud_setup", "cloud_downlink", "cloud_update", "predict_global_edge",
                        "predict_cloud")},
    "infer": {"edge": ("edge_setup", "edge_install", "edge_start", "edge_query", "edge_receive",
                       "finalize"),
              "cloud": ("cloud_setup", "cloud_start", "cloud_reply", "cloud_first_reply")},
    "plan": {"edge": ("edge_setup", "edge_install", "edge_start", "edge_query", "edge_act"),
             "cloud": ("cloud_setup", "cloud_reply"),
             "agent": ("agent_setup", "agent_start", "agent_round")},  # a team's agents (PlanMethod.team)
}

# Functions a method must define per track (the rest have defaults).
REQUIRED = {
    "train": ("cloud_setup", "edge_setup", "cloud_downlink", "client_init", "client_step",
              "client_final", "cloud_update", "predict_edge"),
    "infer": ("edge_start", "edge_query", "cloud_reply", "edge_receive", "finalize"),
    "plan": ("edge_start", "edge_query", "cloud_reply", "edge_act"),
}

__all__ = [
    "API_VERSION", "TRACKS", "SIDE_NAMES", "REFERENCE_KINDS", "Rows", "Inbox", "Query", "Round",
    "Manifest", "applies", "ModelDef", "View", "TrainView", "InferView", "PlanView", "PlanEnv",
    "Planner", "NetworkProfiles", "Method", "TrainMethod", "InferMethod", "PlanMethod",
    "TRACK_BASES", "SIDES", "REQUIRED", "LsbenchError", "UsageError", "TaskError", "PluginError",
    "SealError", "FlopError", "BudgetError",
]

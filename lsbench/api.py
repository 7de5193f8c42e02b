"""The lsbench plugin API, version 1: the one module that methods import.

A method is a class. The harness builds it as ``MethodCls(ctx, hp)`` with the
task's read-only :class:`TaskContext` and the merged hyper-parameters, then jits
its bound functions. Every function is pure over pytrees: the harness owns the
loops, moves every message through its metered channel, counts FLOPs from the
jaxpr of each call, and checkpoints all state. Methods never report costs.

Messages are any pytree of arrays. A leaf whose leading axis is a batch of
examples (rows) goes inside :class:`Rows` with a boolean mask: only rows whose
mask is set are carried and billed.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

API_VERSION = "1"
TRACKS = ("train", "infer", "plan")
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


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a method declares about itself."""
    name: str
    tracks: tuple[str, ...]
    version: str = "1"
    api_version: str = API_VERSION
    description: str = ""
    paper: str = ""
    # None for a ranked method; else one of REFERENCE_KINDS (plotted, never ranked).
    reference: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ModelDef:
    """A model as plain pure functions, so plugins can bring any framework.

    ``init(rng) -> params``; ``apply(params, x) -> logits``. Models that can be
    cut also give ``features(params, x) -> f`` and ``head(params, f) -> logits``.
    """
    name: str
    init: Callable[..., PyTree]
    apply: Callable[..., Array]
    features: Optional[Callable[..., Array]] = None
    head: Optional[Callable[..., Array]] = None
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TaskContext:
    """The read-only view of a task that a method gets.

    ``models`` maps a role (``edge``, ``cloud``, ``edge/<tier>``, ...) to a
    :class:`ModelDef`; ``params`` holds pretrained parameters where the task
    provides them (inference and planning). ``public`` is the unlabelled split
    the cloud (and, when the method says so, the edge) may use. ``extras``
    holds track-specific, documented items (e.g. ``tiers``, ``solver``).
    """
    task: str
    version: str
    track: str
    num_classes: int
    input_shape: tuple[int, ...]
    models: Mapping[str, ModelDef]
    params: Mapping[str, PyTree] = dataclasses.field(default_factory=dict)
    public: Optional[Array] = None
    budgets: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Method:
    """Base class of all methods. Subclass one of the track classes below."""
    manifest: Manifest
    default_hparams: Mapping[str, Any] = {}
    # Hyper-parameter overrides that trace a cost/quality curve; each point is a
    # dict merged over the defaults. The suite runs each point as its own run.
    sweep: Sequence[Mapping[str, Any]] = ()
    # Payload codecs, by name: raw, fp32, fp16, bf16, int8, int4, topk:<frac>.
    # hparams ``codec_up`` / ``codec_down`` override them.
    codec_up: str = "raw"
    codec_down: str = "raw"

    def __init__(self, ctx: TaskContext, hp: Mapping[str, Any]):
        self.ctx = ctx
        self.hp = dict(hp)


class TrainMethod(Method):
    """Collaborative training, in rounds.

    Per round the harness samples clients, groups them by capacity tier, and
    for each tier: ``cloud_downlink`` -> channel -> vmap over clients of
    (``client_init``; ``scan`` of ``client_step`` over the real local steps;
    ``client_final``) -> channel -> ``cloud_update``. Edge state persists per
    client in the harness between rounds.
    """
    # True if cloud_downlink returns one message per client (leading axis k),
    # False if one message is broadcast to all clients of the tier.
    per_client_downlink: bool = False
    # True if edges hold the public split (counted once per client as setup).
    edge_uses_public: bool = False
    # True for the pooled-data reference: the harness makes one client of all data.
    pooled: bool = False

    def init(self, rng) -> PyTree:
        """The cloud state before round 1."""
        raise NotImplementedError

    def init_edge(self, tier: str, rng) -> PyTree:
        """One client's persistent edge state (vmapped over the tier's clients)."""
        raise NotImplementedError

    def cloud_downlink(self, cloud_state, tier: str, client_ids) -> PyTree:
        """The message to the tier's sampled clients (``client_ids``: int32[k])."""
        raise NotImplementedError

    def client_init(self, edge_state, downlink, rng) -> PyTree:
        """Local training state from the persistent edge state and the downlink."""
        raise NotImplementedError

    def client_step(self, client_state, batch, rng) -> tuple[PyTree, Array]:
        """One local step on ``batch = {'x','y','mask'}``; returns (state, loss)."""
        raise NotImplementedError

    def client_final(self, client_state, edge_state, rng) -> tuple[PyTree, PyTree]:
        """Returns (new persistent edge state, uplink message)."""
        raise NotImplementedError

    def cloud_update(self, cloud_state, uplinks: Mapping[str, PyTree],
                     weights: Mapping[str, Array], client_ids: Mapping[str, Array],
                     rng) -> PyTree:
        """New cloud state from stacked uplinks per tier, weighted by examples."""
        raise NotImplementedError

    # Evaluation: return None where the method has no such model.
    def predict_edge(self, edge_state, x) -> Array:
        """A client's own edge model (personalised accuracy)."""
        raise NotImplementedError

    def predict_global_edge(self, cloud_state, x) -> Optional[Array]:
        return None

    def predict_cloud(self, cloud_state, x) -> Optional[Array]:
        return None


class InferMethod(Method):
    """Collaborative inference, in turns over a batch of B examples.

    ``prepare`` runs once (metered as setup). Per batch, the harness calls
    ``edge_start``/``cloud_start``, then repeats ``edge_turn`` -> channel ->
    ``cloud_turn`` (rows with the send mask only) -> channel until every row is
    done or ``ctx.budgets['max_turns']`` is reached, then ``finalize``.
    """

    def prepare(self, calib: Mapping[str, Array], rng) -> tuple[PyTree, PyTree]:
        """(edge_state, cloud_state) from the task's params and a calibration split."""
        raise NotImplementedError

    def edge_start(self, edge_state, batch: Mapping[str, Array]) -> PyTree:
        raise NotImplementedError

    def cloud_start(self, cloud_state, batch_size: int) -> PyTree:
        return ()

    def downlink_like(self, batch_size: int) -> PyTree:
        """Shapes of the downlink (ShapeDtypeStructs), needed only when
        ``edge_turn`` reads ``inbox.msg``: the first turn's inbox is zeros of it."""
        return {}

    def edge_turn(self, edge_state, carry, inbox: Inbox, rng):
        """Returns (carry, uplink, send_mask bool[B], done_mask bool[B]).
        Uplink leaves lead with the batch (or wrap them in Rows); rows are
        carried where send_mask (and the Rows mask) is set."""
        raise NotImplementedError

    def cloud_turn(self, cloud_state, carry, uplink, rng):
        """Gets the delivered uplink in the form the edge sent it (a ``Rows``
        whose mask is the rows sent, or the plain pytree); unsent rows are
        zeros. Returns (carry, downlink); downlink rows reach the rows sent."""
        raise NotImplementedError

    # Optional: used instead of ``cloud_turn`` on a batch's first turn (same
    # signature, metered on its own), e.g. to prefill a prompt's KV cache once.
    cloud_first_turn: Optional[Callable] = None

    def finalize(self, edge_state, carry) -> Mapping[str, Array]:
        """Predictions, e.g. ``{'pred': int32[B]}`` or ``{'tokens': int32[B, N]}``."""
        raise NotImplementedError


class PlanMethod(Method):
    """Collaborative planning, per episode (the harness vmaps over episodes).

    Each step: ``edge_query`` -> channel (if ``send``) -> ``cloud_plan`` ->
    channel -> ``edge_act`` -> environment step. The edge sees only its
    observation; ``cloud_plan`` also gets the task's full ``world`` view.
    """
    # Optional edge<->edge message size per step (multi-agent ensembles) is
    # returned as the ``peer`` field of the query.

    def init(self, rng) -> tuple[PyTree, PyTree]:
        raise NotImplementedError

    def edge_start(self, edge_state, obs) -> PyTree:
        raise NotImplementedError

    def edge_query(self, edge_state, mem, obs, rng) -> "Query":
        raise NotImplementedError

    def cloud_plan(self, cloud_state, world, uplink, rng) -> PyTree:
        raise NotImplementedError

    def edge_act(self, edge_state, mem, obs, inbox: Inbox, rng) -> tuple[PyTree, Array]:
        raise NotImplementedError


class Query(NamedTuple):
    """What ``edge_query`` returns: new memory, the uplink, whether to send it,
    and an optional edge<->edge message (metered in its own column)."""
    mem: PyTree
    uplink: PyTree
    send: Array
    peer: PyTree = None


TRACK_BASES = {"train": TrainMethod, "infer": InferMethod, "plan": PlanMethod}

__all__ = [
    "API_VERSION", "TRACKS", "REFERENCE_KINDS", "Rows", "Inbox", "Manifest", "ModelDef",
    "TaskContext", "Method", "TrainMethod", "InferMethod", "PlanMethod", "Query",
    "TRACK_BASES",
]

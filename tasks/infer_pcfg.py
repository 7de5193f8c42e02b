"""infer/pcfg-specdec: generate N tokens per prompt; the edge drafts, the cloud verifies.

Data: sequences of a procedurally generated grammar (``lsbench.data.pcfg``);
prompts are the first ``prompt_len`` tokens of held-out sequences. Train,
calibration, validation and test are disjoint by prompt (``pcfg.splits``): no
test or validation prompt begins a training sequence. The validation prompts
are the harness's (final.json ``validation``: gamma and the like are selected
on them). Edge and
cloud causal Transformers are trained here (next-token loss) and cached with
Orbax. The run seed drives only sampling.

Sides: the edge view holds the edge model's params (``params['edge']``), the
cloud view the cloud model's (``params['cloud']``) and the calibration
prompts. Both know the architectures (``ModelDef.decode``/``init_cache``),
``prompt_len``, ``gen_len``, ``vocab`` and ``max_gamma``.

Output protocol: ``finalize`` returns ``{'tokens': int32[B, gen_len]}`` with
-1 at positions not generated yet. The harness reads it after every turn and
logs ``tokens``: the output positions that first hold their final value in
that turn (``lsbench.harness.infer_loop``). From that log alone, not from any
counter of the method, the metrics give
- ``mat``: tokens delivered per cloud pass (a pass = a turn the row sent);
- ``acceptance_rate``: the per-token acceptance a = accepted / (accepted +
  rejected), where a pass that delivered d tokens accepted d - 1 drafts and
  rejected one unless d is the run's largest count per pass (gamma + 1: every
  draft accepted, plus the bonus token); a row's last pass, cut at
  ``gen_len``, is left out of a;
- ``lossless`` (greedy: equal to the cloud's greedy output), bytes and FLOPs
  per token, and ``ms_per_token_<profile>`` and ``speedup_<profile>``: the
  latency of ``lsbench.metering.profiles.derived`` on the run's log, against
  the same function on the log of cloud-only streaming (one cloud decode pass
  per token, prompt up once, one int32 token down per pass; its per-turn cloud
  FLOPs are those of the cloud model's prefill and decode programs, counted by
  the FLOP meter). No latency constant of the task's own: every figure comes
  from metered FLOPs and bytes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lsbench import api
from lsbench.data import pcfg
from lsbench.models import transformer as T
from lsbench.models.cache import cached_params
from lsbench.task import InferInstance, TaskError, TaskSpec
from tasks._infer_metrics import finite

MAX_GAMMA = 8


def greedy_generate(cfg, params, x, n, chunk=256):
    """The cloud's greedy continuation of prompts x [B, Lp] with the KV cache: int32[B, n]."""
    Lp = x.shape[1]

    @jax.jit
    def run(xb):
        B = xb.shape[0]
        _, cache = T.decode(cfg, params, xb[:, :-1], jnp.zeros((B,), jnp.int32), T.init_cache(cfg, B))

        def step(c, i):
            tok, cache = c
            lg, cache = T.decode(cfg, params, tok[:, None], Lp - 1 + i + jnp.zeros((B,), jnp.int32), cache)
            nxt = jnp.argmax(lg[:, -1], -1).astype(jnp.int32)
            return (nxt, cache), nxt
        _, toks = jax.lax.scan(step, (xb[:, -1], cache), jnp.arange(n))
        return toks.T
    return np.concatenate([np.asarray(run(jnp.asarray(x[i:i + chunk]))) for i in range(0, len(x), chunk)])


def _matmul_flops(fn, *args) -> int:
    from lsbench.metering.flops import count_jaxpr
    return int(count_jaxpr(jax.make_jaxpr(fn)(*args)).matmul)


def decode_flops(cfg, params, positions: int) -> int:
    """Matmul FLOPs per row of one cached decode call over ``positions`` new
    tokens (attention spans the whole cache)."""
    f = lambda p, t, pos, c: T.decode(cfg, p, t, pos, c)[0]  # noqa: E731
    return _matmul_flops(f, params, jnp.zeros((1, positions), jnp.int32), jnp.zeros((1,), jnp.int32),
                         T.init_cache(cfg, 1))


def streaming_log(Lp: int, N: int, prefill: int, step: int) -> dict:
    """The harness log of one example under cloud-only streaming: N turns; the
    first sends the prompt (int32 ids) and runs the prefill and one decode
    pass, the others send an empty request and run one decode pass; each
    delivers one int32 token."""
    z = np.zeros((N, 1), np.int64)
    log = {k: z.copy() for k in ("edge_flops", "edge_flops_all", "cloud_flops", "cloud_flops_all",
                                 "bytes_up", "bytes_down", "messages")}
    log["cloud_flops"][:, 0] = step
    log["cloud_flops"][0, 0] += prefill
    log["bytes_up"][0, 0] = 4 * Lp
    log["bytes_down"][:, 0] = 4
    log["messages"][:, 0] = 2
    log["sent"] = np.ones((N, 1), bool)
    log["active"] = np.ones((N, 1), bool)
    return log


def pass_stats(log) -> dict:
    """MAT and per-token acceptance from the harness's per-turn log (see the module docstring)."""
    sent = np.asarray(log["sent"], bool)
    toks = np.asarray(log["tokens"], np.int64)
    d = toks[sent]
    if d.size == 0:
        return {}
    out = {"mat": float(d.mean()), "cloud_passes": int(sent.sum())}
    # A row's last pass is cut at gen_len: leave it out of the acceptance.
    last = sent & (np.cumsum(sent[::-1], 0)[::-1] == 1)
    full = toks[sent & ~last]
    if full.size and full.max() > 1:
        top = int(toks[sent].max())
        acc = (full - 1).sum()
        rej = (full < top).sum()
        out["acceptance_rate"] = float(acc / max(acc + rej, 1))
        out["gamma_seen"] = top - 1
    return out


def build(spec, data_dir, seed, log=print):
    c = spec.config
    for k in ("prompt_len", "gen_len", "n_train", "n_val", "n_test", "edge", "cloud", "edge_budgets"):
        if k not in c:
            raise TaskError(f"task {spec.name}: config lacks '{k}'; fix the TaskSpec")
    Lp, N = c["prompt_len"], c["gen_len"]
    if Lp < 2:
        raise TaskError(f"task {spec.name}: prompt_len must be >= 2, got {Lp}")
    g = pcfg.make_grammar(c["grammar_seed"])
    L = Lp + N
    d = pcfg.splits(g, L, Lp, c["data_seed"], {"train": c["n_train"], "calib": c["n_calib"],
                                                "val": c["n_val"], "test": c["n_test"]})
    train, calib, val, test = d["train"], d["calib"], d["val"], d["test"]
    dhash = pcfg.data_hash(train, test, calib, val)
    cfgs, params, hashes, trained = {}, {}, {"data": dhash}, {}
    for role in ("edge", "cloud"):
        m = c[role]
        cfg = T.LMConfig(vocab=g["vocab"], d=m["d"], layers=m["layers"], heads=m["heads"],
                         max_len=L + MAX_GAMMA + 1)
        recipe = {"task": "pcfg", "role": role, "model": cfg.as_dict(), "train": m, "data": dhash,
                  "batch": c["train_batch"], "seed": c["model_seed"]}
        w = np.ones((len(train), L - 1), np.float32)
        fn = (lambda stats, cfg=cfg, m=m, r=role: T.train_lm(
            cfg, train, w, steps=m["steps"], batch=c["train_batch"], lr=m["lr"],
            seed=c["model_seed"] + (r == "cloud"), desc=f"pcfg-{r}", stats=stats))
        params[role], hashes[f"model_{role}"] = cached_params(data_dir, f"pcfg-{role}", recipe, fn, log=log,
                                                              costs=trained)
        cfgs[role] = cfg
    prompts, val_prompts = test[:, :Lp], val[:, :Lp]
    ref = greedy_generate(cfgs["cloud"], params["cloud"], prompts, N)
    val_ref = greedy_generate(cfgs["cloud"], params["cloud"], val_prompts, N)
    # Cloud-only streaming, the speed-up's reference: its log under the harness's rules.
    stream = streaming_log(Lp, N, decode_flops(cfgs["cloud"], params["cloud"], Lp - 1),
                           decode_flops(cfgs["cloud"], params["cloud"], 1))
    from lsbench.metering import profiles
    budgets = dict(c["edge_budgets"])
    common = dict(
        task=spec.name, version=spec.version, track="infer", num_classes=g["vocab"],
        input_shape=(Lp,), models={r: T.lm_def(cfgs[r], f"pcfg-{r}") for r in cfgs},
        budgets=budgets, input_keys=("x",), batch_size=c["batch_size"], max_turns=N + 1,
        profiles=api.NetworkProfiles(profiles.networks(), profiles.devices(), spec.headline_profile),
        vocab=g["vocab"], prompt_len=Lp, gen_len=N, max_gamma=MAX_GAMMA)
    edge_view = api.InferView(side="edge", params={"edge": params["edge"]}, **common)
    cloud_view = api.InferView(side="cloud", params={"cloud": params["cloud"]},
                               calib={"x": calib[:, :Lp]}, **common)

    def metrics_fn(preds, test, log):
        toks = np.asarray(preds["tokens"])
        tokens = toks.size
        out = {"token_match_greedy": float((toks == test["cloud_greedy"]).mean()),
               "lossless": float(np.array_equal(toks, test["cloud_greedy"])),
               "cloud_passes_per_token": float(np.asarray(log["sent"]).sum() / tokens)}
        out.update(pass_stats(log))
        for k in ("bytes_up", "bytes_down", "edge_flops", "cloud_flops"):
            out[f"{k}_per_token"] = float(np.asarray(log[k]).sum() / tokens)
        mine, base = profiles.derived(log), profiles.derived(stream)
        for name in mine:
            ms = mine[name]["latency_mean_s"] / N * 1e3
            out[f"ms_per_token_{name}"] = ms
            if ms > 0:
                out[f"speedup_{name}"] = base[name]["latency_mean_s"] / N * 1e3 / ms
        return finite(out)

    return InferInstance(
        edge_view=edge_view, cloud_view=cloud_view, calib={"x": calib[:, :Lp]},
        test={"x": prompts, "cloud_greedy": ref}, val={"x": val_prompts, "cloud_greedy": val_ref},
        batch_size=c["batch_size"], max_turns=N + 1, metrics_fn=metrics_fn, hashes=hashes,
        edge_budgets=budgets, reference_training=trained)


# Edge budgets (checked by the harness): what one edge may hold (the full tier's edge
# model is 74 KB) and spend per prompt (the worst case of drafting with gamma = 8:
# gen_len + 1 turns of 9 cached positions, 22.5 MFLOPs on the full tier).
_BUDGETS = {"param_bytes": 256 * 1024, "flops_per_example": 32_000_000}
_BASE = {"family": "pcfg", "grammar_seed": 3, "data_seed": 5, "model_seed": 13, "n_calib": 64,
         "train_batch": 32, "edge_budgets": _BUDGETS}

TASK = TaskSpec(
    name="infer/pcfg-specdec", version="3", track="infer", tier="default",
    description="Edge-draft / cloud-verify speculative decoding of 64 tokens on a PCFG language; "
                "MAT, acceptance, bytes and FLOPs per token, speed-up per network profile.",
    primary_metric="speedup_lte", headline_profile="lte",
    config={**_BASE, "prompt_len": 8, "gen_len": 64, "n_train": 4000, "n_val": 128, "n_test": 256,
            "batch_size": 256,
            "edge": {"d": 32, "layers": 1, "heads": 2, "steps": 500, "lr": 3e-3},
            "cloud": {"d": 64, "layers": 3, "heads": 4, "steps": 500, "lr": 3e-3}},
    builder=build)

SMALL = TaskSpec(
    name="infer/pcfg-specdec-small", version="3", track="infer", tier="small",
    description="CI-sized pcfg-specdec: 16 tokens, smaller models.",
    primary_metric="speedup_lte", headline_profile="lte",
    config={**_BASE, "prompt_len": 8, "gen_len": 16, "n_train": 1500, "n_val": 64, "n_test": 64,
            "batch_size": 64,
            "edge": {"d": 16, "layers": 1, "heads": 2, "steps": 200, "lr": 3e-3},
            "cloud": {"d": 32, "layers": 2, "heads": 4, "steps": 300, "lr": 3e-3}},
    builder=build)

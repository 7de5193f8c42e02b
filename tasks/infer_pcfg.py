"""infer/pcfg-specdec: generate N tokens per prompt; the edge drafts, the cloud verifies.

Data: sequences of a procedurally generated grammar (``lsbench.data.pcfg``);
prompts are the first ``prompt_len`` tokens of held-out sequences. Edge and
cloud causal Transformers are trained here (next-token loss) and cached with
Orbax. The run seed drives only sampling.

Latency model (``latency_fn``, constants in ``config['latency']``): decoding
is memory-bound, so a pass costs about one decode step whatever its width:
  edge  = edge_step_s x positions the edge processed (edge_flops / flops per position)
  cloud = per sent turn: cloud_pass_s x passes + cloud_token_s x positions
          (passes = 1, plus 1 for the prompt prefill on the first turn;
          positions = cloud_flops / cloud flops per position)
  net   = rtt_s on turns that upload anything (a request) + bytes / bandwidth;
          push-only turns (cloud-only streaming) pay no round trip.
A pure FLOP model would make verifying gamma+1 positions look gamma+1 times
too expensive. ``metrics_fn`` reports MAT, acceptance, bytes and FLOPs per
token, ``lossless`` (greedy: equal to the cloud's greedy output), and the
modelled ``speedup_<profile>`` over cloud-only streaming under the same model.
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


def flops_per_position(cfg, params) -> int:
    """Matmul FLOPs of one cached decode position (attention spans the whole cache)."""
    from lsbench.metering.flops import FlopMeter
    f = lambda p, t, pos, c: T.decode(cfg, p, t, pos, c)[0]  # noqa: E731
    return int(FlopMeter().count("decode1", f, params, jnp.zeros((1, 1), jnp.int32),
                                 jnp.zeros((1,), jnp.int32), T.init_cache(cfg, 1)).matmul)


def make_latency_fn(lat, f_edge, f_cloud):
    def latency_fn(log, net, dev):
        sent = np.asarray(log["sent"], bool)
        up, down = np.asarray(log["bytes_up"], float), np.asarray(log["bytes_down"], float)
        edge = np.asarray(log["edge_flops"], float) / f_edge * lat["edge_step_s"]
        pos = np.asarray(log["cloud_flops"], float) / f_cloud
        first = sent & (np.cumsum(sent, 0) == 1)
        cloud = np.where(sent, lat["cloud_pass_s"] * (1 + first) + lat["cloud_token_s"] * pos, 0.0)
        netw = np.where(sent, np.where(up > 0, net["rtt_s"], 0.0) + up * 8 / net["up_bps"]
                        + down * 8 / net["down_bps"], 0.0)
        return (edge + cloud + netw).sum(0)
    return latency_fn


def streaming_latency(lat, net, Lp, N) -> float:
    """Cloud-only streaming under the same model: one request, prefill, N decode passes."""
    return (net["rtt_s"] + 4 * Lp * 8 / net["up_bps"] + N * 4 * 8 / net["down_bps"]
            + lat["cloud_pass_s"] * (N + 1) + lat["cloud_token_s"] * (Lp - 1 + N))


def build(spec, data_dir, seed, log=print):
    c = spec.config
    for k in ("prompt_len", "gen_len", "n_train", "n_test", "edge", "cloud", "latency"):
        if k not in c:
            raise TaskError(f"task {spec.name}: config lacks '{k}'; fix the TaskSpec")
    Lp, N = c["prompt_len"], c["gen_len"]
    if Lp < 2:
        raise TaskError(f"task {spec.name}: prompt_len must be >= 2, got {Lp}")
    g = pcfg.make_grammar(c["grammar_seed"])
    L = Lp + N
    train = pcfg.generate(g, c["n_train"], L, c["data_seed"])
    test = pcfg.generate(g, c["n_test"], L, c["data_seed"] + 1)
    calib = pcfg.generate(g, c["n_calib"], L, c["data_seed"] + 2)
    dhash = pcfg.data_hash(train, test, calib)
    cfgs, params, hashes = {}, {}, {"data": dhash}
    for role in ("edge", "cloud"):
        m = c[role]
        cfg = T.LMConfig(vocab=g["vocab"], d=m["d"], layers=m["layers"], heads=m["heads"],
                         max_len=L + MAX_GAMMA + 1)
        recipe = {"task": "pcfg", "role": role, "model": cfg.as_dict(), "train": m, "data": dhash,
                  "batch": c["train_batch"], "seed": c["model_seed"]}
        w = np.ones((len(train), L - 1), np.float32)
        fn = (lambda cfg=cfg, m=m, r=role: T.train_lm(cfg, train, w, steps=m["steps"], batch=c["train_batch"],
                                                      lr=m["lr"], seed=c["model_seed"] + (r == "cloud")))
        params[role], hashes[f"model_{role}"] = cached_params(data_dir, f"pcfg-{role}", recipe, fn, log=log)
        cfgs[role] = cfg
    prompts = test[:, :Lp]
    ref = greedy_generate(cfgs["cloud"], params["cloud"], prompts, N)
    f_edge = flops_per_position(cfgs["edge"], params["edge"])
    f_cloud = flops_per_position(cfgs["cloud"], params["cloud"])
    lat = dict(c["latency"])
    ctx = api.TaskContext(
        task=spec.name, version=spec.version, track="infer", num_classes=g["vocab"],
        input_shape=(Lp,), models={r: T.lm_def(cfgs[r], f"pcfg-{r}") for r in cfgs}, params=params,
        budgets={"max_turns": N + 1},
        extras={"input_keys": ("x",), "prompt_len": Lp, "gen_len": N, "vocab": g["vocab"],
                "max_gamma": MAX_GAMMA, "latency": lat})

    def metrics_fn(preds, test, log):
        from lsbench.metering import profiles
        toks = np.asarray(preds["tokens"])
        passes = np.maximum(np.asarray(preds["passes"]), 1)
        tokens = toks.size
        out = {"token_match_greedy": float((toks == test["cloud_greedy"]).mean()),
               "lossless": float(np.array_equal(toks, test["cloud_greedy"])),
               "cloud_passes_per_token": float(np.asarray(log["sent"]).sum() / tokens)}
        if np.asarray(preds["drafted"]).sum() > 0:
            acc = np.asarray(preds["accepted"])
            out["mat"] = float(((acc + passes) / passes).mean())
            out["acceptance_rate"] = float(acc.sum() / np.asarray(preds["drafted"]).sum())
        for k in ("bytes_up", "bytes_down", "edge_flops", "cloud_flops"):
            out[f"{k}_per_token"] = float(np.asarray(log[k]).sum() / tokens)
        fn = make_latency_fn(lat, f_edge, f_cloud)
        dev = profiles.devices()
        for name, net in profiles.networks().items():
            ms = float(fn(log, net, dev).mean()) / N * 1e3
            out[f"ms_per_token_{name}"] = ms
            out[f"speedup_{name}"] = streaming_latency(lat, net, Lp, N) / N * 1e3 / ms
        return finite(out)

    return InferInstance(
        ctx=ctx, calib={"x": calib[:, :Lp]}, test={"x": prompts, "cloud_greedy": ref},
        batch_size=c["batch_size"], max_turns=N + 1, metrics_fn=metrics_fn,
        latency_fn=make_latency_fn(lat, f_edge, f_cloud), hashes=hashes)


_LAT = {"edge_step_s": 0.002, "cloud_pass_s": 0.020, "cloud_token_s": 0.0005}
_BASE = {"family": "pcfg", "grammar_seed": 3, "data_seed": 5, "model_seed": 13, "n_calib": 64,
         "train_batch": 32, "latency": _LAT}

TASK = TaskSpec(
    name="infer/pcfg-specdec", version="1", track="infer", tier="default",
    description="Edge-draft / cloud-verify speculative decoding of 64 tokens on a PCFG language; "
                "MAT, acceptance, bytes and FLOPs per token, modelled speed-up per network.",
    primary_metric="speedup_lte", headline_profile="lte",
    config={**_BASE, "prompt_len": 8, "gen_len": 64, "n_train": 4000, "n_test": 256, "batch_size": 256,
            "edge": {"d": 32, "layers": 1, "heads": 2, "steps": 500, "lr": 3e-3},
            "cloud": {"d": 64, "layers": 3, "heads": 4, "steps": 500, "lr": 3e-3}},
    builder=build)

SMALL = TaskSpec(
    name="infer/pcfg-specdec-small", version="1", track="infer", tier="small",
    description="CI-sized pcfg-specdec: 16 tokens, smaller models.",
    primary_metric="speedup_lte", headline_profile="lte",
    config={**_BASE, "prompt_len": 8, "gen_len": 16, "n_train": 1500, "n_test": 64, "batch_size": 64,
            "edge": {"d": 16, "layers": 1, "heads": 2, "steps": 200, "lr": 3e-3},
            "cloud": {"d": 32, "layers": 2, "heads": 4, "steps": 300, "lr": 3e-3}},
    builder=build)

"""Robust aggregation rules (baselines/robust_agg.py) on planted updates: what each
rule must do with a minority of outliers, by construction (no trained numbers)."""
import types

import jax
import jax.numpy as jnp
import numpy as np

from baselines import robust_agg as ra


def _rule(cls, **hp):
    obj = cls.__new__(cls)  # the aggregation rule alone (no view, no model)
    obj.hp = {**cls.default_hparams, **hp}
    obj.view = types.SimpleNamespace(tiers=("full",))
    return obj


def _planted(K=10, bad=2, D=50, seed=0):
    rng = np.random.default_rng(seed)
    good = 1.0 + 0.1 * rng.normal(size=(K - bad, D))
    return jnp.asarray(np.concatenate([good, -40.0 * good[:bad]]), jnp.float32), good.mean(0)


def test_rules_ignore_a_planted_minority():
    d, mean = _planted()
    w, v = jnp.ones(10), jnp.zeros(50)
    fedavg = np.asarray(ra._weighted_mean(d, w))
    assert np.all(fedavg < 0)  # the plain average is dragged below zero
    for cls in (ra.Median, ra.TrimmedMean, ra.Krum, ra.MultiKrum, ra.NormClip, ra.CenteredClip):
        agg = np.asarray(_rule(cls).aggregate(d, w, v, None, None))
        assert np.all(agg > 0.5), cls.__name__
    # Krum keeps one honest update; Multi-Krum averages exactly the honest ones
    assert any(np.array_equal(np.asarray(_rule(ra.Krum).aggregate(d, w, v, None, None)), np.asarray(r))
               for r in d[:8])
    np.testing.assert_allclose(np.asarray(_rule(ra.MultiKrum).aggregate(d, w, v, None, None)),
                               np.asarray(d[:8]).mean(0), rtol=1e-5)


def test_norm_clip_bounds_every_update_and_trimmed_mean_trims_byz_frac():
    d, _ = _planted()
    agg = _rule(ra.NormClip, tau=1.0).aggregate(d, jnp.ones(10), jnp.zeros(50), None, None)
    assert float(jnp.linalg.norm(agg)) <= 1.0 + 1e-5
    x = jnp.arange(10.0)[:, None] * jnp.ones((1, 3))
    np.testing.assert_allclose(np.asarray(_rule(ra.TrimmedMean, byz_frac=0.2).aggregate(
        x, None, None, None, None)), np.full(3, 4.5))  # drops 0, 1 and 8, 9


def test_fltrust_gives_no_weight_to_updates_against_the_root_update():
    """With the cloud's own (root-set) update g0, clients pointing away from it get
    ReLU(cos) = 0; the rest are rescaled to |g0|."""
    g0 = jnp.ones(4)
    rule = _rule(ra.FLTrust)
    rule._root_update = lambda w, rng: g0
    d = jnp.stack([2 * g0, -5 * g0, jnp.array([1.0, 1.0, 0.0, 0.0])])
    agg = np.asarray(rule.aggregate(d, jnp.ones(3), None, jax.random.PRNGKey(0), {"w": None}))
    c = 1.0 / np.sqrt(2.0)  # cos of the third update with g0
    expect = (1.0 * np.asarray(g0) + c * np.array([1.0, 1.0, 0.0, 0.0]) * 2.0 / np.sqrt(2.0)) / (1 + c)
    np.testing.assert_allclose(agg, expect, rtol=1e-5)

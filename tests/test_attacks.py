"""Byzantine clients (#18): the attack hook, attacks, task variants, defences.

Runs use the tiny training task (tests/plugins/tiny_train.py) with 20 clients,
built through ``tasks.train_byz.variant`` exactly like the registered
``train/*-byz-*`` tasks."""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsbench import registry
from lsbench.attacks import Attack, load_attack
from lsbench.attacks.hook import Byzantine, draw_malicious, with_attack
from lsbench.errors import PluginError
from lsbench.harness import runner
from tasks.train_byz import variant

TESTS = os.path.dirname(os.path.abspath(__file__))
TINY_REF = os.path.join(TESTS, "plugins", "tiny_train.py") + ":TASK"


def tiny(**cfg):
    spec = registry.load_task(TINY_REF)
    base = dict(spec.config, clients=20, clients_per_round=10, rounds=3, eval_every=3)
    return dataclasses.replace(spec, config={**base, **cfg})


def run(spec, method="fedavg", seed=0, spy=None):
    """(state, rows, metrics) of a whole run, in process (no run dir)."""
    cls = registry.load_method(method, spec)
    hp = runner.merge_hparams(cls, None)
    cfg = runner.RunConfig(task=spec.name, method=method, seed=seed, data_dir="/nonexistent-unused")
    inst, sides, loop, _ = runner.build(cfg, spec, cls, hp, log=lambda s: None)
    if spy is not None and inst.attack is not None:
        spy(inst.attack)
    state = loop.init_state()
    state, rows, ok = runner.run_units(loop, state, 0, loop.num_units)
    return state, rows, loop.evaluate(state), loop


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


@pytest.fixture(scope="module")
def clean_run():
    return run(tiny())


def test_f0_equals_clean_bit_for_bit(clean_run):
    s0, r0, m0, loop0 = clean_run
    s1, r1, m1, loop = run(variant(tiny(), "signflip", 0.0))
    assert loop.inst.attack is not None and not loop.inst.attack.malicious.any()
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(s0["cloud"]), _leaves(s1["cloud"])))
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(s0["edge"]), _leaves(s1["edge"])))
    assert r0 == r1 and m1 == m0
    # a data attack with nobody malicious leaves every array of the task as it was
    byz = variant(tiny(), "backdoor", 0.0).build("", 0)
    for k, a in loop0.inst.hidden().items():
        assert np.array_equal(a, byz.hidden()[k])


def test_signflip_rewrites_only_malicious_rows_and_bills_the_same(clean_run):
    clean = tiny()
    spec = variant(clean, "signflip", 0.5)
    seen = []

    def spy(byz):
        orig = byz.round

        def wrapped(loop, cloud, uplinks, picks, rkey):
            out = orig(loop, cloud, uplinks, picks, rkey)
            seen.append((cloud, uplinks, out, {t: np.asarray(p) for t, p in picks.items()}, byz.malicious))
            return out
        byz.round = wrapped

    s1, r1, _, _ = run(spec, spy=spy)
    s0, r0, _, _ = clean_run
    assert len(seen) == clean.config["rounds"]
    for k in ("bytes_up", "bytes_down", "edge_flops"):  # the attack's uplinks are billed like any other
        assert r1[-1][k] == r0[-1][k]
    cloud, ups, out, picks, mal = seen[0]  # round 0: same global model as the clean run's
    scale = load_attack("signflip").hp["scale"]
    for t, ids in picks.items():
        name = list(ups)[list(picks).index(t)]
        m = mal[ids]
        assert m.any() and (~m).any()
        for u, o, g in zip(jax.tree_util.tree_leaves(ups[name]), jax.tree_util.tree_leaves(out[name]),
                           jax.tree_util.tree_leaves(cloud)):
            u, o, g = np.asarray(u), np.asarray(o), np.asarray(g)
            assert np.array_equal(o[~m], u[~m])  # honest uplinks untouched
            np.testing.assert_allclose(o[m], g - scale * (u[m] - g), rtol=1e-5, atol=1e-6)


class _Spy(Attack):
    name = "spy"
    default_hparams = {"omniscient": False}

    def uplink(self, u, mal, ref, key):
        return u + 1.0


def test_only_omniscient_attacks_see_honest_uplinks():
    u = jnp.arange(12.0).reshape(4, 3) + 1
    mal = jnp.array([True, False, True, False])
    for omni in (False, True):
        seen = {}

        class Probe(_Spy):
            def uplink(self, u, mal, ref, key):
                seen["u"] = u
                return u + 1.0
        out = Byzantine(Probe(omniscient=omni), np.zeros(4, bool))._attack(u, mal, jnp.zeros_like(u), None)
        honest = np.asarray(seen["u"])[~np.asarray(mal)]
        np.testing.assert_array_equal(honest, np.asarray(u)[~np.asarray(mal)] if omni else 0.0)
        np.testing.assert_array_equal(np.asarray(out)[~np.asarray(mal)], np.asarray(u)[~np.asarray(mal)])
        np.testing.assert_array_equal(np.asarray(out)[np.asarray(mal)], np.asarray(u)[np.asarray(mal)] + 1)


def test_data_attacks_poison_only_malicious_clients():
    inst = tiny().build("", 0)
    mask = draw_malicious(20, 0.2, 0)
    assert mask.sum() == 4 and np.array_equal(mask, draw_malicious(20, 0.2, 0))
    assert not np.array_equal(mask, draw_malicious(20, 0.2, 1))
    lf = with_attack(inst, load_attack("labelflip"), 0.2, 0, 3)
    bd = with_attack(inst, load_attack("backdoor", target=1), 0.2, 0, 3)
    for c in range(20):
        n = inst.train_n[c]
        if mask[c]:
            np.testing.assert_array_equal(lf.train_y[c, :n], 2 - inst.train_y[c, :n])
            hit = bd.train_y[c, :n] != inst.train_y[c, :n]
            assert np.all(bd.train_y[c, :n][hit] == 1)
            changed = np.any(bd.train_x[c, :n] != inst.train_x[c, :n], axis=-1)
            assert changed.any() and np.array_equal(bd.train_x[c, :n][changed],
                                                    bd.attack.attack.trigger(inst.train_x[c, :n][changed]))
        else:
            assert np.array_equal(lf.train_y[c], inst.train_y[c]) and np.array_equal(bd.train_x[c], inst.train_x[c])


def test_bad_attack_references_fail_with_one_line():
    with pytest.raises(PluginError, match="unknown attack 'nope'"):
        load_attack("nope")
    with pytest.raises(PluginError, match="unknown hyper-parameter"):
        load_attack("signflip", sigma=1.0)


def test_attack_file_plugin_runs_with_attack_flag(tmp_path, monkeypatch):
    """``lsbench run --attack=path.py:Class`` on a clean task: 20% of the clients run the
    file's attack (a boosted backdoor), and final.json reports its success rate."""
    import json

    from lsbench.cli.main import main
    mark = tmp_path / "traced"
    plug = tmp_path / "my_attack.py"
    plug.write_text(
        "from lsbench.attacks.builtin import Backdoor\n\n"
        "class Boosted(Backdoor):\n    name = 'boosted'\n"
        "    default_hparams = {**Backdoor.default_hparams, 'boost': 3.0, 'target': 2}\n\n"
        "    def uplink(self, u, mal, ref, key):\n"
        f"        open({str(mark)!r}, 'w').close()  # at trace time: the hook called us\n"
        "        return super().uplink(u, mal, ref, key)\n")
    wd = tmp_path / "run"
    monkeypatch.setenv("LSBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LSBENCH_TIME_PROGRAMS", "0")  # the timing column is not what this checks
    code = main(["lsbench", "run", f"--task={TINY_REF}", "--method=fedavg", f"--attack={plug}:Boosted",
                 f"--workdir={wd}", "--max_units=2"])
    assert code == 0 and mark.exists()
    final = json.loads((wd / "final.json").read_text())
    assert final["task"] == f"{TINY_REF}@{plug}:Boosted"
    assert 0.0 <= final["metrics"]["attack_asr_edge"] <= 1.0

"""Metering overhead: the share of a run's wall time the meter costs.

Runs one task per track through ``lsbench.run`` with the metering entry points
wrapped in timers, and prints a table of seconds spent in each part and their
share of the run's wall time (the figure the issue bounds at 2%):

- ``flops``: FLOP counting (``lsbench.metering.flops.count_jaxpr``; each
  sealed program is counted once, then cached by the Sealer);
- ``billing``: the channel's byte counts (``channel.wire_bytes``: the encoded
  size of each leaf from its shape, cached per signature, and ``mask_bytes``);
  they run at trace time; the few integer ops they add to the compiled rounds
  are not separable and are not included. The channel's encoding and decoding
  (what a codec does to the payload) is transport, not metering: shown apart
  as ``channel`` (all of ``Channel.transmit*``, billing included);
- ``derive``: the modelled figures and their compact inputs
  (``profiles.derived`` / ``train_derived``);
- ``budgets``: edge-footprint measurement and checks after init and every unit;
- ``log``: metrics.jsonl rows (``RunDir.append_metrics``, fsync included).

``sanity`` (the measured program wall times of final.json, ``sealed.measured``)
is shown apart: it runs after the run's wall time is taken. Not included: the
loops' own per-turn log arrays in NumPy (a few array writes per unit).

    python benchmarks/metering_overhead.py                       # the default runs
    python benchmarks/metering_overhead.py --runs train/digits:fedavg --max_units 5
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT = ("train/digits:fedavg", "infer/shapes-split-small:split", "plan/fogmaze-small:periodic")
PARTS = ("flops", "billing", "derive", "budgets", "log")


class Timers:
    def __init__(self):
        self.s = {p: 0.0 for p in PARTS + ("sanity", "channel")}
        self._depth = {}
        self.calls = {p: 0 for p in self.s}

    def wrap(self, owner, attr, part):
        fn = getattr(owner, attr)
        key = (id(owner), attr)

        def timed(*a, **k):
            if self._depth.get(part, 0):  # nested (recursive) call: the outer one is timing
                return fn(*a, **k)
            self._depth[part] = 1
            self.calls[part] += 1
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.s[part] += time.perf_counter() - t0
                self._depth[part] = 0
        timed.__wrapped__ = fn
        setattr(owner, attr, timed)
        return key

    def reset(self):
        for p in self.s:
            self.s[p] = 0.0
            self.calls[p] = 0


def instrument() -> Timers:
    from lsbench.harness import budgets, sealed
    from lsbench.metering import channel, flops, profiles
    from lsbench.results.rundir import RunDir
    t = Timers()
    t.wrap(flops, "count_jaxpr", "flops")
    for m in ("transmit", "transmit_rows_tree", "transmit_rows"):
        t.wrap(channel.Channel, m, "channel")
    t.wrap(channel, "wire_bytes", "billing")
    t.wrap(channel, "mask_bytes", "billing")
    t.wrap(profiles, "derived", "derive")
    t.wrap(profiles, "train_derived", "derive")
    for m in ("footprint", "check", "margins"):
        t.wrap(budgets, m, "budgets")
    t.wrap(RunDir, "append_metrics", "log")
    t.wrap(sealed, "measured", "sanity")
    return t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default=",".join(DEFAULT), help="task:method,... (one per track)")
    ap.add_argument("--max_units", type=int, default=None, help="cap units per run (default: whole runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data_dir", default=os.environ.get("LSBENCH_DATA_DIR"))
    a = ap.parse_args(argv)
    import lsbench
    timers = instrument()
    rows = []
    for item in a.runs.split(","):
        task, method = item.rsplit(":", 1)
        timers.reset()
        t0 = time.perf_counter()
        final = lsbench.run(task, method, seed=a.seed, data_dir=a.data_dir, max_units=a.max_units)
        whole = time.perf_counter() - t0
        s = dict(timers.s)
        s["programs"] = timers.calls["flops"]
        run_s = whole - s["sanity"]
        over = sum(s[p] for p in PARTS)
        rows.append((task, method, final["status"], final.get("units"), run_s, s, over, 100 * over / run_s))
    head = ("task", "method", "status", "run s", "programs counted") + PARTS + \
        ("metering s", "share %", "channel s", "sanity s")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for task, method, status, units, run_s, s, over, pct in rows:
        cells = [task, method, status, f"{run_s:.1f}", str(s["programs"])] + [f"{s[p]:.3f}" for p in PARTS] + \
            [f"{over:.3f}", f"{pct:.2f}", f"{s['channel']:.2f}", f"{s['sanity']:.2f}"]
        print("| " + " | ".join(cells) + " |")
    worst = max(r[-1] for r in rows)
    print(f"\nworst metering share: {worst:.2f}% of a run's wall time (bound: 2%)")
    return 0 if worst < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())

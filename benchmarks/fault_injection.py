"""Kill runs at random points (SIGKILL, checkpoints written every unit so many
kills land inside a checkpoint write), resume each, and count how many end
identical (metrics and costs) to an uninterrupted run. Goal: 20/20.

    python benchmarks/fault_injection.py [--task=train/digits --method=fedavg --kills=20 --seed=0]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "lsbench.cli.main", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def final(d):
    with open(os.path.join(d, "final.json")) as f:
        f = json.load(f)
    return f["status"], f["metrics"], f["costs"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="train/digits")
    ap.add_argument("--method", default="fedavg")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max_units", type=int, default=12)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    base = ["run", f"--task={a.task}", f"--method={a.method}", "--checkpoint_every=1",
            f"--max_units={a.max_units}"]
    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "ref")
        t0 = time.time()
        p = cli(*base, f"--workdir={ref}")
        err = p.communicate()[1]
        wall = time.time() - t0
        if p.returncode != 0:
            sys.exit(f"uninterrupted run failed: {err.strip().splitlines()[-1]}")
        want = final(ref)
        same, rows = 0, []
        for i in range(a.kills):
            d = os.path.join(tmp, f"k{i}")
            delay = rng.uniform(0.2, wall)
            p = cli(*base, f"--workdir={d}")
            time.sleep(delay)
            killed = p.poll() is None
            if killed:
                p.send_signal(signal.SIGKILL)
            p.wait()
            r = cli(*base, f"--workdir={d}", "--resume")
            rerr = r.communicate()[1]
            ok = r.returncode == 0 and final(d) == want
            same += ok
            rows.append((i, round(delay, 2), killed, r.returncode, ok,
                         "" if r.returncode == 0 else rerr.strip().splitlines()[-1][:80]))
    print(f"| kill | at s | killed | resume rc | identical | note |\n|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    print(f"\n{same}/{a.kills} resumed runs identical to the uninterrupted run "
          f"({a.task}, {a.method}, {a.max_units} units, uninterrupted {wall:.1f}s)")


if __name__ == "__main__":
    main()

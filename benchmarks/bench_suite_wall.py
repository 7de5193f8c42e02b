"""Wall and CPU time of one deterministic slice of a suite preset, on the code
of an older git revision and on the working tree, back to back (#19: the
``small`` preset before/after).

The slice is the working tree's grid (``--preset``, ``--tasks``, ``--methods``,
``--shard``); restrict it to tasks and methods the old revision has. The old
code (``git archive REV``, unpacked to a temporary folder and put first on
PYTHONPATH) runs each item as its own suite did then: one ``lsbench run``
process per run, one after another. The working tree runs ``lsbench suite`` on
the same slice (worker processes, seed batching, the compilation cache). Every
run of both passes must complete. CPU seconds are the children's user + sys.

    python benchmarks/bench_suite_wall.py --rev=2cef80a --preset=small --shard=1/20 \
        --tasks=... --methods=... [--passes=old,new] [--new_rev=HEAD]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def items(a):
    from lsbench.suite.grid import expand, load_preset
    from lsbench.suite.runner import shard_items
    grid = expand(load_preset(a.preset), None, None, a.tasks.split(",") if a.tasks else None,
                  a.methods.split(",") if a.methods else None, [])
    i, n = (int(v) for v in a.shard.split("/"))
    return shard_items(grid, i, n)


def export(rev):
    """The tree of git revision ``rev``, unpacked to a new temporary folder."""
    src = tempfile.mkdtemp(prefix=f"lsbench-{rev}-")
    subprocess.run(f"git -C {ROOT} archive {rev} | tar -x -C {src}", shell=True, check=True)
    return src


def old_pass(a, its, work):
    """The old revision: one `lsbench run` process per run (its suite's way)."""
    src = export(a.rev)
    env = dict(os.environ, PYTHONPATH=src, LSBENCH_PROGRESS="0")
    bad = []
    t0, c0 = time.perf_counter(), _cpu()
    for it in its:
        cmd = [sys.executable, "-m", "lsbench.cli.main", "run", f"--task={it.task}", f"--method={it.method}",
               f"--seed={it.seed}", f"--workdir={it.workdir(work)}", f"--hparams={json.dumps(it.hparams)}",
               f"--sweep_point={it.point}", f"--data_dir={a.data_dir}"]
        p = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
        if p.returncode:
            bad.append(f"{it.id}: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    return time.perf_counter() - t0, _cpu() - c0, bad


def new_pass(a, its, work):
    """The working tree (or ``--new_rev``'s tree): `lsbench suite` on the same slice."""
    src = export(a.new_rev) if a.new_rev else ROOT
    env = dict(os.environ, LSBENCH_PROGRESS="0", **({"PYTHONPATH": src} if a.new_rev else {}))
    cmd = [sys.executable, "-m", "lsbench.cli.main", "suite", f"--preset={a.preset}", f"--shard={a.shard}",
           f"--workdir={work}", f"--data_dir={a.data_dir}"]
    cmd += [f"--tasks={a.tasks}"] * bool(a.tasks) + [f"--methods={a.methods}"] * bool(a.methods)
    t0, c0 = time.perf_counter(), _cpu()
    p = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    summary = json.load(open(os.path.join(work, f"suite.shard-{a.shard.replace('/', '-of-')}.json")))
    bad = [f"{r['task']} {r['method']} {r['sweep_point']} seed{r['seed']}: {r['reason']}"
           for r in summary["runs"] if r["status"] != "completed"]
    if p.returncode:
        bad.append(f"suite exited {p.returncode}: {p.stderr.strip().splitlines()[-1:]}")
    return wall, cpu, bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rev", required=True, help="the old revision (before #19: 2cef80a)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--shard", default="1/20")
    ap.add_argument("--tasks", default=None)
    ap.add_argument("--methods", default=None)
    ap.add_argument("--new_rev", default=None, help="run the new side from this revision's tree, not the "
                    "working tree (which may hold others' uncommitted edits)")
    ap.add_argument("--passes", default="old,new", help="order of the passes, e.g. old,new,old,new")
    ap.add_argument("--data_dir", default=os.environ.get("LSBENCH_DATA_DIR", os.path.expanduser("~/.cache/lsbench")))
    a = ap.parse_args()
    its = items(a)
    print(json.dumps({"runs": len(its), "points": sorted({f"{i.task_name} {i.label} {i.point}" for i in its})}),
          flush=True)
    for k, which in enumerate(a.passes.split(",")):
        work = tempfile.mkdtemp(prefix=f"lsbench-suite-{which}-")
        wall, cpu, bad = (old_pass if which == "old" else new_pass)(a, its, work)
        print(json.dumps({"pass": k, "code": a.rev if which == "old" else (a.new_rev or "working tree"), "runs": len(its),
                          "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "not_completed": bad}), flush=True)


if __name__ == "__main__":
    main()

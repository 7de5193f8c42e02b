"""Resumable publishing: `make leaderboard-publish PRESET=...`.

    python -m lsbench.leaderboard.publish seed --results=leaderboard/results --workdir=runs/small
    python -m lsbench.leaderboard.publish sync --results=leaderboard/results --workdir=runs/small [--commit]

``seed`` copies committed results into the suite's work directory when they
were produced by the code checked out now (same code revision, clean tree), so
the suite skips them and a long publishing run resumes in a later sitting;
stale or dirty ones are left out and run again. ``sync`` mirrors every finished
run of the work directory (final.json, metrics.jsonl, manifest.json) into
``--results`` and, with --commit, commits that folder alone, so it can run while
the suite is still going. Never imports JAX.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from absl import flags

from lsbench.cli.main import _die, _parse
from lsbench.leaderboard import provenance
from lsbench.results import schema

FILES = ("final.json", "metrics.jsonl", "manifest.json")


def _git(*args) -> str:
    r = subprocess.run(["git", "-C", provenance._repo(), *args], capture_output=True, text=True, timeout=60)
    return r.stdout.strip() if r.returncode == 0 else ""


def head() -> str:
    return _git("rev-parse", "HEAD")


def _runs(root):
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != "ckpt" and not x.startswith("."))
        if "final.json" in files:
            yield d


def _valid(d) -> bool:
    try:
        schema.load_final(os.path.join(d, "final.json"))
        return True
    except schema.SchemaError:
        return False


def _copy(src, dst):
    os.makedirs(dst, exist_ok=True)
    for f in FILES:
        if os.path.exists(os.path.join(src, f)):
            shutil.copy2(os.path.join(src, f), os.path.join(dst, f))


def seed(results: str, workdir: str, current: str | None = None) -> dict:
    """Copies results made by the current code into ``workdir``/runs; returns counts."""
    current = current or head()
    out = {"reused": 0, "stale": 0, "present": 0, "workdir_stale": 0}
    same: dict = {}

    def ok(rev):
        if rev not in same:
            same[rev] = (bool(current) and not rev.endswith("-dirty") and rev != "unknown"
                         and provenance.same_code(rev, current))
        return same[rev]
    for d in _runs(results) if os.path.isdir(results) else ():
        dst = os.path.join(workdir, "runs", os.path.relpath(d, results))
        if os.path.exists(os.path.join(dst, "final.json")):
            out["present"] += 1
            continue
        if ok(provenance.revision(d)) and _valid(d):
            _copy(d, dst)
            out["reused"] += 1
        else:
            out["stale"] += 1
    wd_runs = os.path.join(workdir, "runs")
    out["workdir_stale"] = sum(not ok(provenance.revision(d)) for d in _runs(wd_runs)) if os.path.isdir(wd_runs) else 0
    return out


def sync(workdir: str, results: str, commit: bool = False) -> dict:
    """Mirrors the finished runs of ``workdir``/runs into ``results``."""
    src_root = os.path.join(workdir, "runs")
    done = [d for d in _runs(src_root) if _valid(d)] if os.path.isdir(src_root) else []
    tmp = results.rstrip("/") + ".tmp-sync"
    shutil.rmtree(tmp, ignore_errors=True)
    for d in done:
        _copy(d, os.path.join(tmp, os.path.relpath(d, src_root)))
    os.makedirs(tmp, exist_ok=True)
    shutil.rmtree(results, ignore_errors=True)
    os.replace(tmp, results)
    out = {"runs": len(done), "committed": False}
    if commit:
        _git("add", "--", results)
        r = subprocess.run(["git", "-C", provenance._repo(), "commit", "-q", "-m",
                            f"leaderboard results: {len(done)} finished runs", "--", results],
                           capture_output=True, text=True)
        out["committed"] = r.returncode == 0
    return out


def main(argv) -> int:
    fv = flags.FlagValues()
    flags.DEFINE_string("results", "leaderboard/results", "The committed results folder.", flag_values=fv)
    flags.DEFINE_string("workdir", None, "The suite's work directory (runs/<preset>).", flag_values=fv)
    flags.DEFINE_bool("commit", False, "sync: commit the results folder (only it).", flag_values=fv)
    if not argv or argv[0] not in ("seed", "sync"):
        _die("usage: python -m lsbench.leaderboard.publish seed|sync --workdir=runs/PRESET "
             "[--results=leaderboard/results] [--commit]")
    cmd = argv[0]
    _parse(fv, list(argv[1:]), f"publish {cmd}")
    if not fv.workdir:
        _die("--workdir is required (the suite's work directory, e.g. runs/small)")
    if cmd == "seed":
        c = seed(fv.results, fv.workdir)
        print(f"publish seed: {c['reused']} committed run(s) reused (same code), {c['stale']} stale or dirty "
              f"(run again), {c['present']} already in {fv.workdir}")
        if c["workdir_stale"]:
            print(f"publish seed: warning: {c['workdir_stale']} finished run(s) in {fv.workdir} come from other "
                  f"code or a dirty tree; the suite keeps them and --publish will refuse them: remove "
                  f"{fv.workdir} (or those runs) to run them again")
    else:
        c = sync(fv.workdir, fv.results, fv.commit)
        print(f"publish sync: {c['runs']} finished run(s) -> {fv.results}"
              + (" (committed)" if c["committed"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

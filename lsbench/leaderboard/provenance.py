"""Which code produced a results set (manifest.json's ``git_revision``), and the
publishing rule: one clean code revision, unless --allow_mixed.

Two commits count as one code revision when they differ only in published
results and prose (``leaderboard/``, ``*.md``, ``docs/``): committing results
as they finish must not make a resumed publishing run "mixed"."""
from __future__ import annotations

import json
import os
import subprocess

from lsbench.leaderboard.load import LoadError

NOT_CODE = (":(exclude)leaderboard", ":(exclude)*.md", ":(exclude)docs")


def revision(run_dir: str) -> str:
    try:
        with open(os.path.join(run_dir, "manifest.json")) as f:
            return str(json.load(f).get("git_revision") or "unknown")
    except (OSError, ValueError):
        return "unknown"


def _repo() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def same_code(a: str, b: str, repo: str | None = None) -> bool:
    """Whether commits ``a`` and ``b`` hold the same code (False when git cannot tell)."""
    if a == b:
        return True
    try:
        r = subprocess.run(["git", "-C", repo or _repo(), "diff", "--quiet", a, b, "--", ".", *NOT_CODE],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def code_groups(revs, repo: str | None = None) -> list[list[str]]:
    """Clean revisions grouped by identical code."""
    groups: list[list[str]] = []
    for r in sorted(revs):
        g = next((g for g in groups if same_code(g[0], r, repo)), None)
        (g.append(r) if g else groups.append([r]))
    return groups


def check(runs, allow_mixed: bool = False, repo: str | None = None) -> dict:
    """The provenance block of a board; raises LoadError for a dirty or mixed set
    unless ``allow_mixed``."""
    by_rev: dict = {}
    for r in runs:
        by_rev.setdefault(revision(r.path), []).append(r.path)
    dirty = sorted(v for v in by_rev if v == "unknown" or v.endswith("-dirty"))
    groups = code_groups([v for v in by_rev if v not in dirty], repo)
    mixed = len(groups) + (1 if dirty else 0) > 1 or bool(dirty)
    info = {"revisions": {v: len(p) for v, p in sorted(by_rev.items())}, "dirty": dirty,
            "code_revisions": len(groups) + len(dirty), "allow_mixed": bool(allow_mixed and mixed)}
    if mixed and not allow_mixed:
        if dirty:
            n = sum(len(by_rev[v]) for v in dirty)
            raise LoadError(f"{n} run(s) come from a dirty tree or an unknown revision (e.g. "
                            f"{by_rev[dirty[0]][0]}: {dirty[0]}); rerun them from a clean commit, "
                            "or pass --allow_mixed (printed on the page)")
        raise LoadError(f"results come from {len(groups)} code revisions ({', '.join(g[0][:10] for g in groups)}); "
                        "rerun the stale runs at one revision, or pass --allow_mixed (printed on the page)")
    return info

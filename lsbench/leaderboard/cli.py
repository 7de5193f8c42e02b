"""`lsbench leaderboard --results=DIR[,DIR...] --out=DIR`: tables, plots and a static site.

Never imports JAX. Bad input prints one line and exits 2.
"""
from __future__ import annotations

import shlex
import sys

from absl import flags

from lsbench.cli.main import _die, _parse


def _flags():
    fv = flags.FlagValues()
    flags.DEFINE_multi_string("results", None, "Results directories (a suite's runs/ or single runs); "
                              "repeat the flag or separate with commas.", flag_values=fv)
    flags.DEFINE_string("out", None, "Output directory for tables/, plots/, tasks/, index.html.", flag_values=fv)
    flags.DEFINE_bool("publish", False, "Publishing: refuse results from a dirty tree or from more than one "
                      "code revision (see --allow_mixed).", flag_values=fv)
    flags.DEFINE_bool("allow_mixed", False, "With --publish: accept dirty or mixed revisions; the pages say so.",
                      flag_values=fv)
    return fv


def main(argv) -> int:
    fv = _parse(_flags(), list(argv), "leaderboard")
    if not fv.results:
        _die("--results is required: pass the runs directory of a suite, e.g. --results=runs/demo/runs")
    if not fv.out:
        _die("--out is required: the directory for the site, e.g. --out=runs/demo/leaderboard")
    roots = [p for r in fv.results for p in r.split(",") if p]
    from lsbench.leaderboard.load import LoadError
    from lsbench.leaderboard.site import build
    from lsbench.results.schema import SchemaError
    command = "lsbench leaderboard " + " ".join(shlex.quote(a) for a in argv)
    try:
        s = build(roots, fv.out, command, publish=fv.publish, allow_mixed=fv.allow_mixed)
    except (LoadError, SchemaError) as e:
        _die(str(e).splitlines()[0])
    n = sum(r["runs"] for t in s["tasks"].values() for r in t["rows"])
    print(f"leaderboard: {len(s['tasks'])} task(s), {n} run(s) -> {fv.out}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

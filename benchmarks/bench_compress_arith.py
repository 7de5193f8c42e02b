"""compress/arith frontier: bench_compress.py's runner and table with the
language baselines' sweeps (kd-reverse, llm-int8) added.

    LSBENCH_DATA_DIR=/tmp/lsdata nice -n 10 python benchmarks/bench_compress_arith.py \
        --task compress/arith-small --seeds 0 [--only ptq,llm-int8] [--out rows.json]

KD, kd-reverse and the scratch reference run on every seed; the rest on the first.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_compress as bc  # noqa: E402

LM = {
    "kd-reverse": [{}],
    "llm-int8": [{"outliers": k} for k in (1, 4, 16)] + [{"bits": 4, "outliers": k} for k in (4, 16)],
}
LM_ONLY = ("ptq", "kd", "kd-reverse", "llm-int8", "compress.scratch", "compress.cloud-model")


def main():
    bc.SWEEPS.update(LM)
    bc.PER_SEED = (*bc.PER_SEED, "kd-reverse")
    for m in [m for m in bc.SWEEPS if m not in LM_ONLY]:
        del bc.SWEEPS[m]  # shapes-only baselines
    if "--task" not in sys.argv:
        sys.argv += ["--task", "compress/arith-small"]
    bc.main()


if __name__ == "__main__":
    main()

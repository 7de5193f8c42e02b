"""Per-task tables in Markdown, CSV, HTML and LaTeX: one ranked row per method
(its score), its operating points beneath it."""
from __future__ import annotations

import csv
import html
import io
import json

from lsbench.leaderboard.plots import AXES, headline_key


def si(v, unit="", digits=3) -> str:
    """1234567 -> '1.23 M' + unit; None -> '–'."""
    if v is None:
        return "–"
    a = abs(v)
    for f, p in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"),
                 (1e-6, "µ")):
        if a >= f:
            return f"{v / f:.{digits}g} {p}{unit}".rstrip()
    return f"{v:.{digits}g} {unit}".rstrip()


def metric_str(r, plain=False) -> str:
    if r["mean"] is None:
        return "failed: " + ",".join(r["not_completed"]) if r["not_completed"] else "–"
    if r["ci95"] is None:
        return f"{r['mean']:.4f}"
    return f"{r['mean']:.4f} ± {r['ci95']:.4f}" if not plain else f"{r['mean']:.4f} +- {r['ci95']:.4f}"


def quality_str(r, plain=False) -> str:
    if r["quality"] is None:
        return metric_str(r, plain) if r["mean"] is None else "–"
    if r["quality_lo"] is None:
        return f"{r['quality']:.4f}"
    if r["quality_ci95"] is not None:
        return f"{r['quality']:.4f} {'+-' if plain else '±'} {r['quality_ci95']:.4f}"
    return f"{r['quality']:.4f} [{r['quality_lo']:.3f}, {r['quality_hi']:.3f}]"


def entries(task) -> list[tuple[str, dict]]:
    """("method", method score entry) and ("point", row) in display order: each
    method's row, then its points by cost; methods with no score at the end."""
    rows, out, seen = task["rows"], [], set()
    for m in task["score"]["methods"]:
        out.append(("method", m))
        pts = sorted((r for r in rows if r["method"] == m["method"]),
                     key=lambda r: (r["cost"] is None, r["cost"] or 0, r["sweep_point"]))
        out += [("point", r) for r in pts]
        seen.add(m["method"])
    rest = [r for r in rows if r["method"] not in seen]
    for m in dict.fromkeys(r["method"] for r in rest):
        ref = next(r["reference"] for r in rest if r["method"] == m)
        out.append(("method", {"method": m, "reference": ref, "rank": None, "score": None, "cost": None,
                               "points": [], "coinciding": [], "unscored": True}))
        out += [("point", r) for r in rest if r["method"] == m]
    return out


def _name(e) -> str:
    m = e["method"] + (f" [{e['reference']}, not ranked]" if e["reference"] else "")
    return m + (" [no score]" if e.get("unscored") else "")


def _point_name(r) -> str:
    s = "↳ " + r["sweep_point"]
    if r["coincides"]:
        s += f" (≡ {r['coincides']})"
    if r.get("unranked"):
        s += f" [{r['unranked']}, not ranked]"
    return s


def columns(task) -> list[tuple[str, callable, callable]]:
    """(header, method entry -> str, point row -> str)."""
    info, rows, sc = task["info"], task["rows"], task["score"]
    head = headline_key(sc["axis"], info)
    hkey, hlabel, hunit = AXES.get(head, ("cost", sc["axis"], ""))
    q = info["quality"] + (" ↑" if info["quality_higher"] else " ↓")
    blank = lambda _: ""  # noqa: E731
    cols = [
        ("rank", lambda e: str(e["rank"]) if e["rank"] else ("ref" if e["reference"] else "–"), blank),
        ("method / point", _name, _point_name),
        (f"score ({sc['points']} budgets)", lambda e: "–" if e.get("score") is None else f"{e['score']:.3f}", blank),
        (f"{q} (test, 95% CI)", blank, quality_str),
        (f"{info['quality']} (validation)", blank, lambda r: "–" if r["val"] is None else f"{r['val']:.4f}"),
        (f"{hlabel} (headline)", lambda e: si(e.get("cost"), hunit), lambda r: si(r["cost"], hunit)),
        ("seeds", blank, lambda r: f"{r['seeds']}/{r['runs']}" + (" (stopped early)" if r.get("stopped_early") else "")),
    ]
    if info["primary_metric"] != info["quality"]:
        pm = info["primary_metric"] + (" ↑" if info["higher_is_better"] else " ↓")
        cols.append((f"{pm} (primary)", blank, metric_str))
    for a in ("bytes", "edge_flops", "cloud_flops", "cloud_nodes", "latency"):
        key, label, unit = AXES[a]
        if a == head or not any(r.get(key) for r in rows):
            continue
        cols.append((label.replace(" per run", "").replace(" per example", ""), blank,
                     lambda r, key=key, unit=unit: si(r.get(key), unit)))
    if info["target"] is not None:
        cols.append((f"reached target {info['target']:g}", blank, lambda r: f"{r['reached']}/{r['seeds']}"))
    return cols


def _cells(task):
    cols = columns(task)
    return cols, [(kind, x, [(fm if kind == "method" else fp)(x) for _, fm, fp in cols])
                  for kind, x in entries(task)]


def markdown(task) -> str:
    cols, body = _cells(task)
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(h for h, _, _ in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(esc(c) for c in cells) + " |" for _, _, cells in body]
    return "\n".join(lines) + "\n"


CSV_KEYS = ("rank", "score", "task", "method", "sweep_point", "reference", "coincides", "unranked", "seeds",
            "runs", "stopped_early", "quality", "quality_lo", "quality_hi", "val", "cost", "mean", "ci95",
            "bytes_up", "bytes_down", "bytes", "edge_flops", "cloud_flops", "cloud_nodes",
            "latency_mean_s", "latency_p95_s", "edge_energy_j", "reached", "wall_s")


def to_csv(task) -> str:
    """One line per operating point, with its method's rank and score."""
    scores = {m["method"]: m["score"] for m in task["score"]["methods"]}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_KEYS + ("hparams", "metrics"))
    for kind, r in entries(task):
        if kind != "point":
            continue
        r = {**r, "score": scores.get(r["method"])}
        w.writerow([("" if r.get(k) is None else r.get(k)) for k in CSV_KEYS]
                   + [json.dumps(r["hparams"], sort_keys=True), json.dumps(r["metrics"], sort_keys=True)])
    return buf.getvalue()


def to_html(task, sortable=True) -> str:
    """A table whose <tbody> groups are one method each (row 1: the method, then
    its points), so the page's sorting script moves a method with its points."""
    cols, body = _cells(task)
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _, _ in cols)
    groups, cur = [], None
    for kind, x, cells in body:
        if kind == "method":
            cur = []
            groups.append(cur)
            cls = "m ref" if x["reference"] else "m"
        else:
            cls = "pt" + (" coin" if x["coincides"] else "") + (" fail" if x["quality"] is None else "")
        cur.append(f'<tr class="{cls}">' + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    tb = "\n".join("<tbody>" + "".join(g) + "</tbody>" for g in groups)
    return (f'<table class="board{" sortable" if sortable else ""}"><thead><tr>{head}</tr></thead>\n{tb}\n'
            "</table>\n")


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "–": "--", "↳": r"$\hookrightarrow$",
        "≡": r"$\equiv$", "µ": r"$\mu$"}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(c, c) for c in str(s))


def to_tex(task) -> str:
    cols, body = _cells(task)
    info = task["info"]
    lines = [f"% {info['task']} v{info['task_version']}: generated by lsbench leaderboard; do not edit",
             r"\begin{tabular}{" + "l" * len(cols) + "}", r"\hline",
             " & ".join(tex_escape(h) for h, _, _ in cols) + r" \\", r"\hline"]
    lines += [" & ".join(tex_escape(c) for c in cells) + r" \\" for _, _, cells in body]
    lines += [r"\hline", r"\end{tabular}"]
    return "\n".join(lines) + "\n"

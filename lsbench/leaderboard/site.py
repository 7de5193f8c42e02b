"""Writes the whole board: tables, plots, performance profiles and a static site
(index.html + one page per task; inline CSS, no scripts, nothing fetched)."""
from __future__ import annotations

import csv
import datetime
import html
import json
import math
import os

from lsbench import __version__
from lsbench.leaderboard import plots, tables
from lsbench.leaderboard.load import load_results
from lsbench.leaderboard.perf_profile import profile
from lsbench.leaderboard.summary import COST_AXES, cost_to_target_by_track, summarize
from lsbench.results.rundir import write_json

CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
table.board{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
table.board th,table.board td{border:1px solid #ccc;padding:3px 7px;text-align:right}
table.board td:nth-child(2),table.board td:nth-child(3),table.board th{text-align:left}
table.board th{background:#f0f0f0}tr.ref td{background:#f6f6ff;font-style:italic}
tr.fail td{color:#a00}img{max-width:100%;border:1px solid #ddd}.plots{display:flex;flex-wrap:wrap;gap:1em}
.plots figure{margin:0;flex:1 1 480px}.meta{color:#666;font-size:12px}code{background:#f4f4f4;padding:0 3px}"""


def slug(task: str) -> str:
    return task.replace("/", "-")


def _page(title, body, meta, up="") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}\n<hr><p class=\"meta\">lsbench {meta['version']}"
            f" · generated {meta['date']} · <code>{html.escape(meta['command'])}</code>"
            f"{f' · <a href={up!r}>index</a>' if up else ''}</p>\n</body></html>\n")


def _suite_failures(roots) -> list[dict]:
    """Failed runs recorded by `lsbench suite` (suite.json in a root or its parent)."""
    out = []
    for r in roots:
        for p in (os.path.join(r, "suite.json"), os.path.join(os.path.dirname(os.path.abspath(r)), "suite.json")):
            if os.path.exists(p):
                try:
                    runs = json.load(open(p)).get("runs", [])
                except (OSError, ValueError):
                    continue
                out += [x for x in runs if x.get("status") == "failed"]
                break
    return out


def _json_safe(v):
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def task_page(t, meta) -> str:
    info = t["info"]
    s = slug(info["task"])
    figs = "".join(f'<figure><img src="../plots/{s}-{a}.png" alt="{html.escape(info["task"])}: '
                   f'{info["primary_metric"]} vs {a}"><figcaption><a href="../plots/{s}-{a}.svg">SVG</a>'
                   "</figcaption></figure>" for a in ("bytes", "edge_flops"))
    links = " · ".join(f'<a href="../tables/{s}.{e}">{e}</a>' for e in ("md", "csv", "tex", "html"))
    target = f", target {info['target']:g}" if info["target"] is not None else ""
    body = (f"<h1>{html.escape(info['task'])} <small>v{info['task_version']}</small></h1>"
            f"<p>Track <b>{info['track']}</b>; primary metric <b>{html.escape(info['primary_metric'])}</b> "
            f"({'higher' if info['higher_is_better'] else 'lower'} is better{target}); latency at the "
            f"headline network profile <b>{info['headline_profile']}</b>"
            f"{'; cloud is an exact solver (cost in nodes)' if info['cloud_kind'] == 'solver' else ''}. "
            "Mean ± 95% Student-t CI over seeds; costs are per-run means. References are not ranked.</p>"
            f"{tables.to_html(t)}<p>Tables: {links}</p><div class=\"plots\">{figs}</div>")
    return _page(f"lsbench · {info['task']}", body, meta, up="../index.html")


def index_page(board, profs, failures, meta) -> str:
    parts = ["<h1>lsbench leaderboard</h1><p>One table per task (absolute numbers) and, per track, "
             "AlgoPerf-style performance profiles over the cost to reach each task's target.</p>"]
    for track in ("train", "infer", "plan"):
        tasks = [t for t in board.values() if t["info"]["track"] == track]
        if not tasks:
            continue
        parts.append(f"<h2>{track} track</h2>")
        for t in tasks:
            i = t["info"]
            s = slug(i["task"])
            parts.append(f'<h3><a href="tasks/{s}.html">{html.escape(i["task"])}</a> '
                         f"<small>v{i['task_version']}</small></h3>{tables.to_html(t)}")
        figs = "".join(f'<figure><img src="plots/profile-{track}-{a}.png" alt="{track} profile over {a}">'
                       f'<figcaption><a href="plots/profile-{track}-{a}.svg">SVG</a> · '
                       f'<a href="profiles/{track}-{a}.csv">CSV</a></figcaption></figure>'
                       for a in COST_AXES if (track, a) in profs)
        if figs:
            parts.append(f"<h3>{track}: performance profiles</h3><div class=\"plots\">{figs}</div>")
        else:
            parts.append(f"<p>{track}: no performance profile (no task with a target that a ranked "
                         "method reached).</p>")
    if failures:
        items = "".join(f"<li>{html.escape(f.get('task', '?'))} · {html.escape(f.get('method', '?'))} · "
                        f"{html.escape(str(f.get('sweep_point')))} · seed {f.get('seed')}: "
                        f"{html.escape(f.get('reason') or '')}</li>" for f in failures)
        parts.append(f"<h2>Runs that failed in the suite</h2><ul>{items}</ul>")
    return _page("lsbench leaderboard", "\n".join(parts), meta)


def build(roots, out: str, command: str = "lsbench leaderboard") -> dict:
    """Loads the runs under ``roots`` and writes the board under ``out``; returns a summary."""
    board = summarize(load_results(roots))
    meta = {"version": __version__, "command": command,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    for d in ("tables", "plots", "tasks", "profiles"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    md = [f"# lsbench leaderboard\n\nlsbench {meta['version']}, generated {meta['date']} by "
          f"`{command}`. Mean ± 95% CI over seeds; references are not ranked.\n"]
    for task, t in board.items():
        s = slug(task)
        for ext, fn in (("md", tables.markdown), ("csv", tables.to_csv), ("html", tables.to_html),
                        ("tex", tables.to_tex)):
            with open(os.path.join(out, "tables", f"{s}.{ext}"), "w") as f:
                f.write(fn(t))
        for axis in ("bytes", "edge_flops"):
            plots.metric_vs_cost(t, axis, os.path.join(out, "plots", f"{s}-{axis}"))
        with open(os.path.join(out, "tasks", f"{s}.html"), "w") as f:
            f.write(task_page(t, meta))
        md.append(f"## {task} (v{t['info']['task_version']}, {t['info']['track']})\n\n{tables.markdown(t)}")
    profs = {}
    for track, per_axis in cost_to_target_by_track(board).items():
        for axis, costs in per_axis.items():
            if not costs:
                continue
            p = profile(costs)
            if not any(math.isfinite(x) for x in p["ratios"].ravel()):
                continue   # no method reached a target on this track: nothing to profile
            profs[(track, axis)] = p
            plots.perf_profile_plot(p, track, axis, os.path.join(out, "plots", f"profile-{track}-{axis}"))
            with open(os.path.join(out, "profiles", f"{track}-{axis}.csv"), "w") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(["method", "score"] + [f"ratio:{t}" for t in p["tasks"]])
                for i, m in enumerate(p["methods"]):
                    w.writerow([m, f"{p['score'][i]:.4f}"] + [f"{x:.4g}" for x in p["ratios"][i]])
    with open(os.path.join(out, "leaderboard.md"), "w") as f:
        f.write("\n".join(md))
    failures = _suite_failures(roots)
    with open(os.path.join(out, "index.html"), "w") as f:
        f.write(index_page(board, profs, failures, meta))
    summary = {"meta": meta, "tasks": board,
               "profiles": {f"{k[0]}/{k[1]}": {"methods": p["methods"], "score": list(p["score"]),
                                               "tasks": p["tasks"]} for k, p in profs.items()},
               "suite_failures": failures}
    write_json(os.path.join(out, "board.json"), _json_safe(summary))
    return summary

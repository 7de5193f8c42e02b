"""Writes the whole board: tables, plots, performance profiles and a static site
(index.html, one page per task and per method; inline CSS and a small inline
sorting script; pages read fine without it; nothing is fetched)."""
from __future__ import annotations

import csv
import datetime
import html
import json
import math
import os
import re

from lsbench import __version__
from lsbench.leaderboard import board_schema, plots, provenance, tables
from lsbench.leaderboard.load import load_results
from lsbench.leaderboard.perf_profile import profile
from lsbench.leaderboard.plots import AXES, headline_key
from lsbench.leaderboard.scoring import AXES as SCORE_AXES
from lsbench.leaderboard.summary import COST_AXES, cost_to_target_by_track, summarize, track_summary
from lsbench.results.rundir import write_json

BOARD_SCHEMA = "lsbench.board/2"
CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1250px;color:#222;padding:0 1em}
table.board{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
table.board th,table.board td{border:1px solid #ccc;padding:3px 7px;text-align:right}
table.board td:nth-child(2),table.board th{text-align:left}
table.board th{background:#f0f0f0}table.sortable th{cursor:pointer}
tr.m td{background:#fafafa;font-weight:600;border-top:2px solid #999}tr.ref td{background:#f3f3ff;font-style:italic}
tr.pt td{font-size:12px;color:#333}tr.coin td{color:#888}tr.fail td{color:#a00}
img{max-width:100%;border:1px solid #ddd}.plots{display:flex;flex-wrap:wrap;gap:1em}
.plots figure{margin:0;flex:1 1 560px}.meta{color:#666;font-size:12px}code{background:#f4f4f4;padding:0 3px}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em}dl.gl dt{font-weight:600}"""
# Click a header to sort; a <tbody> (a method and its points) moves as one.
SCRIPT = """<script>
document.querySelectorAll('table.sortable').forEach(t=>{t.querySelectorAll('th').forEach((th,i)=>{
th.title='sort';th.addEventListener('click',()=>{const d=th.dataset.d==='1'?-1:1;th.dataset.d=d===1?'1':'0';
const P={P:1e15,T:1e12,G:1e9,M:1e6,k:1e3,m:1e-3,'µ':1e-6};
const v=b=>{const c=[...b.rows].map(r=>r.cells[i]?r.cells[i].textContent.trim():'').find(x=>x&&x!=='–')||'';
const m=c.match(/^(-?[0-9.]+(?:e-?[0-9]+)?)\\s*([PTGMkmµ]?)/);return m?parseFloat(m[1])*(P[m[2]]||1):c};
const bs=[...t.tBodies];bs.sort((a,b)=>{const x=v(a),y=v(b);if(x===''&&y!=='')return 1;if(y===''&&x!=='')return -1;
return (typeof x==='number'&&typeof y==='number'?x-y:String(x).localeCompare(String(y)))*d});
bs.forEach(b=>t.appendChild(b))})})});
</script>"""


def slug(name: str) -> str:
    return name.replace("/", "-").replace(":", "_").replace(" ", "_")


def _page(title, body, meta, up="") -> str:
    mixed = meta.get("provenance", {}).get("allow_mixed")
    warn = ('<p class="warn"><b>--allow_mixed</b>: these results come from more than one code revision '
            "or a dirty tree (see Provenance).</p>" if mixed else "")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{warn}{body}\n<hr><p class=\"meta\">lsbench {meta['version']}"
            f" · generated {meta['date']} · <code>{html.escape(meta['command'])}</code>"
            f"{f' · <a href={up!r}>index</a>' if up else ''}</p>\n{SCRIPT}\n</body></html>\n")


def _suite_failures(roots) -> list[dict]:
    """Failed runs recorded by `lsbench suite` (suite.json, or a --shard's
    suite.shard-I-of-N.json, in a root or its parent)."""
    import glob
    out, seen = [], set()
    for r in roots:
        for d in (r, os.path.dirname(os.path.abspath(r))):
            paths = sorted(glob.glob(os.path.join(d, "suite.json")) + glob.glob(os.path.join(d, "suite.shard-*-of-*.json")))
            for p in paths:
                if os.path.abspath(p) in seen:
                    continue
                seen.add(os.path.abspath(p))
                try:
                    runs = json.load(open(p)).get("runs", [])
                except (OSError, ValueError):
                    continue
                out += [x for x in runs if x.get("status") == "failed"]
            if paths:
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


def _manifests(runs) -> dict:
    """{task: [manifest, ...]} (runs without a manifest.json are left out)."""
    out: dict = {}
    for r in runs:
        try:
            with open(os.path.join(r.path, "manifest.json")) as f:
                out.setdefault(r.final["task"], []).append(json.load(f))
        except (OSError, ValueError):
            pass
    return out


def _link(url: str) -> str:
    """A paper reference as a link: URLs as they are, arXiv ids to their abstract page."""
    u = html.escape(url)
    m = re.fullmatch(r"\s*arXiv:\s*(\d{4}\.\d{4,5}(v\d+)?)\s*", url, re.I)
    if m:
        return f'<a href="https://arxiv.org/abs/{m.group(1)}">{u}</a>'
    return f'<a href="{u}">{u}</a>' if url.startswith(("http://", "https://")) else u


def glossary(t) -> str:
    info, sc = t["info"], t["score"]
    head = headline_key(sc["axis"], info)
    axis = SCORE_AXES.get(sc["axis"], sc["axis"])
    if sc["grid"]:
        g = sc["grid"]
        grid = (f"{sc['points']} budgets log-spaced from {sc['lo']:g}× to {sc['hi']:g}× the cloud reference's "
                f"cost ({tables.si(sc['anchor'], AXES.get(head, ('', '', ''))[2])}): "
                f"{tables.si(g[0])} … {tables.si(g[-1])}")
        if sc.get("anchor_spread"):
            grid += f" (the reference's cost varies by {sc['anchor_spread']:.2%} over its seeds; median used)"
    else:
        grid = sc.get("note") or "–"
    items = [
        ("quality", f"<code>{html.escape(info['quality'])}</code> on the test split "
                    f"({'higher' if info['quality_higher'] else 'lower'} is better); intervals: Student-t over "
                    "seeds (95%), or Wilson over all episodes for success rates"),
        ("headline cost", html.escape(axis)),
        ("score", "mean over the budgets of the edge→cloud gap recovered within each budget: "
                  "(q − q<sub>edge</sub>) / (q<sub>cloud</sub> − q<sub>edge</sub>), q the test quality of the point "
                  f"picked, among the method's points costing ≤ the budget, by its <b>{html.escape(sc['selected_on'])}"
                  "</b> quality; 0 below every point; may exceed 1. References: "
                  f"{'/'.join(sc['edge_ref'])} (q<sub>edge</sub>"
                  f"{'' if sc['q_edge'] is None else ' = %.4f' % sc['q_edge']}) and "
                  f"{'/'.join(sc['cloud_ref'])} (q<sub>cloud</sub>"
                  f"{'' if sc['q_cloud'] is None else ' = %.4f' % sc['q_cloud']})"),
        ("budget grid", html.escape(grid) + "; fixed per task version (the anchor is the cloud reference's cost, "
                        "an exact metered count)"),
        ("≡ reference", "a point with the reference's cost (within 1%) and quality: shown, marked, and not an "
                        "operating point of its own"),
        ("primary metric", f"<code>{html.escape(info['primary_metric'])}</code> (the task's own headline figure)"),
        ("bytes", "uplink + downlink payload bytes per run, as the channel billed them (codec applied)"),
        ("FLOPs", "counted from the jaxpr of each sealed program, per real example; edge and cloud separately"),
        ("latency", f"modelled from the metered counts at the headline network profile "
                    f"<code>{html.escape(str(info['headline_profile']))}</code> (lsbench/results/derive.py)"),
    ]
    if info["cloud_kind"] == "solver":
        items.append(("cloud solver nodes", "nodes the exact planner expanded (the cloud's work on this task)"))
    return '<dl class="gl">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def machine(mans) -> str:
    if not mans:
        return "<p>No manifest.json beside these results.</p>"
    revs = sorted({m.get("git_revision", "unknown") for m in mans})
    plats = sorted({f"{m.get('platform')} ({', '.join(m.get('devices') or [])})" for m in mans})
    vers = {}
    for m in mans:
        for k, v in (m.get("versions") or {}).items():
            vers.setdefault(k, set()).add(v)
    v = ", ".join(f"{k} {'/'.join(sorted(x))}" for k, x in sorted(vers.items()))
    return (f"<p>Platform: {html.escape('; '.join(plats))}. Versions: {html.escape(v)}. "
            f"Code revision(s): {html.escape(', '.join(revs))}.</p>")


def task_page(t, meta, mans, plot_axes) -> str:
    info = t["info"]
    s = slug(info["task"])
    desc = next((m.get("task_description") for m in mans if m.get("task_description")), None)
    figs = "".join(f'<figure><img src="../plots/{s}-{a}.png" alt="{html.escape(info["task"])}: '
                   f'{html.escape(info["quality"])} vs {a}"><figcaption>{html.escape(AXES[a][1])}'
                   f'{" (headline)" if i == 0 else ""} · <a href="../plots/{s}-{a}.svg">SVG</a>'
                   "</figcaption></figure>" for i, a in enumerate(plot_axes))
    links = " · ".join(f'<a href="../tables/{s}.{e}">{e}</a>' for e in ("md", "csv", "tex", "html"))
    papers = {}
    for m in mans:
        mm = m.get("method_manifest") or {}
        if mm.get("paper"):
            papers[mm.get("name", "?")] = mm["paper"]
    plist = "".join(f"<li>{html.escape(k)}: {_link(v)}</li>" for k, v in sorted(papers.items()))
    target = f"; target {info['target']:g}" if info["target"] is not None else ""
    body = (f"<h1>{html.escape(info['task'])} <small>v{info['task_version']}</small></h1>"
            f"<p>{html.escape(desc or 'No description recorded in these results.')}</p>"
            f"<p>Track <b>{info['track']}</b>{target}. One ranked row per method (its score), its operating "
            "points beneath it. Click a column header to sort.</p>"
            f"{tables.to_html(t)}<p>Tables: {links}</p><h2>Plots</h2><div class=\"plots\">{figs}</div>"
            f"<h2>Glossary</h2>{glossary(t)}"
            f"<h2>Papers</h2>{'<ul>' + plist + '</ul>' if plist else '<p>None given in the manifests.</p>'}"
            f"<h2>Machine and versions</h2>{machine(mans)}")
    return _page(f"lsbench · {info['task']}", body, meta, up="../index.html")


def method_page(name, board, mans_by_task, meta) -> str:
    rows, man, hps = [], None, []
    for task, t in board.items():
        e = next((m for m in t["score"]["methods"] if m["method"] == name), None)
        pts = [r for r in t["rows"] if r["method"] == name]
        if not pts:
            continue
        man = man or next(((m.get("method_manifest") or {}) for m in mans_by_task.get(task, [])
                           if (m.get("method_manifest") or {}).get("name") == name), None)
        sc = "–" if not e or e["score"] is None else f"{e['score']:.3f}"
        rk = "ref" if pts[0]["reference"] else ("–" if not e or not e.get("rank") else str(e["rank"]))
        rows.append(f'<tbody><tr class="m"><td>{rk}</td><td><a href="../tasks/{slug(task)}.html">'
                    f"{html.escape(task)}</a></td><td>{sc}</td><td>{len(pts)}</td></tr></tbody>")
        hps += [(task, r["sweep_point"], r["hparams"]) for r in pts]
    mf = "".join(f"<dt>{html.escape(k)}</dt><dd>{_link(str(v)) if k == 'paper' else html.escape(str(v))}</dd>"
                 for k, v in (man or {}).items() if v not in (None, "", [], ()))
    hp = "".join(f"<tr><td>{html.escape(t)}</td><td>{html.escape(p)}</td><td><code>"
                 f"{html.escape(json.dumps(h, sort_keys=True))}</code></td></tr>" for t, p, h in hps)
    body = (f"<h1>{html.escape(name)}</h1><h2>Manifest</h2>"
            f"{'<dl class=gl>' + mf + '</dl>' if mf else '<p>No manifest.json beside these results.</p>'}"
            '<h2>Scores per task</h2><table class="board sortable"><thead><tr><th>rank</th><th>task</th>'
            f"<th>score</th><th>points</th></tr></thead>{''.join(rows)}</table>"
            '<h2>Hyper-parameters</h2><table class="board"><thead><tr><th>task</th><th>point</th>'
            f"<th>hyper-parameters</th></tr></thead><tbody>{hp}</tbody></table>")
    return _page(f"lsbench · {name}", body, meta, up="../index.html")


def _track_table(track, rows, board) -> str:
    tasks = [k for k, t in board.items() if t["info"]["track"] == track and t["score"]["methods"]]
    head = "".join(f"<th>{html.escape(t)}</th>" for t in tasks)
    body = "".join(
        f'<tbody><tr><td><a href="methods/{slug(r["method"])}.html">{html.escape(r["method"])}</a></td>'
        f"<td>{r['mean']:.3f}</td><td>{r['n']}/{r['of']}</td>"
        + "".join(f"<td>{'–' if t not in r['tasks'] else '%.3f' % r['tasks'][t]}</td>" for t in tasks)
        + "</tr></tbody>" for r in rows)
    return (f'<table class="board sortable"><thead><tr><th>method</th><th>mean score</th><th>tasks</th>{head}'
            f"</tr></thead>{body}</table>")


def index_page(board, tracks, profs, failures, meta) -> str:
    pv = meta["provenance"]
    parts = ["<h1>lsbench leaderboard</h1><p>Each method gets one score per task: the mean, over a fixed "
             "log-spaced grid of budgets on the task's headline cost axis, of the edge→cloud quality gap it "
             "recovers within each budget, operating points selected on validation (definitions on each task "
             "page). A track's summary is the mean score over its tasks. References are shown, never ranked.</p>"]
    for track in ("train", "infer", "plan"):
        tasks = [t for t in board.values() if t["info"]["track"] == track]
        if not tasks:
            continue
        parts.append(f"<h2>{track} track</h2>")
        if tracks.get(track):
            parts.append(f"<h3>{track}: mean score over tasks</h3>" + _track_table(track, tracks[track], board))
        for tier, label in (("default", ""), ("small", " (CI-sized tier)")):
            sel = [t for t in tasks if t["info"]["task"].endswith("-small") == (tier == "small")]
            for t in sel:
                i = t["info"]
                parts.append(f'<h3><a href="tasks/{slug(i["task"])}.html">{html.escape(i["task"])}</a> '
                             f"<small>v{i['task_version']}{label}</small></h3>{tables.to_html(t)}")
        figs = "".join(f'<figure><img src="plots/profile-{track}-{a}.png" alt="{track} profile over {a}">'
                       f'<figcaption><a href="plots/profile-{track}-{a}.svg">SVG</a> · '
                       f'<a href="profiles/{track}-{a}.csv">CSV</a></figcaption></figure>'
                       for a in COST_AXES if (track, a) in profs)
        if figs:
            parts.append(f"<h3>{track}: performance profiles of cost-to-target (linear τ to 4)</h3>"
                         f"<div class=\"plots\">{figs}</div>")
    methods = sorted({r["method"] for t in board.values() for r in t["rows"]})
    parts.append("<h2>Methods</h2><p>" + " · ".join(
        f'<a href="methods/{slug(m)}.html">{html.escape(m)}</a>' for m in methods) + "</p>")
    few = sum(1 for t in board.values() for r in t["rows"] if r["quality"] is not None and r["seeds"] < 3)
    if few:
        parts.insert(1, f'<p class="warn">{few} operating point(s) have fewer than 3 seeds: their intervals '
                        "are wide or missing (the seeds column says how many).</p>")
    revs = ", ".join(f"{html.escape(k)} ({v} runs)" for k, v in pv["revisions"].items())
    parts.append(f"<h2>Provenance</h2><p>Code revisions: {revs}."
                 f"{' Published with <b>--allow_mixed</b>.' if pv['allow_mixed'] else ''}</p>")
    if failures:
        items = "".join(f"<li>{html.escape(f.get('task', '?'))} · {html.escape(f.get('method', '?'))} · "
                        f"{html.escape(str(f.get('sweep_point')))} · seed {f.get('seed')}: "
                        f"{html.escape(f.get('reason') or '')}</li>" for f in failures)
        parts.append(f"<h2>Runs that failed in the suite</h2><ul>{items}</ul>")
    return _page("lsbench leaderboard", "\n".join(parts), meta)


def build(roots, out: str, command: str = "lsbench leaderboard", publish: bool = False,
          allow_mixed: bool = False) -> dict:
    """Loads the runs under ``roots`` and writes the board under ``out``; returns a
    summary. ``publish``: refuse a dirty or mixed results set unless ``allow_mixed``."""
    runs = load_results(roots)
    pv = provenance.check(runs, allow_mixed=allow_mixed or not publish)
    if not publish:
        pv["allow_mixed"] = False   # a local board: provenance is listed, not enforced
    board = summarize(runs)
    tracks = track_summary(board)
    mans = _manifests(runs)
    meta = {"version": __version__, "command": command, "provenance": pv, "publish": publish,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    for d in ("tables", "plots", "tasks", "profiles", "methods"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    md = [f"# lsbench leaderboard\n\nlsbench {meta['version']}, generated {meta['date']} by "
          f"`{command}`. One ranked row per method (its cost-aware score), its points beneath; "
          "quality mean with 95% intervals over seeds; references are not ranked.\n"]
    for task, t in board.items():
        s = slug(task)
        for ext, fn in (("md", tables.markdown), ("csv", tables.to_csv), ("html", tables.to_html),
                        ("tex", tables.to_tex)):
            with open(os.path.join(out, "tables", f"{s}.{ext}"), "w") as f:
                f.write(fn(t))
        axes = plots.axes_for(t)
        for axis in axes:
            plots.quality_vs_cost(t, axis, os.path.join(out, "plots", f"{s}-{axis}"))
        t["plots"] = axes
        with open(os.path.join(out, "tasks", f"{s}.html"), "w") as f:
            f.write(task_page(t, meta, mans.get(task, []), axes))
        md.append(f"## {task} (v{t['info']['task_version']}, {t['info']['track']})\n\n{tables.markdown(t)}")
    for m in sorted({r["method"] for t in board.values() for r in t["rows"]}):
        with open(os.path.join(out, "methods", f"{slug(m)}.html"), "w") as f:
            f.write(method_page(m, board, mans, meta))
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
        f.write(index_page(board, tracks, profs, failures, meta))
    summary = {"schema": BOARD_SCHEMA, "meta": meta, "tasks": board, "tracks": tracks,
               "profiles": {f"{k[0]}/{k[1]}": {"methods": p["methods"], "score": list(p["score"]),
                                               "tasks": p["tasks"], "r_max": p["r_max"]}
                            for k, p in profs.items()},
               "suite_failures": failures}
    write_json(os.path.join(out, "board.json"), _json_safe(summary))
    board_schema.write(os.path.join(out, "schema"), BOARD_SCHEMA)
    return summary

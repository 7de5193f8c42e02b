"""The leaderboard site in a real headless Chromium: the index, a task page and a
method page render offline with their tables and plots; the sorting script
reorders a table (a method moves with its points); screenshots are kept under
$LSBENCH_ARTIFACTS (default test-artifacts/)."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT
from lsbench.leaderboard.site import build
from test_leaderboard import write_run

pytestmark = pytest.mark.browser

# Appended to a test copy of each page: after load, it writes how many images
# decoded, then clicks the 'method / point' header of the first sortable table
# twice (descending) and writes the order of its method rows.
CHECK = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
         "const t=document.querySelector('table.sortable');let o='';"
         "if(t){const th=[...t.tHead.rows[0].cells].find(c=>c.textContent.startsWith('method'));"
         "if(th){th.click();th.click();o=[...t.tBodies].map(b=>b.rows[0].cells[1].textContent).join('|')}}"
         "document.body.insertAdjacentHTML('beforeend','<p id=\"imgcheck\">'+"
         "i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length+'</p><p id=\"order\">'+o+'</p>')});"
         "</script>")


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not found (install Debian's `chromium`; .ci/run tries to)")


def _browse(exe, url, *args):
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--virtual-time-budget=5000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for s, (a, b) in enumerate(((0.71, 0.80), (0.74, 0.83), (0.69, 0.79))):
        for lr, v, up in (("lr=0.01", a, 4 * 10**5), ("lr=0.1", b, 4 * 10**6)):
            write_run(root, task="train/demo", method="fedavg", point=lr, seed=s, value=v, bytes_up=up,
                      reached_bytes=up // 2)
        write_run(root, task="train/demo", method="fedprox", point="mu=0.1", seed=s, value=b - 0.02,
                  bytes_up=3 * 10**6, reached_bytes=2 * 10**6)
        write_run(root, task="train/demo", method="local", seed=s, value=0.6 + s / 100, reference="local",
                  bytes_up=0, bytes_down=0)
        write_run(root, task="train/demo", method="centralized", seed=s, value=0.9, reference="centralized",
                  bytes_up=10**6, bytes_down=0)
        for tau, v, up in ((0.5, 0.8, 10**3), (0.8, 0.9, 10**4), (0.95, 0.97, 10**5)):
            write_run(root, task="infer/demo", track="infer", method="cascade", point=f"tau={tau}", value=v + s / 200,
                      seed=s, bytes_up=up, bytes_down=up // 10, edge_flops=10**7, cloud_flops=up * 10**4,
                      latency=up / 1e5, reached_bytes=up)
        write_run(root, task="infer/demo", track="infer", method="router", point="p=0.5", value=0.84 + s / 100,
                  seed=s, bytes_up=5 * 10**5, edge_flops=10**7, cloud_flops=5 * 10**9, latency=1.0)
        write_run(root, task="infer/demo", track="infer", method="edge-only", reference="edge-only", value=0.7,
                  seed=s, bytes_up=0, bytes_down=0, edge_flops=10**7, cloud_flops=0, latency=0.01)
        write_run(root, task="infer/demo", track="infer", method="cloud-only", value=0.99, reference="cloud-only",
                  seed=s, bytes_up=10**6, bytes_down=10**5, edge_flops=0, cloud_flops=10**10, latency=2.0)
    out = tmp_path_factory.mktemp("site")
    build([str(root)], str(out), "lsbench leaderboard --results=runs --out=site")
    return out


def test_pages_render_tables_plots_and_sort_offline(site):
    exe = _chromium()
    art = os.environ.get("LSBENCH_ARTIFACTS") or os.path.join(ROOT, "test-artifacts")
    os.makedirs(art, exist_ok=True)
    for page, want_tables, want_imgs in (("index.html", 3, 2), ("tasks/infer-demo.html", 1, 3),
                                         ("methods/cascade.html", 2, 0)):
        src = site / page
        probe = src.with_name("_probe_" + src.name)
        probe.write_text(src.read_text().replace("</body>", CHECK + "</body>"))
        r = _browse(exe, probe.as_uri(), "--dump-dom")
        assert "<table" in r.stdout, f"no DOM from chromium: {r.stderr[-500:]}"
        assert len(re.findall(r"<table", r.stdout)) >= want_tables
        m = re.search(r'id="imgcheck">(\d+)/(\d+)<', r.stdout)
        assert m, "the load check did not run"
        loaded, total = int(m.group(1)), int(m.group(2))
        assert total >= want_imgs and loaded == total, f"{page}: {loaded}/{total} images decoded"
        if page == "tasks/infer-demo.html":
            # sorted by name, descending: each method row moved with its points
            order = re.findall(r'<p id="order">([^<]*)</p>', r.stdout)[-1].split("|")
            assert order == sorted(order, reverse=True) and len(order) == 4, order
            html = probe.read_text()
            assert html.count('<tr class="pt') == 6 and "score (20 budgets)" in html
        shot = os.path.join(art, "leaderboard-" + page.replace("/", "-").replace(".html", ".png"))
        r = _browse(exe, src.as_uri(), f"--screenshot={shot}", "--window-size=1280,1800", "--hide-scrollbars")
        assert os.path.exists(shot) and os.path.getsize(shot) > 20_000, r.stderr[-500:]

"""The leaderboard site in a real headless Chromium: tables and images render
offline; screenshots are kept under $LSBENCH_ARTIFACTS (default test-artifacts/)."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT
from lsbench.leaderboard.site import build
from test_leaderboard import write_run

pytestmark = pytest.mark.browser

# Appended to a test copy of each page (the published pages have no scripts):
# after load, it writes how many images decoded into the DOM.
CHECK = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
         "document.body.insertAdjacentHTML('beforeend','<p id=\"imgcheck\">'+"
         "i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length+'</p>')});</script>")


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not found (install Debian's `chromium`; .ci/run tries to)")


def _browse(exe, url, *args):
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--virtual-time-budget=5000", *args, url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return r


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
    for tau, v, up in ((0.5, 0.8, 10**3), (0.8, 0.9, 10**4), (0.95, 0.97, 10**5)):
        write_run(root, task="infer/demo", track="infer", method="cascade", point=f"tau={tau}", value=v,
                  bytes_up=up, bytes_down=up // 10, edge_flops=10**7, cloud_flops=up * 10**4, latency=up / 1e5,
                  reached_bytes=up)
    write_run(root, task="infer/demo", track="infer", method="cloud-only", value=0.99, reference="cloud-only",
              bytes_up=10**6, bytes_down=10**5, edge_flops=0, cloud_flops=10**11, latency=2.0)
    out = tmp_path_factory.mktemp("site")
    build([str(root)], str(out), "lsbench leaderboard --results=runs --out=site")
    return out


def test_pages_render_tables_and_images_offline(site):
    exe = _chromium()
    art = os.environ.get("LSBENCH_ARTIFACTS") or os.path.join(ROOT, "test-artifacts")
    os.makedirs(art, exist_ok=True)
    for page, want_tables, want_imgs in (("index.html", 2, 6), ("tasks/train-demo.html", 1, 2)):
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
        shot = os.path.join(art, "leaderboard-" + page.replace("/", "-").replace(".html", ".png"))
        r = _browse(exe, src.as_uri(), f"--screenshot={shot}", "--window-size=1280,1800",
                    "--hide-scrollbars")
        assert os.path.exists(shot) and os.path.getsize(shot) > 20_000, r.stderr[-500:]

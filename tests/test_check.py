"""``lsbench check``: the dynamic leak test flags a method that gains around the
channel (its quality survives random payloads) and passes an honest one."""
import io
import os

from conftest import PLUGINS
from lsbench.harness.check import check_method, leak_verdict

LEAK = os.path.join(PLUGINS, "leaky_infer.py")


def _check(name, tmp_path):
    out = io.StringIO()
    code = check_method(f"{LEAK}:{name}", task=f"{LEAK}:TASK", data_dir=str(tmp_path), units=4, out=out,
                        reference=f"{LEAK}:EdgeOnly")
    return code, out.getvalue()


def test_leak_test_flags_a_method_that_takes_information_around_the_channel(tmp_path):
    code, text = _check("Leaky", tmp_path)
    assert code == 1, text
    assert "FAIL: quality stays above edge-only when every delivered payload is random" in text


def test_leak_test_passes_an_honest_cascade(tmp_path):
    code, text = _check("Honest", tmp_path)
    assert code == 0, text
    assert "leak test:" in text and "OK:" in text


def test_leak_verdict_rule():
    assert leak_verdict(0.9, 0.9, 0.5) == (True, 1.0)       # keeps all its gain: a leak
    assert leak_verdict(0.9, 0.52, 0.5)[0] is False           # within noise of edge-only
    assert leak_verdict(0.9, 0.6, 0.5)[0] is False            # keeps 25% of its gain
    assert leak_verdict(0.2, 0.2, 0.5, higher_is_better=True)[0] is False


def test_a_v1_plugin_gets_one_line_pointing_to_the_migration_notes(tmp_path):
    from conftest import cli
    p = tmp_path / "old.py"
    p.write_text("from lsbench import api\n\n"
                 "class Old(api.TrainMethod):\n"
                 "    manifest = api.Manifest(name='old', tracks=('train',), api_version='1')\n")
    r = cli("run", "--task=train/digits", f"--method={p}", f"--workdir={tmp_path / 'r'}")
    err = [x for x in r.stderr.strip().splitlines() if not x.startswith("warning:")]
    assert r.returncode == 2 and len(err) == 1
    assert "plugin API v1" in err[0] and "Migrating from API v1" in err[0]
    assert not (tmp_path / "r").exists()

import io

from lsbench.harness import progress


def test_non_terminal_prints_one_line_per_tenth_with_live_metric():
    out = io.StringIO()
    with progress.Bar(total=100, desc="t", unit="round", stream=out, tty=False) as bar:
        for i in range(100):
            bar.update(1, acc=i / 100)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("t: round 10/100") and "acc=0.09" in lines[0]
    assert lines[-1].startswith("t: round 100/100")


def test_short_work_and_silence(monkeypatch):
    out = io.StringIO()
    with progress.Bar(total=3, desc="t", stream=out, tty=False) as bar:
        bar.update(3)
    assert len(out.getvalue().splitlines()) == 1
    monkeypatch.setenv("LSBENCH_PROGRESS", "0")
    out = io.StringIO()
    with progress.Bar(total=3, desc="t", stream=out, tty=False) as bar:
        bar.update(3)
    assert out.getvalue() == ""

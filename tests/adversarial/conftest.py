import pytest


@pytest.fixture(autouse=True)
def _no_timing(monkeypatch):
    """The measured program timings (a sanity column) are not what these tests check."""
    monkeypatch.setenv("LSBENCH_TIME_PROGRAMS", "0")

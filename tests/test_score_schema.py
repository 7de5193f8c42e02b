"""The published JSON Schemas (leaderboard/schema/) match the validators that
write them, and real files validate: every committed final.json, and a board.json
built from hand-made runs (and the published one once it is board/2)."""
import glob
import json
import os

import pytest

from conftest import ROOT
from lsbench.leaderboard import board_schema
from lsbench.leaderboard.site import BOARD_SCHEMA, build
from lsbench.results import schema
from test_leaderboard import write_run

jsonschema = pytest.importorskip("jsonschema")
SCHEMA_DIR = os.path.join(ROOT, "leaderboard", "schema")


def _load(name):
    with open(os.path.join(SCHEMA_DIR, name)) as f:
        return json.load(f)


def test_published_schemas_equal_the_generated_ones():
    assert _load("final.schema.json") == json.loads(json.dumps(schema.json_schema()))
    assert _load("board.schema.json") == json.loads(json.dumps(board_schema.board_schema(BOARD_SCHEMA)))
    for name in ("final.schema.json", "board.schema.json"):
        jsonschema.Draft202012Validator.check_schema(_load(name))


def test_committed_final_json_files_validate_and_bad_ones_do_not():
    v = jsonschema.Draft202012Validator(_load("final.schema.json"))
    files = sorted(glob.glob(os.path.join(ROOT, "leaderboard", "results", "**", "final.json"), recursive=True))
    assert len(files) >= 10
    for p in files:
        d = json.load(open(p))
        schema.validate_final(d, p)                    # the Python validator agrees
        errs = list(v.iter_errors(d))
        assert not errs, f"{p}: {errs[0].message}"
    d = json.load(open(files[0]))
    for bad in ({"costs": {**d["costs"], "bytes_up": -1}}, {"status": "done"}, {"schema": "lsbench.final/0"},
                {"metrics": {"acc": "high"}}, {"seed": 1.5}):
        assert list(v.iter_errors({**d, **bad})), bad
        with pytest.raises(schema.SchemaError):
            schema.validate_final({**d, **bad})
    assert list(v.iter_errors({k: x for k, x in d.items() if k != "costs"}))


def test_board_json_validates(tmp_path):
    v = jsonschema.Draft202012Validator(_load("board.schema.json"))
    r = tmp_path / "runs"
    for s in range(3):
        write_run(r, task="infer/fixroute", track="infer", method="edge-only", reference="edge-only", seed=s,
                  value=0.5, cloud_flops=0)
        write_run(r, task="infer/fixroute", track="infer", method="cloud-only", reference="cloud-only",
                  seed=s, value=0.9, cloud_flops=10**9)
        write_run(r, task="infer/fixroute", track="infer", method="cascade", point="tau=0.5", seed=s,
                  value=0.8, cloud_flops=10**8)
    write_run(r, method="fedavg", value=0.6)
    build([str(r)], str(tmp_path / "site"), "x")
    board = json.load(open(tmp_path / "site" / "board.json"))
    errs = list(v.iter_errors(board))
    assert not errs, errs[0].message
    assert board["tasks"]["infer/fixroute"]["score"]["methods"][0]["method"] == "cascade"
    assert (tmp_path / "site" / "schema" / "board.schema.json").exists()
    published = os.path.join(ROOT, "leaderboard", "board.json")
    if json.load(open(published)).get("schema") == BOARD_SCHEMA:
        assert not list(v.iter_errors(json.load(open(published))))
    assert list(v.iter_errors({**board, "schema": "lsbench.board/1"}))

"""compress/*: the edge model must come down the setup channel. A method that
hands the edge the cloud's params is refused; one that smuggles a derived copy
(below the sealer's large-constant limit) pays for it: on a task whose edge
starts empty, every array constant of the edge's per-batch programs is billed
as setup bytes down (and counted as edge parameter bytes)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"))
from adv_common import plugin  # noqa: E402
from infer_util import run_loop  # noqa: E402


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    from tasks.compress_shapes import TINY
    d = os.environ.get("LSBENCH_DATA_DIR") or str(tmp_path_factory.mktemp("compress-data"))
    return TINY.build(d, 0)


def test_cloud_params_on_the_edge_are_refused(inst):
    from lsbench.errors import SealError
    with pytest.raises(SealError) as e:
        run_loop(inst, plugin("compress_ship").StashCloudModel)
    assert "edge function edge_query" in str(e.value) and "cloud view/params/cloud/" in str(e.value)


def test_a_smuggled_copy_is_billed_as_shipped(inst):
    import jax
    import jax.numpy as jnp
    from lsbench.models import quant
    shp = jax.eval_shape(inst.cloud_view.models["cloud"].init, jax.ShapeDtypeStruct((2,), jnp.uint32))
    ks = {n: tuple(l["kernel"].shape) for n, l in shp.items()}
    final, loop, st = run_loop(inst, plugin("compress_ship").SmuggleInt8Copy)
    m = final["metrics"]  # it answers with (a copy of) the cloud model
    assert abs(m["accuracy"] - m["ref_cloud_accuracy"]) <= 0.05
    billed = final["costs"]["setup_bytes_down"]
    # int8 values + f32 scale + bias per channel (arrays under 16 elements are not counted)
    assert 0.99 * quant.wire_bytes(ks, 8) <= billed <= quant.wire_bytes(ks, 8)
    assert loop.edge_footprint(st)["param_bytes"] == billed

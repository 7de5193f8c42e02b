"""train/digits: the CI-sized training task (scikit-learn 8x8 digits).

20 clients (10 per round), Dir(0.5) label skew; edge
MLP (64 hidden; tiers small = 0.5 width, full = 1.0), cloud a small 2-D CNN;
public = 200 held-out unlabelled images. A whole FedAvg run takes seconds.
"""
from lsbench.task import TaskSpec
from tasks._train_common import build

CONFIG = dict(
    dataset="digits", partition="dirichlet", alpha=0.5, clients=20, test_frac=0.2,
    edge=("mlp", {"hidden": (64,)}),
    cloud=("cnn", {"channels": (16, 32), "kernels": (3, 3), "strides": (1, 2)}),
    tiers={"small": 0.5, "full": 1.0},
    rounds=30, clients_per_round=10, local_epochs=1.0, batch_size=16, max_local_steps=20, eval_every=5,
    # Per edge: the parameters of the largest edge tier model (4,810 fp32 params).
    edge_budgets={"param_bytes": 4 * 4810},
)

TASK = TaskSpec(
    name="train/digits", version="2", track="train",
    description="sklearn digits, 20 clients Dir(0.5), MLP edge / CNN cloud; the CI task",
    primary_metric="edge_accuracy", target=0.75, tier="small", config=CONFIG, builder=build)

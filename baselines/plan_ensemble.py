"""ensemble: K small edge agents vote on each action; the K - 1 peers' votes (1
uint8 each) are metered edge<->edge; disagreement (the top action holds fewer
than ``agree`` of the votes) asks the cloud for k actions. It is debate with
R = 0 message rounds: the class lives in ``baselines.plan_debate``."""
from baselines.plan_debate import Ensemble

__all__ = ["Ensemble"]

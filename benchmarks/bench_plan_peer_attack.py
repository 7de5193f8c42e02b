"""What a team gains by deliberating outside the peer channel: the two attacks of
tests/adversarial/test_plan_peer.py (FreeDebate, AgentPeeks) run with the team
guard turned off, against the honest R = 0 team, on the test's slidingtile-small
episodes. Prints calls, success, billed peer bytes and steps per method.

    python benchmarks/bench_plan_peer_attack.py
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "adversarial"), os.path.join(ROOT, "tests", "adversarial", "plugins")]


def main():
    import test_plan_peer as t

    from lsbench.harness import sealed

    def show(name, out, costs):
        print(f"{name}: calls {int(out['calls'].sum())}, success {float(out['info']['success'].any(1).mean()):.3f}, "
              f"peer B {costs['peer_bytes']}, steps {int(out['steps'].sum())}")

    p = t.plugin("plan_peer")
    show("honest debate R=0", *t._run(p.Debate, {**t.HP, "rounds": 0}))
    sealed.Guard.for_team = lambda self, *a: self  # the pre-team guard: members readable anywhere
    for attack in (p.FreeDebate, p.AgentPeeks):
        show(f"{attack.__name__} (guard off)", *t._run(attack, t.HP))


if __name__ == "__main__":
    main()

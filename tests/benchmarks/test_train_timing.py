"""The timed training steps wait for the whole step, on both sides (issue 13).

``reference.train.train_step`` is two jitted programs: loss and gradients, then AdamW and the bias
update. Its loss is ready before the update has run, so a timer that waits on the loss alone stops
early and the update runs on into whatever is timed next: in ``TrainThroughput``'s alternating rounds,
the TF step. That made TF/Flax read ~1.0 where separate processes measured TF ~2x faster.
"""

from __future__ import annotations

import jax

from benchmarks import bench_throughput


def test_flax_step_waits_for_the_updated_weights_and_optimizer_state(monkeypatch):
    from reference import train

    seen = {}
    real_step, real_wait = train.train_step, jax.block_until_ready

    def recording_step(model, opt_state, tokens, step, *args, **kwargs):
        out = real_step(model, opt_state, tokens, step, *args, **kwargs)
        seen["model"], seen["opt"] = model, out[0]
        return out

    def recording_wait(tree):
        seen.setdefault("waited", []).extend(jax.tree.leaves(tree))
        return real_wait(tree)

    monkeypatch.setattr(train, "train_step", recording_step)
    monkeypatch.setattr(jax, "block_until_ready", recording_wait)
    step = bench_throughput._train_step_call("flax-jit", 2, 16, preset="tiny")
    seen.pop("waited", None)  # loading the weights may wait too; only the timed step counts
    step()
    waited = {id(leaf) for leaf in seen.get("waited", [])}
    must = jax.tree.leaves((seen["model"].params, seen["model"].biases, seen["opt"]))
    assert must and all(id(leaf) in waited for leaf in must), (
        f"the timed Flax step returned before {sum(id(x) not in waited for x in must)} of {len(must)} "
        "arrays it updates were known to be computed")


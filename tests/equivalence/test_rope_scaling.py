"""TF against Flax with position interpolation and plain RoPE extrapolation (the context-extension variants).

YaRN (the default) is covered by the suite's ``tiny-yarn`` config; these two are only used by the
context-extension experiment, and must agree between the frameworks just the same. The logits run at
the extended length (128 > original 32), where the scaling is active.
"""

import numpy as np
import pytest

from harness.config import ModelConfig
from harness.interop import equivalence as eq


@pytest.mark.parametrize("scaling", ["pi", "none"])
def test_rope_scaling_variants_agree_between_frameworks(scaling):
    cfg = ModelConfig.tiny(original_seq_len=32, max_seq_len=128, rope_factor=4.0, rope_scaling=scaling)
    rows = eq.compare(cfg, checks=("rope", "logits"))
    failed = [f"{r.component}: {r.max_abs_err:.3g} ({r.tolerance.text()})" for r in rows if not r.passed]
    assert rows and not failed, failed
    names = " | ".join(r.component for r in rows)
    assert "RoPE tables" in names and "logits" in names


def test_the_variants_give_different_tables():
    # The three scalings must not collapse into one (e.g. a flag ignored by one framework's tables).
    from reference.rope import rope_freqs as flax_freqs
    from tf_impl.rope import rope_freqs as tf_freqs

    cfgs = {s: ModelConfig.tiny(original_seq_len=32, max_seq_len=128, rope_scaling=s) for s in ("yarn", "pi", "none")}
    for freqs in (tf_freqs, flax_freqs):
        got = {s: freqs(c) for s, c in cfgs.items()}
        assert not np.allclose(got["yarn"], got["pi"]) and not np.allclose(got["pi"], got["none"])
        assert not np.allclose(got["yarn"], got["none"])

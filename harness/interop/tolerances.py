"""The one table of float32 TF-vs-Flax tolerances, each with its justification (``TOLERANCES``).

Every comparison of the equivalence suite (``harness.interop.equivalence``) and every TF-vs-Flax test
judges its quantity by an entry here; none is ever raised to make a run pass.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """``|a - b| <= atol + rtol * scale``; ``scale`` is ``|b|`` per element (``per="element"``, numpy's
    allclose) or ``max|b|`` over the whole tensor (``per="tensor"``, for quantities such as gradients
    whose entries span many orders of magnitude, where elementwise rtol is meaningless near zero)."""

    atol: float
    rtol: float
    why: str
    per: str = "element"

    def text(self) -> str:
        """The tolerance as the report prints it, e.g. ``atol 1e-06, rtol 1e-05 of max|ref|``."""
        rel = f"rtol {self.rtol:.0e}" + (" of max|ref|" if self.per == "tensor" else "")
        return f"atol {self.atol:.0e}, {rel}" if self.rtol else f"atol {self.atol:.0e}"


# float32 has a unit roundoff of 6e-8. The two models compute the same formulas with different
# reduction orders and kernels (TF einsum / XLA vs jnp.einsum / XLA), so their outputs differ by a few
# ulps per reduction, compounded through the layers. Every tolerance below is a small multiple of that,
# set before measuring and never raised to make a run pass.
TOLERANCES: dict[str, Tolerance] = {
    "rmsnorm": Tolerance(1e-6, 1e-6, "one length-D reduction and a rsqrt on O(1) values: a few ulps"),
    "rope_freqs": Tolerance(0.0, 1e-6, "same closed form (YaRN ramp included); fp32 vs fp64 evaluation differs by ~1 ulp"),
    "rope_tables": Tolerance(1e-6, 0.0, "cos/sin in [-1, 1]: 16 fp32 ulps; covers fp32 rounding of t*freq up to "
                                        "|angle| ~ 16 rad, any wrong frequency or position is >= 1e-3"),
    "apply_rope": Tolerance(1e-6, 1e-6, "one complex multiply per pair on O(1) values with the tables above"),
    "mla": Tolerance(1e-5, 1e-5, "projections, a length-S softmax and two reductions of width <= N*H: a few ulps "
                                 "of O(1) outputs, times the ~10-ulp table difference"),
    "gate_scores": Tolerance(1e-6, 1e-6, "one length-D dot product then sigmoid/softmax, values in (0, 1)"),
    "gate_weights": Tolerance(1e-6, 1e-6, "original scores at the chosen experts, normalised, times route_scale"),
    "moe": Tolerance(1e-5, 1e-5, "SwiGLU of width F per expert, K weighted experts summed in a different order"),
    "mtp": Tolerance(1e-5, 1e-5, "two norms, a 2D->D projection and one block: as mla + moe"),
    "logits": Tolerance(1e-5, 0.0, "the P0.synthetic_validation criterion (HF PT<->Flax use 1e-5); logits are O(1-10). "
                                   "Also TF's bound against the float64 oracle, which gates instead of TF-vs-Flax where "
                                   "Flax's own fp32 error exceeds half of it (bench: ~7e-6; equivalence_f64)"),
    "loss": Tolerance(1e-6, 1e-6, "a mean of log-softmaxes: averaging shrinks the logits' independent ulp errors"),
    "gradients": Tolerance(1e-7, 1e-4, "backward reductions over B*T tokens; entries span decades, so the error is "
                                       "judged against each tensor's largest entry (per tensor)", per="tensor"),
    "adamw": Tolerance(1e-8, 2.0**-21, "the optimizer alone, 3 steps on the same gradients: each step rounds "
                                       "w - lr*(u + wd*w) once per side (<= 1/2 ulp of |w| each, so <= 3 ulps apart "
                                       "after 3 steps: rtol 4 ulps); u = m_hat/(sqrt(v_hat) + eps) carries ~10 "
                                       "roundings and the clip factor's reduction-order error (~1e-6 relative) of "
                                       "lr*|u| <= 3e-3 per step: atol"),
    "step_weights": Tolerance(1e-6, 1e-6, "each side with its own gradients, on entries where AdamW's sensitivity "
                                          "(see step_floor) bounds the update difference by 1e-7: fp32 rounding of "
                                          "w - lr*(u + wd*w) plus that, with 10x room"),
    "step_floor": Tolerance(1.0, 1.0, "AdamW's first update is lr*c*g/(c|g| + eps), c = min(1, clip/||g||): a gradient "
                                      "difference d moves it by up to lr*eps'*d/(|g| - d + eps')^2 (eps' = eps/c), and "
                                      "by up to 2*lr where |g| <= d (the sign may flip); d = 10*max|g_tf - g_ref| per "
                                      "tensor, the margin for the Trainer's own compiled gradient. Required: "
                                      "|dw_tf - dw_ref| <= that bound + the step_weights tolerance "
                                      "(atol/rtol: multiples of it)"),
    "grpo_loss": Tolerance(1e-5, 1e-5, "GRPO on one batch: log-probs inherit the logits' 1e-5 bound, the ratio "
                                       "exp(logp - logp_old) and k3 KL are smooth O(1) functions of them, times "
                                       "|A| <= 2 (G = 2), averaged over tokens; the advantages alone are a few ulps"),
    "grpo_gradients": Tolerance(1e-7, 1e-4, "as gradients: the same backward reductions over B*T tokens, each token's "
                                            "log-prob gradient weighted by A*rho (or 0 where clipped) and the KL "
                                            "term; per tensor", per="tensor"),
    "gate_bias": Tolerance(0.0, 0.0, "bias += speed*sign(mean(load) - load): integer loads, identical when routing is"),
    "decode_logits": Tolerance(1e-5, 0.0, "as logits, at every greedy step; tokens must be identical"),
    "fp8_values": Tolerance(0.0, 0.0, "e4m3 codes and fp32 block scales against harness.interop.fp8_oracle: "
                                      "max(amax, 1e-4)/448 and x/scale each rounded once, then round-to-nearest-even; "
                                      "one right answer"),
    "fp8_matmul": Tolerance(1e-6, 1e-6, "e4m3 products summed per 128-block in fp32: the rounding error scales with "
                                        "sum|x*w|, not with the (cancelling) result, so per tensor", per="tensor"),
    "fp8_logits": Tolerance(1e-4, 0.0, "identical quantisation, but an fp32 1-ulp difference upstream can move an "
                                       "activation across an e4m3 rounding midpoint (up to 1/8 of one element, "
                                       "p ~ 1e-6 per element); 10x the fp32 logits bound. Gates only where the "
                                       "one-ulp control stays inside it (harness.interop.equivalence_fp8)"),
}
REQUIRED_ROUTING_AGREEMENT = 1.0  # on tiny configs with tie-free inputs, every token's expert set must agree

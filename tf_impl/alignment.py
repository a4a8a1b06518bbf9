"""Post-training objectives in TensorFlow: SFT masked to the response, GRPO without a value function, and
distillation from a teacher's logits.

The contract, shared with ``reference/alignment.py`` (written separately, same names and math).
Letters: B batch (for GRPO: prompts x group size G), T tokens, S = T - 1 predicted positions, V vocab.

- ``token_log_probs(logits [B, T, V], tokens [B, T]) -> [B, S]``: ``log softmax(logits[:, t])[tokens[:, t+1]]``.
- SFT: ``sft_loss = sum(CE * m) / sum(m)`` over the predicted positions, ``m = response_mask[:, 1:]``: only
  response tokens are targets, so the prompt tokens carry no loss (they still condition the model).
- GRPO (DeepSeekMath, eq. 3 with outcome rewards; DeepSeek-R1, eq. 1):
  ``A_i = (R_i - mean(R_group)) / (std(R_group) + ADV_EPS)`` (population std within each prompt's group of G);
  per token ``rho = exp(logp - logp_old)``, ``pg = min(rho A, clip(rho, 1 - eps, 1 + eps) A)``,
  ``kl = exp(logp_ref - logp) - (logp_ref - logp) - 1`` (the unbiased estimator k3 of KL(pi || pi_ref), >= 0);
  ``loss = -mean_i [sum_t m_it (pg_it - beta kl_it) / sum_t m_it]`` (each completion averaged over its own
  tokens, then over all completions). There is no value network and no learned baseline: the group mean
  is the baseline.

- Distillation (Hinton et al. 2015, on the response tokens): ``distill_loss = (1 - alpha) * sft_loss +
  alpha * sum(KL(p_teacher || p_student) * m) / sum(m)`` per predicted position, both distributions at
  temperature 1; with ``alpha = 0`` it is sequence-level distillation (SFT on the teacher's outputs).

``PolicyTrainer`` applies these objectives with the project's AdamW (``tf_impl.train``) to a
``Transformer``'s own trainable variables and nothing else; ``value_function_parameters`` counts what a
trainer would train beyond the policy (zero by construction, asserted by the experiment).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from harness.config import TrainConfig
from tf_impl.losses import bias_update
from tf_impl.model import Transformer
from tf_impl.optim import AdamW
from tf_impl.train import TrainingDiverged

ADV_EPS = 1e-4  # added to the group std: a group whose rewards are all equal gets zero advantages, not NaN


# ---------------------------------------------------------------------------------------- pure math
def token_log_probs(logits: tf.Tensor, tokens: tf.Tensor) -> tf.Tensor:
    """Log-probability of each next token: logits [B, T, V], tokens [B, T] -> [B, T-1] in fp32."""
    logp = tf.nn.log_softmax(tf.cast(logits[:, :-1], tf.float32), axis=-1)       # [B, S, V]
    return tf.gather(logp, tf.cast(tokens[:, 1:], tf.int32), axis=-1, batch_dims=2)  # [B, S]


def sft_loss(logits: tf.Tensor, tokens: tf.Tensor, response_mask: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy over response tokens only.

    Args:
        logits: the model's logits of shape [B, T, V]; position t predicts token t + 1.
        tokens: prompt + response ids of shape [B, T].
        response_mask: [B, T], 1 on response tokens (the targets), 0 on prompt and padding.

    Returns:
        ``sum(CE * m) / max(sum(m), 1)`` with ``m = response_mask[:, 1:]``, an fp32 scalar.
    """
    m = tf.cast(response_mask[:, 1:], tf.float32)                                # [B, S]
    nll = -token_log_probs(logits, tokens)                                       # [B, S]
    return tf.reduce_sum(nll * m) / tf.maximum(tf.reduce_sum(m), 1.0)


def distill_loss(logits: tf.Tensor, teacher_logits: tf.Tensor, tokens: tf.Tensor, response_mask: tf.Tensor,
                 alpha: float) -> tf.Tensor:
    """``(1 - alpha) * sft_loss + alpha * masked mean KL(teacher || student)`` over the response's targets.

    Args:
        logits: the student's logits [B, T, V]; position t predicts token t + 1.
        teacher_logits: the teacher's logits [B, T, V] on the same tokens (no gradient flows into them).
        tokens: prompt + response ids [B, T] (the response is the teacher's own output).
        response_mask: [B, T], 1 on response tokens.
        alpha: the weight of the logit term in [0, 1].

    Returns:
        an fp32 scalar.
    """
    m = tf.cast(response_mask[:, 1:], tf.float32)                                # [B, S]
    log_q = tf.nn.log_softmax(tf.cast(logits[:, :-1], tf.float32), axis=-1)      # [B, S, V] student
    log_p = tf.nn.log_softmax(tf.stop_gradient(tf.cast(teacher_logits[:, :-1], tf.float32)), axis=-1)
    kl = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)                 # [B, S]
    kl_mean = tf.reduce_sum(kl * m) / tf.maximum(tf.reduce_sum(m), 1.0)
    return (1.0 - alpha) * sft_loss(logits, tokens, response_mask) + alpha * kl_mean


def group_advantages(rewards: ArrayLike | tf.Tensor, group_size: int) -> tf.Tensor:
    """Group-normalised advantages: rewards [P * G] (G consecutive completions per prompt) -> [P * G].

    ``(R - mean_group) / (std_group + ADV_EPS)``, population std (ddof 0). Raises ValueError when the
    rewards do not split into whole groups.
    """
    rewards = tf.cast(tf.convert_to_tensor(rewards), tf.float32)
    n = int(rewards.shape[0])
    if group_size < 1 or n % group_size:
        raise ValueError(f"{n} rewards do not split into groups of {group_size}; sample G completions per prompt")
    r = tf.reshape(rewards, [n // group_size, group_size])                        # [P, G]
    mean = tf.reduce_mean(r, axis=1, keepdims=True)                              # [P, 1]
    std = tf.sqrt(tf.reduce_mean(tf.square(r - mean), axis=1, keepdims=True))   # [P, 1]
    return tf.reshape((r - mean) / (std + ADV_EPS), [n])                          # [P * G]


def kl_k3(logp: tf.Tensor, ref_logp: tf.Tensor) -> tf.Tensor:
    """Per-token ``r - log r - 1`` with ``r = pi_ref / pi = exp(ref_logp - logp)``: unbiased for KL(pi||pi_ref), >= 0.

    Args:
        logp: log pi of the sampled tokens, of shape [B, S].
        ref_logp: log pi_ref of the same tokens, [B, S].

    Returns:
        the per-token estimate, [B, S].
    """
    log_r = ref_logp - logp
    return tf.exp(log_r) - log_r - 1.0


def grpo_loss(logp: tf.Tensor, old_logp: tf.Tensor, ref_logp: tf.Tensor, advantages: tf.Tensor, mask: tf.Tensor,
              clip_eps: float, beta: float) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The GRPO loss of one batch of sampled completions, and its diagnostics.

    Args:
        logp: log pi_theta of the sampled tokens, [B, S] (differentiable).
        old_logp: log pi_old of the same tokens (the policy that sampled them), [B, S].
        ref_logp: log pi_ref of the same tokens (the frozen reference policy), [B, S].
        advantages: one group-normalised advantage per completion, [B].
        mask: [B, S], 1 on the completion's tokens (as targets), 0 on prompt and padding.
        clip_eps: the ratio clip range epsilon.
        beta: the KL penalty weight.

    Returns:
        ``(loss, {"kl", "clip_fraction", "ratio"})``: the scalar loss to minimise, and the masked means of
        the k3 KL, of the tokens whose ratio was clipped against the advantage's sign, and of the ratio.
    """
    m = tf.cast(mask, tf.float32)
    adv = tf.cast(advantages, tf.float32)[:, None]                                # [B, 1]
    ratio = tf.exp(logp - old_logp)                                              # [B, S]
    unclipped = ratio * adv
    clipped = tf.clip_by_value(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    kl = kl_k3(logp, ref_logp)
    per_token = tf.minimum(unclipped, clipped) - beta * kl                       # [B, S]
    lengths = tf.maximum(tf.reduce_sum(m, axis=1), 1.0)                          # [B]
    loss = -tf.reduce_mean(tf.reduce_sum(per_token * m, axis=1) / lengths)
    count = tf.maximum(tf.reduce_sum(m), 1.0)
    stats = {"kl": tf.reduce_sum(kl * m) / count,
             "clip_fraction": tf.reduce_sum(tf.cast(clipped < unclipped, tf.float32) * m) / count,
             "ratio": tf.reduce_sum(ratio * m) / count}
    return loss, stats


# ---------------------------------------------------------------------------------------- model level
def _policy_logits(model, tokens):
    """Logits [B, T, V] through the differentiable (training) MoE dispatch, plus the per-layer expert load."""
    logits, aux = model.forward_aux(tokens)
    return logits, aux["expert_load"]


def canonical_gradients(model: Transformer, loss_fn: Callable[[Transformer], tf.Tensor]
                        ) -> tuple[float, dict[str, np.ndarray]]:
    """``(loss, {canonical name: d loss / d tensor})`` of ``loss_fn(model)`` (eager tape; for equivalence tests).

    Args:
        model: the policy; only its trainable canonical tensors get gradients (gate biases do not).
        loss_fn: computes the scalar loss from ``model`` under the tape.

    Returns:
        the loss as a float and the float32 gradients by canonical name, in the canonical layouts (a stacked
        expert variable is split per expert); a tensor the loss does not reach gets zeros.
    """
    named = {n: s for n, s in model.named_variables().items() if s.var.trainable}
    variables = list({id(s.var): s.var for s in named.values()}.values())
    with tf.GradientTape() as tape:
        loss = loss_fn(model)
    grads = tape.gradient(loss, variables)
    by_var = {id(v): np.zeros(v.shape, np.float32) if g is None else tf.convert_to_tensor(g).numpy()
              for v, g in zip(variables, grads)}
    return float(loss), {n: s.canonical(by_var[id(s.var)]) for n, s in named.items()}


def grpo_loss_and_gradients(model: Transformer, tokens: ArrayLike, mask: ArrayLike, old_logp: ArrayLike,
                            ref_logp: ArrayLike, advantages: ArrayLike, clip_eps: float, beta: float
                            ) -> tuple[float, dict[str, np.ndarray]]:
    """``(loss, {canonical name: gradient})`` of ``grpo_loss`` on one batch; ``mask`` is [B, S] over targets.

    Args:
        model: the policy.
        tokens: prompt + completion ids of shape [B, T].
        mask: [B, S] with S = T - 1, 1 on the completion's target tokens.
        old_logp: log pi_old of the sampled tokens, [B, S].
        ref_logp: log pi_ref of the sampled tokens, [B, S].
        advantages: one group-normalised advantage per completion, [B].
        clip_eps: the ratio clip range epsilon.
        beta: the KL penalty weight.

    Returns:
        ``(loss, {canonical name: float32 gradient})`` as ``canonical_gradients`` gives them.
    """
    def loss_fn(m):
        t = tf.constant(np.asarray(tokens, np.int32))
        logp = token_log_probs(_policy_logits(m, t)[0], t)
        return grpo_loss(logp, tf.constant(old_logp, tf.float32), tf.constant(ref_logp, tf.float32),
                         tf.constant(advantages, tf.float32), tf.constant(mask, tf.float32), clip_eps, beta)[0]
    return canonical_gradients(model, loss_fn)


def sft_loss_and_gradients(model: Transformer, tokens: ArrayLike, response_mask: ArrayLike
                           ) -> tuple[float, dict[str, np.ndarray]]:
    """``(loss, {canonical name: gradient})`` of ``sft_loss`` on one batch.

    Args:
        model: the policy.
        tokens: prompt + response ids of shape [B, T].
        response_mask: [B, T], 1 on response tokens (the targets).

    Returns:
        ``(loss, {canonical name: float32 gradient})`` as ``canonical_gradients`` gives them.
    """
    def loss_fn(m):
        t = tf.constant(np.asarray(tokens, np.int32))
        return sft_loss(_policy_logits(m, t)[0], t, tf.constant(response_mask, tf.float32))
    return canonical_gradients(model, loss_fn)


class PolicyTrainer(tf.Module):
    """AdamW on a ``Transformer``'s trainable variables under the SFT or GRPO objective.

    The trainer holds the policy and its optimizer only: no value network, no critic head, no learned
    baseline (``value_function_parameters`` says so from the objects). With ``update_bias`` the gate biases
    keep their aux-loss-free balancing updates from each step's expert load (as in pre-training); GRPO
    runs turn it off, so that between sampling and update the policy moves by its gradient alone and the
    ratio ``pi / pi_old`` is a true importance ratio.

    Steps are ``tf.function``s (``jit_compile=True`` also runs them through XLA: on 2 CPU cores the tiny
    model's SFT step compiles in ~25 s and then runs ~1.7x faster than graph mode, worth it past ~200 steps).
    """

    def __init__(self, model, tc: TrainConfig, *, update_bias: bool = True, jit_compile: bool = False):
        super().__init__(name="policy_trainer")
        self.model, self.tc = model, tc
        self.params = list(model.trainable_variables)
        self.opt = AdamW(self.params, tc)
        self.biases = list(model.gate_biases()) if update_bias and model.cfg.bias_update_speed > 0 else []
        self._sft = tf.function(self._sft_step, jit_compile=jit_compile)
        self._grpo = tf.function(self._grpo_step, jit_compile=jit_compile)
        self._distill = tf.function(self._distill_step, jit_compile=jit_compile)
        self.log_probs = log_prob_fn(model, jit_compile)

    @property
    def step(self) -> int:
        """Updates applied so far."""
        return int(self.opt.count.numpy())

    def value_function_parameters(self) -> int:
        """Scalars this trainer trains that are not the policy's own tensors (a critic's would count here).

        Computed from the objects: every trainable variable reachable from the trainer (policy and
        optimizer) and every variable the optimizer updates, minus the policy's canonical tensors.
        """
        policy = {id(s.var) for s in self.model.named_variables().values()}
        extra = {id(v): v for v in list(self.trainable_variables) + self.opt.params if id(v) not in policy}
        return int(sum(np.prod(v.shape) for v in extra.values()))

    def _apply(self, loss, tape, load):
        grads = tape.gradient(loss, self.params)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, self.params)]
        grads, norm = tf.clip_by_global_norm(grads, self.tc.clip_norm)
        ok = tf.logical_and(tf.math.is_finite(loss), tf.math.is_finite(norm))

        def update():
            lr = self.opt.apply(grads)
            for i, bias in enumerate(self.biases):
                bias.assign(bias_update(bias, load[i], self.model.cfg.bias_update_speed))
            return lr

        lr = tf.cond(ok, update, lambda: tf.constant(0.0))
        return norm, lr

    def _sft_step(self, tokens, response_mask):
        with tf.GradientTape() as tape:
            logits, load = _policy_logits(self.model, tokens)
            loss = sft_loss(logits, tokens, response_mask)
        norm, lr = self._apply(loss, tape, load)
        return {"loss": loss, "grad_norm": norm, "lr": lr}

    def _distill_step(self, tokens, response_mask, teacher_logits, alpha):
        with tf.GradientTape() as tape:
            logits, load = _policy_logits(self.model, tokens)
            loss = distill_loss(logits, teacher_logits, tokens, response_mask, alpha)
        norm, lr = self._apply(loss, tape, load)
        return {"loss": loss, "grad_norm": norm, "lr": lr}

    def _grpo_step(self, tokens, mask, old_logp, ref_logp, advantages, clip_eps, beta):
        with tf.GradientTape() as tape:
            logits, load = _policy_logits(self.model, tokens)
            loss, stats = grpo_loss(token_log_probs(logits, tokens), old_logp, ref_logp, advantages, mask,
                                    clip_eps, beta)
        norm, lr = self._apply(loss, tape, load)
        return {"loss": loss, "grad_norm": norm, "lr": lr, **stats}

    def _record(self, out: dict) -> dict[str, float]:
        record = {k: float(v) for k, v in out.items()}
        if not (math.isfinite(record["loss"]) and math.isfinite(record["grad_norm"])):
            raise TrainingDiverged(f"alignment step {self.step}: loss={record['loss']}, grad_norm="
                                   f"{record['grad_norm']}; the update was not applied. Lower the learning rate "
                                   "or, for GRPO, beta and clip_eps", step=self.step, records=[record])
        return record

    def sft_step(self, tokens: ArrayLike, response_mask: ArrayLike) -> dict[str, float]:
        """One update on the response-masked cross-entropy; tokens int32 [B, T], response_mask [B, T]."""
        return self._record(self._sft(tf.constant(np.asarray(tokens, np.int32)),
                                      tf.constant(np.asarray(response_mask, np.float32))))

    def distill_step(self, tokens: ArrayLike, response_mask: ArrayLike, teacher_logits: ArrayLike,
                     alpha: float = 0.5) -> dict[str, float]:
        """One update on ``distill_loss``; tokens [B, T], response_mask [B, T], teacher_logits [B, T, V]."""
        return self._record(self._distill(tf.constant(np.asarray(tokens, np.int32)),
                                          tf.constant(np.asarray(response_mask, np.float32)),
                                          tf.constant(np.asarray(teacher_logits, np.float32)),
                                          tf.constant(alpha, tf.float32)))

    def grpo_step(self, tokens: ArrayLike, mask: ArrayLike, old_logp: ArrayLike, ref_logp: ArrayLike,
                  advantages: ArrayLike, clip_eps: float = 0.2, beta: float = 0.04) -> dict[str, float]:
        """One update on ``grpo_loss``; tokens [B, T], mask/old_logp/ref_logp [B, T-1], advantages [B]."""
        f32 = lambda x: tf.constant(np.asarray(x, np.float32))  # noqa: E731
        return self._record(self._grpo(tf.constant(np.asarray(tokens, np.int32)), f32(mask), f32(old_logp),
                                       f32(ref_logp), f32(advantages), tf.constant(clip_eps, tf.float32),
                                       tf.constant(beta, tf.float32)))



def log_prob_fn(model: Transformer, jit_compile: bool = False) -> Callable[[ArrayLike], np.ndarray]:
    """``tokens int [B, T] -> float32 [B, T-1]``: a compiled function giving ``model``'s log-probability of
    each next token, without gradient. The policy's old log-probs and the frozen reference's come from it,
    through the same (training) MoE dispatch as the differentiable forward, so at the first inner update
    the ratio pi / pi_old is exactly 1."""
    fn = tf.function(lambda tokens: token_log_probs(_policy_logits(model, tokens)[0], tokens), jit_compile=jit_compile)
    return lambda tokens: fn(tf.constant(np.asarray(tokens, np.int32))).numpy()

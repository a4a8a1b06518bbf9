"""The criteria bindings of Phase 5 (post-training on verifiable tasks, issue 15) and Phase 6 (serving,
issue 16), kept apart from ``criteria`` so that each module stays readable; ``criteria.BINDINGS`` takes them
in roadmap order. The conventions are ``criteria``'s: the seed's thresholds, evidence kinds, notes that say
what a proxy keeps and what it cannot say about a 671B model."""

from __future__ import annotations

from harness.roadmap.checks import Binding, Check, Comparator, Evidence
from harness.roadmap.checks import measured as _measured

E, C = Evidence, Comparator

_AUTO = "bench_serving.ServingAutoscaleFull."
_COT = "bench_alignment.ChainOfThoughtFull."
_DISTILL = "bench_alignment.DistillationFull."
_FLT = "bench_serving.ServingFaultsFull."
_POST = "bench_alignment.PosttrainFull."
_SRV = "bench_serving.ServingLoadFull."


PHASE_5: tuple[Binding, ...] = (
    _measured("P5.instruction_following",
              Check(_POST + "track_instruction_accuracy", C.GT, 0.85, "fraction", E.PROXY, (("task", "worst"),),
                    note="full tier (--full): the lowest held-out exact match over four instruction types (addition, "
                         "sorting, answer in reverse, answer in brackets) of a 2-layer D=128 DeepSeek-V3 after SFT "
                         "with the loss masked to the response. Keeps: instruction/response SFT, held-out prompts "
                         "never trained on, an exact checker. Cannot say: anything about open-ended instructions, "
                         "human-judged quality or a 671B model's instruction data"),
              *(Check(_POST + "track_instruction_accuracy", C.GT, 0.85, "fraction", E.PROXY, (("task", t),),
                      gate=False, note=f"context: task type {t}") for t in ("add", "sort", "rev", "brk"))),
    _measured("P5.grpo_no_value_fn",
              Check(_POST + "track_grpo_margin", C.GT, 0.0, "reward", E.PROXY,
                    note="full tier: GRPO (group of 8, group-normalised rule rewards, clipped ratio, KL to the "
                         "frozen SFT policy) raises held-out reward over its SFT start by more than the spread "
                         "of 3 seeds. Keeps: the published algorithm on the project's MLA + MoE model with exact "
                         "rewards. Cannot say: RL at 671B scale, thousands of steps, math/code reasoning or "
                         "preference alignment"),
              Check(_POST + "track_value_function_params", C.EQ, 0, "params", E.PROXY,
                    note="no value network: the trained GRPO trainers hold and update nothing beyond the policy's "
                         "own tensors (counted from the objects)"),
              Check(_POST + "track_grpo_reward_gain", C.GT, 0.0, "reward", E.PROXY, gate=False,
                    note="context: the mean gain itself"),
              Check(_POST + "track_grpo_seed_spread", C.LT, 1.0, "reward", E.PROXY, gate=False,
                    note="context: the seed-to-seed spread the gain must exceed")),
    _measured("P5.r1_retention",
              Check(_DISTILL + "track_retention", C.GT, 0.70, "ratio", E.PROXY,
                    note="full tier: the median over 3 D=64 2-layer students, each trained only on a D=128 "
                         "3-layer teacher's step-by-step traces (and logits) for 5-digit x 1-digit "
                         "multiplication, of held-out accuracy over the teacher's. Keeps: distilling traces of "
                         "a stronger model into a weaker one, exact checking. Cannot say: R1 (671B) into "
                         "1.5-70B models on 800k samples of math, code and science"),
              Check(_DISTILL + "track_retention_per_seed", C.GT, 0.70, "ratio", E.PROXY, (("statistic", "min"),),
                    gate=False, note="context: the worst student's retention"),
              Check(_DISTILL + "track_retention_per_seed", C.LT, 1.0, "ratio", E.PROXY, (("statistic", "spread"),),
                    gate=False, note="context: the spread (max - min) of retention over the 3 students"),
              Check(_DISTILL + "track_accuracy", C.GT, 0.0, "fraction", E.PROXY, (("model", "teacher"),),
                    gate=False, note="context: the teacher's own held-out accuracy (retention of nothing is "
                                     "meaningless; at 1.0 retention is the students' accuracy)"),
              Check(_DISTILL + "track_accuracy", C.GT, 0.0, "fraction", E.PROXY, (("model", "student"),),
                    gate=False, note="context: the median student's held-out accuracy")),
    _measured("P5.cot_gain",
              Check(_COT + "track_cot_gain_per_seed", C.GT, 0.25, "ratio", E.PROXY, (("statistic", "median"),),
                    note="full tier: the median over 3 seeds of each seed's relative held-out accuracy gain of the "
                         "same D=64 2-layer model trained with vs without digit-by-digit traces on 5-digit x "
                         "1-digit multiplications (carries 0-8 chained through every digit). The median seed, "
                         "not the pooled mean: one seed whose direct arm failed would carry a pooled or mean gain "
                         "alone. A direct accuracy of 0 is floored at 1/200, so such a seed's gain is a lower "
                         "bound. Keeps: a task that needs several dependent steps, same size, data and steps in "
                         "both arms. Cannot say: CoT on open-ended complex tasks or at 671B"),
              Check(_COT + "track_cot_gain", C.GT, 0.25, "ratio", E.PROXY, gate=False,
                    note="context: the gain of the seed-mean accuracies"),
              Check(_COT + "track_cot_gain_per_seed", C.GT, 0.25, "ratio", E.PROXY, (("statistic", "min"),),
                    gate=False, note="context: the worst seed's gain"),
              Check(_COT + "track_cot_gain_per_seed", C.LT, 1.0, "ratio", E.PROXY, (("statistic", "std"),),
                    gate=False, note="context: the spread of the per-seed gains"),
              *(Check(_COT + "track_accuracy", C.GT, 0.0, "fraction", E.PROXY, (("arm", a),), gate=False,
                      note=f"context: held-out accuracy, {a} arm") for a in ("direct", "cot"))),
)

PHASE_6: tuple[Binding, ...] = (
    _measured("P6.latency_p95",
              Check(_SRV + "track_latency_p95", C.LT, 2.0, "s", E.PROXY,
                    note="the 6-layer bench model on this 2-core CPU host, not V3 on GPUs; one replica, 8 closed-loop "
                         "users, 64-token prompts, 32 tokens per answer, 60 s of locust load (full tier)"),
              Check(_SRV + "track_latency_p50", C.LT, 2.0, "s", E.PROXY, gate=False, note="context: the median"),
              Check(_SRV + "track_latency_p99", C.LT, 2.0, "s", E.PROXY, gate=False, note="context: the tail"),
              Check(_SRV + "track_ttft_p95", C.LT, 2.0, "s", E.PROXY, gate=False,
                    note="context: time to first token, queueing behind the batch in progress included"),
              Check(_SRV + "track_correct", C.EQ, 1.0, "fraction", E.PROXY, gate=False,
                    note="context: every answer under load equals the reference answer of its prompt")),
    _measured("P6.throughput_per_gpu",
              Check(_SRV + "track_tokens_per_second_per_device", C.GT, 1000, "tokens/s", E.PROXY,
                    note="on this host tensorflow-cpu computes on 2 CPU cores, counted as one device: a CPU stand-in "
                         "for a GPU; the same benchmark divides by the GPUs TensorFlow uses where a CUDA build runs "
                         "on a GPU host")),
    _measured("P6.availability",
              Check(_FLT + "track_availability", C.GT, 0.999, "fraction", E.PROXY,
                    note="one SIGKILLed replica of two during a 1,200-request load on one host: a fault density far "
                         "above production's; retries allowed, every request's outcome counted (full tier)"),
              Check(_FLT + "track_requests", C.GE, 1000, "requests", E.PROXY,
                    note="the run holds enough requests for its share to resolve 0.1%"),
              Check(_FLT + "track_retried_share", C.LE, 0.1, "fraction", E.PROXY, gate=False,
                    note="context: requests that only succeeded on a retry"),
              Check(_FLT + "track_replacement_seconds", C.LT, 120, "s", E.PROXY, gate=False,
                    note="context: Ray Serve's replacement of the dead replica")),
    _measured("P6.autoscale_time",
              Check(_AUTO + "track_autoscale_seconds", C.LT, 120, "s", E.PROXY,
                    note="Ray Serve's autoscaler on one 2-core host, the bench model (replica start: TensorFlow "
                         "import, SavedModel load, XLA warm-up); stated autoscaler delays (full tier)"),
              Check(_AUTO + "track_replicas_retired", C.EQ, 1.0, "bool", E.PROXY,
                    note="scaling down works too: the extra replica retires after the load steps down"),
              Check(_AUTO + "track_ready_seconds", C.LT, 120, "s", E.PROXY, gate=False,
                    note="context: load step to two replicas running"),
              Check(_AUTO + "track_retire_seconds", C.LT, 120, "s", E.PROXY, gate=False,
                    note="context: step down to one replica (30 s downscale delay included)")),
)

"""The only part of the harness that needs both frameworks: building either model and moving weights and
tensors between them (``bridge``), and the TF-vs-Flax equivalence suite with its one table of tolerances
(``equivalence``, ``equivalence_fp8``, ``equivalence_train``, the FP8 oracle ``fp8_oracle``).

TensorFlow and JAX are imported lazily inside functions, so importing this package costs neither. It uses
``tf_impl`` and ``reference`` through their public API only. See docs/architecture.md.
"""

"""The asv suite. asv imports this package before any benchmark module, in every benchmark process.

TensorFlow's and XLA's C++ INFO/WARNING logs (cpu_feature_guard, ...) are turned off here, before any TF
or JAX import, so that they do not repeat in every benchmark's output; errors still print. A user who wants
them sets TF_CPP_MIN_LOG_LEVEL=0 (setdefault keeps it). TF's oneDNN start-up line ignores this variable;
``python -m harness run`` shows a benchmark's stderr only when the benchmark failed and keeps every
benchmark's stderr in full under .asv/stderr.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

"""The Flax reference laid out with ``jax.sharding``: expert parallelism by ``shard_map`` and all-to-all."""

from reference.parallel.expert_parallel import ExpertParallel, make_mesh

__all__ = ["ExpertParallel", "make_mesh"]

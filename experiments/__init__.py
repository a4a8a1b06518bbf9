"""Roadmap experiments: runs that turn the models' public API into a criterion's number (benchmark side).

Each module here is called by an asv benchmark in ``benchmarks/``; none is imported by ``tf_impl`` or
``reference``.
"""

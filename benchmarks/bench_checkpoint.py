"""Checkpoint save + load time of the 671B model on one host, extrapolated from the bench model.

Criterion: P4.checkpoint_time ("< 10 min"); the evidence is EXTRAPOLATION. Save and load (hashing
and fsync included) of a bench-config training checkpoint are measured with
``tf_impl.checkpoint.checkpoint_io_for_config``; the throughputs are scaled linearly in bytes to the
671B model's FP8 checkpoint (1 byte per parameter plus one fp32 scale per 128x128 block) with
``tf_impl.checkpoint.extrapolate_checkpoint_time``.
"""

from __future__ import annotations

REPEATS = 1
FP8_BYTES_PER_PARAM = 1 + 4 / (128 * 128)  # e4m3 value + its share of a 128x128 block's fp32 scale


class Checkpoint:
    """Measured save/load throughput of a bench checkpoint, extrapolated to a 671B FP8 checkpoint."""

    timeout = 300

    def track_save_load_seconds_671b(self):
        """P4.checkpoint_time: extrapolated seconds to save then load the 671B FP8 checkpoint."""
        from harness.config import ModelConfig
        from tf_impl.checkpoint import checkpoint_io_for_config, extrapolate_checkpoint_time

        measured = checkpoint_io_for_config(ModelConfig.bench(), repeats=REPEATS)
        scaled = extrapolate_checkpoint_time(measured["save_gb_s"], measured["load_gb_s"],
                                             ModelConfig.v3_671b(), bytes_per_param=FP8_BYTES_PER_PARAM)
        return scaled["extrapolated_save_s"] + scaled["extrapolated_load_s"]

    track_save_load_seconds_671b.unit = "s"
    track_save_load_seconds_671b.pretty_name = "Checkpoint save + load, 671B FP8 (extrapolated)"

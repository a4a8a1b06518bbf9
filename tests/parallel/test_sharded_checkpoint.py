"""The parallel shard writer/reader: atomic, hashed, refuses to overwrite (no devices needed)."""

import os

import numpy as np
import pytest

from harness.io import CheckpointError
from tf_impl.parallel.sharded_checkpoint import _slice, read_shards, write_shards


def _shards(n=4):
    rng = np.random.default_rng(0)
    return [{"rep.param": rng.standard_normal(10).astype(np.float32), "count": np.asarray(r)} for r in range(n)]


def test_shards_round_trip_with_their_meta(tmp_path):
    shards = _shards()
    info = write_shards(str(tmp_path / "c"), shards, {"data_parallel": 1, "expert_parallel": 4})
    assert info["files"] == 4 and info["bytes"] > 4 * 40
    back, meta = read_shards(str(tmp_path / "c"))
    assert meta == {"data_parallel": 1, "expert_parallel": 4}
    for a, b in zip(shards, back):
        assert np.array_equal(a["rep.param"], b["rep.param"])


def test_an_existing_checkpoint_is_not_overwritten_without_asking(tmp_path):
    write_shards(str(tmp_path / "c"), _shards(), {})
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_shards(str(tmp_path / "c"), _shards(2), {})
    write_shards(str(tmp_path / "c"), _shards(2), {}, overwrite=True)
    assert len(read_shards(str(tmp_path / "c"))[0]) == 2
    assert [p for p in os.listdir(tmp_path) if p.startswith(".sharded-")] == []  # no temporary left behind


def test_a_corrupt_shard_is_refused_by_name(tmp_path):
    write_shards(str(tmp_path / "c"), _shards(), {})
    with open(tmp_path / "c" / "shard-00002.safetensors", "r+b") as f:
        f.seek(-3, 2)
        f.write(b"xyz")
    with pytest.raises(CheckpointError, match="shard-00002.safetensors does not match"):
        read_shards(str(tmp_path / "c"))


def test_slices_pad_the_last_rank_and_join_back():
    flat = np.arange(10, dtype=np.float32)
    parts = [_slice(flat, i, 4) for i in range(4)]
    assert [p.size for p in parts] == [3, 3, 3, 3]
    assert np.array_equal(np.concatenate(parts)[:10], flat)

"""Checkpoints: exact round trip, integrity hashes, atomic writes, fallback to the previous good one."""

import os

import numpy as np
import pytest

import tf_impl.checkpoint as ckpt
from harness.config import ModelConfig
from harness.state import num_params
from tf_impl.checkpoint import (
    CheckpointManager,
    CorruptCheckpointError,
    extrapolate_checkpoint_time,
    load_checkpoint,
    measure_checkpoint_io,
    save_checkpoint,
)


def state(seed):
    rng = np.random.default_rng(seed)
    return {"embed.weight": rng.standard_normal((16, 8), dtype=np.float32), "layers.0.ffn.gate.bias": np.zeros(4, np.float32)}


def slots(seed):
    return {"m.0000": np.full((16, 8), seed, np.float32), "count": np.asarray(seed, np.int64)}


def test_round_trip_is_exact(tmp_path):
    meta = {"data_batches": 7, "train_config": {"lr": 0.001}}
    save_checkpoint(tmp_path / "c", state(0), slots(3), step=3, meta=meta)
    c = load_checkpoint(tmp_path / "c")
    assert c.step == 3 and c.meta == meta
    for a, b in ((state(0), c.model_state), (slots(3), c.optimizer_state)):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k])


def test_refuses_to_overwrite_unless_asked(tmp_path):
    save_checkpoint(tmp_path / "c", state(0), step=1)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_checkpoint(tmp_path / "c", state(1), step=2)
    assert load_checkpoint(tmp_path / "c").step == 1
    save_checkpoint(tmp_path / "c", state(1), step=2, overwrite=True)
    assert load_checkpoint(tmp_path / "c").step == 2
    assert os.listdir(tmp_path) == ["c"]


def test_manager_keeps_previous_good_and_prunes_older(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=2)
    for step in (10, 20, 30):
        mgr.save(step, state(step), slots(step))
    assert mgr.steps() == [20, 30]
    assert mgr.latest_good().step == 30


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "drop_manifest", "drop_file", "edit_manifest"])
def test_damaged_checkpoint_is_detected_and_previous_good_used(tmp_path, damage):
    mgr = CheckpointManager(tmp_path)
    mgr.save(1, state(1), slots(1))
    path = mgr.save(2, state(2), slots(2))
    model_file = os.path.join(path, ckpt.MODEL_FILE)
    if damage == "flip_byte":
        data = bytearray(open(model_file, "rb").read())
        data[-3] ^= 0xFF
        open(model_file, "wb").write(bytes(data))
    elif damage == "truncate":
        os.truncate(model_file, os.path.getsize(model_file) // 2)
    elif damage == "drop_manifest":
        os.remove(os.path.join(path, ckpt.MANIFEST_FILE))
    elif damage == "drop_file":
        os.remove(os.path.join(path, ckpt.OPTIMIZER_FILE))
    else:
        mpath = os.path.join(path, ckpt.MANIFEST_FILE)
        text = open(mpath).read().replace('"step": 2', '"step": 5')
        open(mpath, "w").write(text)
    with pytest.raises(CorruptCheckpointError, match=path):
        load_checkpoint(path)
    with pytest.warns(UserWarning, match="skipping bad checkpoint"):
        good = mgr.latest_good()
    assert good.step == 1 and np.array_equal(good.model_state["embed.weight"], state(1)["embed.weight"])


def test_crash_mid_write_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    mgr = CheckpointManager(tmp_path)
    mgr.save(1, state(1), slots(1))
    real, calls = ckpt._write_synced, []

    def crash_on_second_file(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(ckpt, "_write_synced", crash_on_second_file)
    with pytest.raises(OSError, match="disk full"):
        mgr.save(2, state(2), slots(2))
    assert sorted(os.listdir(tmp_path)) == ["step_00000001"]  # no step_00000002, no temp directory
    assert mgr.latest_good().step == 1


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    assert CheckpointManager(tmp_path / "empty").latest_good() is None


def test_throughput_and_671b_extrapolation(tmp_path):
    r = measure_checkpoint_io(state(0), slots(0), directory=tmp_path, repeats=1)
    assert r["bytes"] > 16 * 8 * 4 and r["save_gb_s"] > 0 and r["load_gb_s"] > 0
    ext = extrapolate_checkpoint_time(1.0, 2.0)
    params = num_params(ModelConfig.v3_671b())
    assert ext["params"] == params and ext["bytes"] == 12 * params
    assert ext["extrapolated_save_s"] == pytest.approx(12 * params / 1e9)
    assert ext["extrapolated_load_s"] == pytest.approx(6 * params / 1e9)
    assert os.listdir(tmp_path) == []

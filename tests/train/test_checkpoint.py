"""Checkpoints: exact round trip, integrity hashes, atomic writes, fallback to the previous good one."""

import os

import numpy as np
import pytest

import tf_impl.checkpoint as ckpt
from experiments.checkpoint_io import extrapolate_checkpoint_time, measure_checkpoint_io
from harness.config import ModelConfig
from harness.state import num_params
from tf_impl.checkpoint import CheckpointManager, CorruptCheckpointError, load_checkpoint, save_checkpoint


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


# ---------------------------------------------------------------------------------------- pruning (issue 10, item 1)
def _corrupt(path):
    model_file = os.path.join(path, ckpt.MODEL_FILE)
    data = bytearray(open(model_file, "rb").read())
    data[-3] ^= 0xFF
    open(model_file, "wb").write(bytes(data))


def test_prune_never_deletes_a_fresh_good_save_when_newer_checkpoints_are_corrupt(tmp_path):
    setup = CheckpointManager(tmp_path, keep=3)
    for step in (10, 30, 40):
        setup.save(step, state(step), slots(step))
    mgr = CheckpointManager(tmp_path, keep=2)
    _corrupt(mgr.path_for(30))
    _corrupt(mgr.path_for(40))
    with pytest.warns(UserWarning):
        mgr.save(20, state(20), slots(20))
        good = mgr.latest_good()
    assert good is not None and good.step == 20
    assert {10, 20} <= set(mgr.steps())  # keep=2 verified-good ones survive; the corrupt ones are not counted


def test_prune_counts_only_checkpoints_whose_files_verify(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=2)
    mgr.save(10, state(10), slots(10))
    mgr.save(20, state(20), slots(20))
    _corrupt(mgr.path_for(20))
    with pytest.warns(UserWarning, match=r"step_00000020 .*do\(es\) not verify; not counted towards keep=2, not del"):
        mgr.save(30, state(30), slots(30))
    assert 10 in mgr.steps()  # the second verified-good checkpoint; 20 only looks good by its manifest


def test_a_save_that_does_not_verify_prunes_nothing(tmp_path, monkeypatch):
    mgr = CheckpointManager(tmp_path, keep=1)
    mgr.save(1, state(1), slots(1))
    real = ckpt._write_synced

    def flip_a_byte_of_the_model_file(path, data):  # the disk returns other bytes than were hashed
        if path.endswith(ckpt.MODEL_FILE):
            data = data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:]
        real(path, data)

    monkeypatch.setattr(ckpt, "_write_synced", flip_a_byte_of_the_model_file)
    with pytest.warns(UserWarning, match="does not verify"):
        mgr.save(2, state(2), slots(2))
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="skipping bad checkpoint"):
        assert mgr.latest_good().step == 1


def test_unhealthy_checkpoints_never_push_healthy_ones_out(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=2)
    for step in (1, 2):
        mgr.save(step, state(step), slots(step), meta={"health": {"healthy": True}})
    for step in (3, 4, 5):
        mgr.save(step, state(step), slots(step), meta={"health": {"healthy": False, "problems": ["loss spike"]}})
    assert mgr.steps() == [1, 2, 3, 4, 5]
    mgr.save(6, state(6), slots(6), meta={"health": {"healthy": True}})
    assert mgr.steps() == [2, 3, 4, 5, 6]  # 1 goes only once two healthy ones (2, 6) are newer or equal


# ---------------------------------------------------------------------------------------- set aside (item 10)
def test_saving_over_a_corrupt_checkpoint_sets_it_aside(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=3)
    mgr.save(1, state(1), slots(1))
    mgr.save(2, state(2), slots(2))
    _corrupt(mgr.path_for(2))
    corrupt_bytes = open(os.path.join(mgr.path_for(2), ckpt.MODEL_FILE), "rb").read()
    with pytest.warns(UserWarning, match=r"set aside as step_00000002\.corrupt-1"):
        mgr.save(2, state(22), slots(22))
    assert mgr.load(2).step == 2 and np.array_equal(mgr.load(2).model_state["embed.weight"], state(22)["embed.weight"])
    aside = tmp_path / "step_00000002.corrupt-1"
    assert (aside / ckpt.MODEL_FILE).read_bytes() == corrupt_bytes  # kept byte for byte, not deleted
    _corrupt(mgr.path_for(2))
    with pytest.warns(UserWarning, match=r"corrupt-2"):
        mgr.save(2, state(23), slots(23))
    with pytest.raises(FileExistsError, match="overwrite=True"):  # a good checkpoint is still never replaced silently
        mgr.save(2, state(24), slots(24))


def test_a_version_1_checkpoint_is_refused_with_the_layout_reason(tmp_path):
    # Version 1 stored optimizer moments [O, I]; loading them into [I, O] variables would be wrong, and
    # for square weights silently so. The error says why and how to keep the (still valid) weights.
    import json

    from pathlib import Path

    from tf_impl.checkpoint import CheckpointError

    path = Path(save_checkpoint(tmp_path / "old", state(0), slots(3), step=3))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["version"] = 1
    manifest["manifest_sha256"] = ckpt._manifest_digest(manifest)  # as version-1 code wrote it: intact
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"version 1 stored optimizer moments in the old \[O, I\].*load_state_dict"):
        load_checkpoint(path)

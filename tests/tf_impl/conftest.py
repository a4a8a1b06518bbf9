"""Shared fixtures for the TensorFlow model tests: tiny models built once per session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from harness.config import ModelConfig


@pytest.fixture(scope="session")
def tiny_cfg():
    return ModelConfig.tiny()


@pytest.fixture(scope="session")
def tiny_model(tiny_cfg):
    from tf_impl import Transformer

    return Transformer(tiny_cfg, seed=0)


@pytest.fixture(scope="session")
def eager_model(tiny_cfg, tiny_model):
    """The same weights as ``tiny_model``, run eagerly (no XLA compile per new shape: fast for tiny)."""
    from tf_impl import Transformer

    model = Transformer(tiny_cfg, seed=0, compiled=False)
    model.load_state_dict(tiny_model.state_dict())
    return model


@pytest.fixture(scope="session")
def tokens(tiny_cfg):
    return np.random.default_rng(1).integers(0, tiny_cfg.vocab_size, (2, 12)).astype(np.int32)

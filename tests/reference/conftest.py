"""Shared fixtures: one tiny model per session (compiles are the slow part on 2 cores)."""

import numpy as np
import pytest

from harness.config import ModelConfig
from reference import Transformer


@pytest.fixture(scope="session")
def tiny_cfg() -> ModelConfig:
    return ModelConfig.tiny()


@pytest.fixture(scope="session")
def tiny_model(tiny_cfg) -> Transformer:
    return Transformer(tiny_cfg, seed=0)


@pytest.fixture(scope="session")
def tokens(tiny_cfg) -> np.ndarray:
    return np.random.default_rng(0).integers(0, tiny_cfg.vocab_size, (2, 12)).astype(np.int32)

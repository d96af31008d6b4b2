"""The frozen configs reject impossible values with one line naming the field."""

from __future__ import annotations

import pytest

from ecg_sweep.config import CompressConfig, TrainConfig, split_params
from ecg_sweep.errors import ConfigError


def test_train_config_validation():
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=1)
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ConfigError, match="distill_alpha"):
        TrainConfig(distill_alpha=1.5)


def test_compress_config_validation():
    with pytest.raises(ConfigError, match="threads"):
        CompressConfig(threads=0)
    with pytest.raises(ConfigError, match="onnx_calibration"):
        CompressConfig(onnx_calibration="magic")


def test_split_params_one_name_each():
    model, train = split_params({"depth": 4, "lr": 1e-3, "batch_size": 32, "embed_dim": 64})
    assert model == {"depth": 4, "embed_dim": 64}
    assert train == {"lr": 1e-3, "batch_size": 32}

"""Gateway fixtures: a tiny model exported to ONNX and a TestClient over the ONNX Runtime backend."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from helpers.gateway import settings_for
from helpers.tiny import TINY_OVERRIDES

from export.onnx_export import export_onnx
from server.main import create_app
from strategist.contract import CPU_MODEL_NAME
from strategist.model import ModelConfig, build_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_OVERRIDES)).eval()
    onnx_path = export_onnx(model, tmp_path_factory.mktemp("repo") / CPU_MODEL_NAME / "1" / "model.onnx")
    return model, onnx_path


@pytest.fixture(scope="module")
def client(tiny_model):
    with TestClient(create_app(settings_for(tiny_model[1], max_batch_cars=4))) as c:
        yield c

"""The peer: what a user would otherwise write. FastAPI + the PyTorch model in the same process.

No Triton, no dynamic batching: every request runs its own forward pass (2 rows: as raced and the
clean-air counterfactual). It takes the same /predict JSON, validates it with the same schema, and
builds tensors and answers with the same Data Engine and postprocessing code as the gateway, so the
only difference measured is how the model is served.

    PEER_CHECKPOINT=<checkpoint dir> uvicorn --factory benchmarks.peer_app:create_app
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI

from server.backend import ModelOutputs
from server.postprocess import postprocess
from server.preprocess import preprocess
from server.schemas import PredictRequest
from strategist.model.checkpoint import load_checkpoint

DEFAULT_RACE_LAPS = 57


def create_app() -> FastAPI:
    model, cfg, _ = load_checkpoint(Path(os.environ["PEER_CHECKPOINT"]))
    model.eval()
    names = cfg.input_names  # telemetry, tactical (and context for a timing-context model)
    app = FastAPI(title="in-process PyTorch peer")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # A plain `def` endpoint: FastAPI runs it in its thread pool, the usual way to call blocking
    # PyTorch from FastAPI without stalling the event loop.
    @app.post("/predict")
    def predict(body: PredictRequest) -> dict[str, Any]:
        batch = preprocess([body], default_race_laps=DEFAULT_RACE_LAPS, input_names=names)
        inputs = batch.model_inputs(names)
        with torch.inference_mode():
            pace, risk, tire = model(*(torch.from_numpy(inputs[name]) for name in names))
        outputs = ModelOutputs(pace_quantiles=pace.numpy(), risk_probs=risk.numpy(), tire_health=tire.numpy())
        return postprocess(batch, outputs)[0].model_dump()

    return app

"""FastAPI dependencies: settings, the predictor (backend) and the API-key guard.

All three are `async def` although none awaits: FastAPI runs a plain `def` dependency on its thread
pool, and on /predict that was four thread hand-offs (lock, wake-up, GIL) per request, more CPU than
the work they do (benchmarks/README.md, gateway_cpu).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server.pipeline import Predictor
from server.settings import GatewaySettings

_bearer = HTTPBearer(auto_error=False, description="The gateway's API key (STRATEGIST_API_KEY).")


async def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def get_predictor(request: Request) -> Predictor:
    predictor: Predictor = request.app.state.predictor
    return predictor


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]


def api_key_matches(settings: GatewaySettings, scheme: str, token: str) -> bool:
    """Whether `Authorization: <scheme> <token>` opens the gateway (always, when no key is set)."""
    if settings.api_key is None:
        return True
    expected = settings.api_key.get_secret_value().encode()
    return scheme.lower() == "bearer" and secrets.compare_digest(token.encode(), expected)


async def require_api_key(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries `Authorization: Bearer <STRATEGIST_API_KEY>` (when a key is set)."""
    if settings.api_key is None:
        return
    if credentials is None or not api_key_matches(settings, credentials.scheme, credentials.credentials):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


ApiKeyGuard = Depends(require_api_key)

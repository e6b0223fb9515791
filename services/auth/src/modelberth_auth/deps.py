"""FastAPI dependencies: typed access to what the lifespan put on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from modelberth_auth.metrics import AuthMetrics
from modelberth_auth.oauth import Authority
from modelberth_auth.settings import Settings
from modelberth_core.security import TokenVerifier


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_authority(request: Request) -> Authority:
    """The authorization server logic."""
    authority: Authority = request.app.state.authority
    return authority


def get_verifier(request: Request) -> TokenVerifier:
    """A verifier over this service's own public keys (for introspection and revocation)."""
    verifier: TokenVerifier = request.app.state.verifier
    return verifier


def get_metrics(request: Request) -> AuthMetrics:
    """The auth metrics."""
    metrics: AuthMetrics = request.app.state.auth_metrics
    return metrics


def client_address(request: Request) -> str:
    """The caller's address (the proxy's unless uvicorn trusts it via ``FORWARDED_ALLOW_IPS``)."""
    return request.client.host if request.client else "unknown"


SettingsDep = Annotated[Settings, Depends(get_settings)]
AuthorityDep = Annotated[Authority, Depends(get_authority)]
VerifierDep = Annotated[TokenVerifier, Depends(get_verifier)]
MetricsDep = Annotated[AuthMetrics, Depends(get_metrics)]
AddressDep = Annotated[str, Depends(client_address)]

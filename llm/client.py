"""The one provider code path: the openai SDK's Azure client.

With ``AZURE_OPENAI_ENDPOINT`` set it talks to Azure (API key, or Microsoft Entra ID via
azure-identity when no key is set). Without it, the very same client talks to the
in-process simulator through an httpx transport. The SDK never retries
(``max_retries=0``): the gateway is the only retry loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx2
from openai import AzureOpenAI

from llm.simulator import Simulator, SimulatorTransport

DEFAULT_API_VERSION = "2024-10-21"
DEFAULT_DEPLOYMENT = "gpt-4o-mini"
SIMULATOR_ENDPOINT = "http://llm-simulator.invalid"


@dataclass(frozen=True, kw_only=True)
class ProviderConfig:
    endpoint: str | None = None
    api_key: str | Callable[[], str] | None = None  # a callable: asked on every request
    api_version: str = DEFAULT_API_VERSION
    deployment: str = DEFAULT_DEPLOYMENT
    request_timeout: float = 30.0


def create_client(config: ProviderConfig, simulator: Simulator | None = None) -> AzureOpenAI:
    """Create the SDK client for Azure, or for the simulator when no endpoint is set."""
    if config.endpoint is None:
        transport = SimulatorTransport(simulator or Simulator())
        return AzureOpenAI(
            azure_endpoint=SIMULATOR_ENDPOINT, api_key="simulator",
            api_version=config.api_version, max_retries=0, timeout=config.request_timeout,
            http_client=httpx2.Client(transport=transport),
        )
    if config.api_key:
        return AzureOpenAI(azure_endpoint=config.endpoint, api_key=config.api_key,
                           api_version=config.api_version, max_retries=0,
                           timeout=config.request_timeout)
    from azure.identity import DefaultAzureCredential, get_bearer_token_provider

    provider = get_bearer_token_provider(DefaultAzureCredential(),
                                         "https://cognitiveservices.azure.com/.default")
    return AzureOpenAI(azure_endpoint=config.endpoint, azure_ad_token_provider=provider,
                       api_version=config.api_version, max_retries=0,
                       timeout=config.request_timeout)

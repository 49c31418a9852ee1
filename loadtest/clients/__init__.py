"""Protocol clients: one per API, each turning a request into a `RequestRecord` over a Transport.

Chosen by name (`api:` in bench.yaml) from `CLIENTS`.
"""

from typing import Any

from loadtest.clients.base import StreamingClient
from loadtest.clients.openai import OpenAIClient
from loadtest.clients.tgi import TgiClient

__all__ = ["CLIENTS", "OpenAIClient", "StreamingClient", "TgiClient"]

CLIENTS: dict[str, type[StreamingClient[Any]]] = {"openai": OpenAIClient, "tgi": TgiClient}

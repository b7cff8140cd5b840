"""Python SDK for Regimen's HTTP API (the `regimen` CLI comes with issue 7)."""

from client.sdk import ApiError, Client

__all__ = ["ApiError", "Client"]

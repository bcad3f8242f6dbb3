"""The HTTP routes' published contract: `openapi.json` beside this module, an OpenAPI 3.1
document that the worker serves as `GET /openapi.json`, byte for byte."""

from __future__ import annotations

from importlib import resources

OPENAPI_FILE = "openapi.json"


def openapi_document() -> bytes:
    """The document as kept in the repo (and installed with this package)."""
    return resources.files(__package__).joinpath(OPENAPI_FILE).read_bytes()

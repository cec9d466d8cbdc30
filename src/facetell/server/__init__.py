"""facetell's REST API and web page (FastAPI)."""

from facetell.server.app import create_app

__all__ = ["create_app"]

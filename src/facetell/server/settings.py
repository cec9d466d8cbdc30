"""Server settings: flags, environment (FACETELL_*) and defaults, settled in one place."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from facetell.inference import MAX_FACES


class Settings(BaseSettings):
    """Every knob of `facetell serve`; FACETELL_MAX_UPLOAD_MB=5 and --max-upload-mb 5 agree."""

    model_config = SettingsConfigDict(env_prefix="FACETELL_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)  # 0: any free port, printed at start
    model: Path | None = None  # None: the default bundle shipped with facetell
    detect_faces: bool = True
    max_faces: int = Field(MAX_FACES, ge=1)  # faces judged per image, the most face-like
    max_upload_mb: float = Field(20.0, gt=0, allow_inf_nan=False)
    max_pixels: int = Field(64_000_000, gt=0)
    max_files: int = Field(16, ge=1)  # images per /predict request
    # images per /report request: the web page's "Report (HTML)" sends every image it judged
    # at once (the byte cap still bounds it); as many as one file of a saved review page holds
    max_report_files: int = Field(200, ge=1)
    max_concurrency: int = Field(2, ge=1)
    # how long a request may wait for a free slot
    queue_seconds: float = Field(2.0, ge=0, allow_inf_nan=False)
    api_token: str | None = None  # when set, /api/v1 needs "Authorization: Bearer <token>"
    cors_origins: list[str] = []  # CORS stays off unless origins are listed
    torch_threads: int = Field(2, ge=1)
    # one line per request on stdout (uvicorn's access log: client, method, path, status);
    # off by default, as the address and file names of what was judged may be private
    access_log: bool = False
    # the path a reverse proxy serves facetell under (/facetell): the OpenAPI schema's server
    # address; the page and /docs use relative addresses, so they work under any path
    root_path: str = Field("", pattern=r"^(/[^/?#\s]+)*$")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


@lru_cache
def get_settings() -> Settings:
    return Settings()

"""wxcube: a self-hostable, WeChat-compatible Mini Program retention datacube.

The public surface is small and light to import (no DuckDB here):
``wxcube.client`` (SDK), ``wxcube.cloud`` (wx-server-sdk-style cloud call),
``wxcube.errors`` and ``wxcube.periods``. The engine lives in ``store``, ``index``,
``retention`` and ``ingest``; the server in ``server`` (``create_app(settings)``).
"""

from .errors import APIError, InputError, WxcubeError
from .periods import DAY, MONTH, WEEK, Kind

__version__ = "0.1.0"
__all__ = ["DAY", "MONTH", "WEEK", "APIError", "InputError", "Kind", "WxcubeError", "__version__"]

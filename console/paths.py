"""Locations of the cache, the configuration and the logs, in the platform's own directories."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import platformdirs

APP_NAME = "segops"
CACHE_ENV = "SEGOPS_CACHE"


def default_cache_path() -> Path:
    """Return the cache path: `SEGOPS_CACHE` if set, else `cache.db` in the user data directory."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME)) / "cache.db"


def demo_cache_path() -> Path:
    """Return the demo's own cache, apart from the real one, so the demo never mixes into it."""
    return Path(platformdirs.user_data_dir(APP_NAME)) / "demo.db"


def default_config_path() -> Path:
    """Return `config.toml` in the user configuration directory (it may not exist)."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def log_path() -> Path:
    """Return the log file in the user state directory."""
    return Path(platformdirs.user_state_dir(APP_NAME)) / "segops.log"


def setup_logging() -> Path | None:
    """Send the `segops`, `console` and `store` loggers to the log file and return its path.

    Returns None when the state directory cannot be written: logging is then off, never a crash.
    """
    path = log_path()
    for existing in logging.getLogger("segops").handlers:
        # A second call (such as a test invoking several commands) must not log every line twice.
        if isinstance(existing, logging.FileHandler) and existing.baseFilename == str(path.resolve()):
            return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("segops", "console", "store"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False
    return path

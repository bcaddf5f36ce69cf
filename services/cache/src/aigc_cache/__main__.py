"""Runs the cache service alone: ``python -m aigc_cache``."""

from aigc_cache.app import builder
from aigc_cache.settings import CacheSettings
from aigc_common.runtime import run_service

if __name__ == "__main__":
    run_service("cache", CacheSettings, builder)

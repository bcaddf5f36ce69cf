"""Runs the safety service alone: ``python -m aigc_safety``."""

from aigc_common.runtime import run_service
from aigc_safety.app import builder
from aigc_safety.settings import SafetySettings

if __name__ == "__main__":
    run_service("safety", SafetySettings, builder)

"""Runs the prompt service alone: ``python -m aigc_prompt``."""

from aigc_common.runtime import run_service
from aigc_prompt.app import builder
from aigc_prompt.settings import PromptSettings

if __name__ == "__main__":
    run_service("prompt", PromptSettings, builder)

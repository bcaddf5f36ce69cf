"""Runs the inference service alone: ``python -m aigc_inference``."""

from aigc_common.runtime import run_service
from aigc_inference.app import builder
from aigc_inference.settings import InferenceSettings

if __name__ == "__main__":
    run_service("inference", InferenceSettings, builder)

"""Runs the retrieval service alone: ``python -m aigc_retrieval``."""

from aigc_common.runtime import run_service
from aigc_retrieval.app import builder
from aigc_retrieval.settings import RetrievalSettings

if __name__ == "__main__":
    run_service("retrieval", RetrievalSettings, builder)

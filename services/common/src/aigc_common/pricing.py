"""Prices per model and the cost of token usage, in exact nano units of a currency."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field


class PriceSetting(BaseModel):
    """Price of a model per 1,000 tokens, as configured."""

    currency: str = Field("CNY", min_length=3, max_length=3, description="ISO 4217 currency code.")
    prompt_per_1k: float = Field(0.0, ge=0, description="Price of 1,000 prompt tokens.")
    completion_per_1k: float = Field(0.0, ge=0, description="Price of 1,000 completion tokens.")


def default_prices() -> dict[str, PriceSetting]:
    """Self-hosted SmolLM2 on CPU: a machine-hour price spread over its measured throughput."""
    return {
        "smollm2-135m-instruct": PriceSetting(currency="CNY", prompt_per_1k=0.0002, completion_per_1k=0.0008)
    }


@dataclass(frozen=True, slots=True)
class Price:
    """Price per 1,000 tokens in a currency."""

    currency: str
    prompt_per_1k: float
    completion_per_1k: float

    @classmethod
    def from_setting(cls, s: PriceSetting) -> Price:
        return cls(s.currency, s.prompt_per_1k, s.completion_per_1k)

    def cost_nanos(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Cost in 1e-9 currency units, rounded to the nearest nano."""
        return round((prompt_tokens * self.prompt_per_1k + completion_tokens * self.completion_per_1k) * 1e6)

"""Prices per model and the cost of token usage, in exact nano units of a currency.

A hosted model is priced per 1,000 prompt and completion tokens, as its vendor bills. A self-hosted
model is priced by what its hardware costs per hour and the throughput measured on that hardware
(``loadtests/bench_throughput.py`` prints both figures for the CPU model): at full load an hour
serves ``3600 x tokens_per_second`` tokens of each kind, so a token costs its share of the hour.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field, model_validator


class PriceSetting(BaseModel):
    """Price of a model: per 1,000 tokens, or an hourly hardware price and measured throughput."""

    currency: str = Field("CNY", min_length=3, max_length=3, description="ISO 4217 currency code.")
    prompt_per_1k: float = Field(0.0, ge=0, description="Price of 1,000 prompt tokens (hosted models).")
    completion_per_1k: float = Field(
        0.0, ge=0, description="Price of 1,000 completion tokens (hosted models)."
    )
    hour_price: float | None = Field(
        None,
        ge=0,
        description="Self-hosted: price of one hour of the serving hardware (GPU node or CPU machine).",
    )
    prompt_tokens_per_second: float | None = Field(
        None, gt=0, description="Self-hosted: measured prompt (prefill) throughput of that hardware, at load."
    )
    completion_tokens_per_second: float | None = Field(
        None,
        gt=0,
        description="Self-hosted: measured completion (decode) throughput of that hardware, at load.",
    )

    @model_validator(mode="after")
    def _one_way(self) -> PriceSetting:
        hourly = (self.hour_price, self.prompt_tokens_per_second, self.completion_tokens_per_second)
        if any(v is not None for v in hourly):
            if any(v is None for v in hourly):
                raise ValueError(
                    "a self-hosted price needs hour_price, prompt_tokens_per_second and "
                    "completion_tokens_per_second together"
                )
            if self.prompt_per_1k or self.completion_per_1k:
                raise ValueError("give either per-1k prices or an hourly price with throughput, not both")
        return self


def default_prices() -> dict[str, PriceSetting]:
    """Self-hosted SmolLM2 on a 2-core CPU machine: its hourly price over the throughput that
    ``loadtests/bench_throughput.py`` measured there (prefill ~700 tokens/s, decode ~85 tokens/s)."""
    return {
        "smollm2-135m-instruct": PriceSetting(
            currency="CNY", hour_price=0.30, prompt_tokens_per_second=700.0, completion_tokens_per_second=85.0
        )
    }


@dataclass(frozen=True, slots=True)
class Price:
    """Price per 1,000 tokens in a currency."""

    currency: str
    prompt_per_1k: float
    completion_per_1k: float

    @classmethod
    def from_setting(cls, s: PriceSetting) -> Price:
        if s.hour_price is not None:
            assert s.prompt_tokens_per_second and s.completion_tokens_per_second  # checked by the setting
            per_token_second = s.hour_price / 3600.0
            return cls(
                s.currency,
                per_token_second / s.prompt_tokens_per_second * 1000.0,
                per_token_second / s.completion_tokens_per_second * 1000.0,
            )
        return cls(s.currency, s.prompt_per_1k, s.completion_per_1k)

    def cost_nanos(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Cost in 1e-9 currency units, rounded to the nearest nano."""
        return round((prompt_tokens * self.prompt_per_1k + completion_tokens * self.completion_per_1k) * 1e6)

"""The two kinds of parameter a search space declares, as Optuna's distributions know them.

`CategoricalParam` is Optuna's CategoricalDistribution; `IntParam` is its IntDistribution
(`low`, `high`, `step`, `log`) plus `pow2` (powers of two only, searched as the exponent).
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Base of every model of a user-written file: unknown keys are refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CategoricalParam(Strict):
    """Optuna's CategoricalDistribution: one of `choices`."""

    type: Literal["categorical"] = "categorical"
    choices: list[Union[str, int, float]] = Field(min_length=1, description="Values to choose from.")


class IntParam(Strict):
    """Optuna's IntDistribution (`low`, `high`, `step`, `log`), plus `pow2` for powers of two."""

    type: Literal["int"] = "int"
    low: int = Field(description="Smallest value (inclusive).")
    high: int = Field(description="Largest value (inclusive).")
    step: int = Field(1, ge=1, description="Spacing between values.")
    log: bool = Field(False, description="Sample on a log scale.")
    pow2: bool = Field(False, description="Only powers of two between low and high.")

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high}); swap them")
        if self.pow2:
            for name, v in (("low", self.low), ("high", self.high)):
                if v < 1 or v & (v - 1):
                    raise ValueError(
                        f"{name} is {v} but pow2 needs powers of two (1, 2, 4, ...); "
                        "use the nearest power of two"
                    )
            if self.log or self.step != 1:
                raise ValueError("pow2 cannot be combined with log or step; drop them")
        if self.log and self.low < 1:
            raise ValueError(f"log needs low >= 1, got {self.low}")
        return self

    def values(self) -> list[int]:
        """Every value the parameter can take, in increasing order."""
        if self.pow2:
            return [2**k for k in range(self.low.bit_length() - 1, self.high.bit_length())]
        return list(range(self.low, self.high + 1, self.step))


ParamSpec = Annotated[Union[CategoricalParam, IntParam], Field(discriminator="type")]

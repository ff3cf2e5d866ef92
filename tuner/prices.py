"""Price table (every row with its source) and cost per million inferences.

cost_usd_per_million = hourly price of the resources a configuration holds
                       / (throughput_rps * 3600) * 1e6
CPU: replicas x threads_per_replica vCPUs. FPGA: one board (all its DPU cores are paid for
whether used or not). GPU: the GPUs the replicas hold, replicas x num_gpus each (a whole GPU
each, or 1/k of one when k share it: `tuner.gpu_share.gpu_layout` on the cluster's
GPUs), priced at the row of the card the cluster has (gpu.<device>).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.gpu_share import gpu_layout


class PriceRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    usd_per_hour: float = Field(gt=0)
    unit: str = ""
    source: str = Field(min_length=1)


class _PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prices: dict[str, PriceRow]


@dataclass(frozen=True)
class PriceTable:
    """The price rows, and what gpu prices depend on: the cluster's GPUs and their card.

    Attributes:
        gpus: GPUs in the cluster (sets how replicas share them).
        gpu_device: the card's catalog key, for gpu configs that name no device.
    """

    rows: Mapping[str, PriceRow]
    gpus: float = 1.0
    gpu_device: str | None = None

    def key_for(self, config: TrialConfig) -> str:
        if config.platform == "cpu":
            return "cpu.vcpu"
        if config.platform == "gpu":
            return f"gpu.{config.device or self.gpu_device}"
        return f"{config.platform}.{config.device}"

    def units_for(self, config: TrialConfig) -> float:
        """How many priced units the configuration holds."""
        if config.platform == "cpu":
            return float(config.replicas * config.threads_per_replica)
        if config.platform == "gpu":
            return config.replicas * gpu_layout(config.replicas, max(self.gpus, 1.0)).num_gpus_per_replica
        return 1.0  # fpga: the whole board

    def row(self, key: str) -> PriceRow:
        try:
            return self.rows[key]
        except KeyError:
            raise TunerError(
                f"No price for {key!r}. Known prices: {sorted(self.rows)}. Add one to the "
                f"search space file: prices: {{{key}: {{usd_per_hour: ..., source: '...'}}}}."
            ) from None

    def usd_per_hour(self, config: TrialConfig) -> float:
        return self.units_for(config) * self.row(self.key_for(config)).usd_per_hour

    def cost_usd_per_million(self, config: TrialConfig, throughput_rps: float) -> float:
        if throughput_rps <= 0:
            raise ValueError(f"throughput must be > 0 to price a configuration, got {throughput_rps}")
        return self.usd_per_hour(config) / (throughput_rps * 3600.0) * 1e6

    def to_dict(self) -> dict[str, dict]:
        return {k: v.model_dump() for k, v in sorted(self.rows.items())}


def load_prices(overrides: Mapping[str, object] | None = None) -> PriceTable:
    """The shipped price table with `overrides` (from a search space file) applied."""
    text = resources.files("tuner.catalog").joinpath("prices.yaml").read_text()
    try:
        rows = dict(_PriceFile.model_validate(yaml.safe_load(text)).prices)
    except ValidationError as exc:  # the shipped file is ours: a bug, not user input
        raise RuntimeError(f"shipped price table is invalid: {exc}") from exc
    for key, row in (overrides or {}).items():
        data = row.model_dump() if isinstance(row, BaseModel) else dict(row)  # type: ignore[call-overload]
        data.setdefault("unit", "")
        data["source"] = f"override in search space: {data['source']}"
        rows[key] = PriceRow.model_validate(data)
    return PriceTable(rows)

"""The one typed configuration model, and the one place its defaults live.

Loaded from YAML (``configs/default.yaml`` documents every key); unknown keys are rejected and
numbers are bounded, and a bad value is reported as a ConfigError naming the key and the fix.
Secrets (SMTP password) never live here: they come from the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from analyzer.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemoryDetection(_Section):
    """Rising memory baseline: the troughs of the GC/instance sawtooth climb."""

    trough_window_minutes: int = Field(120, ge=15, le=1440, description="window of the rolling minimum that finds troughs")
    min_slope_per_day: float = Field(0.02, gt=0, le=1, description="smallest trough slope reported, fraction of the limit per day")
    min_rise: float = Field(0.02, gt=0, le=1, description="smallest total trough rise reported, fraction of the limit")
    min_duration_hours: float = Field(6.0, ge=1, le=168, description="shortest climb reported")
    significance: float = Field(0.01, gt=0, lt=0.5, description="p-value of the trend test (autocorrelation-corrected)")


class CreepDetection(_Section):
    """Instance creep: more instances than the load explains."""

    min_excess_fraction: float = Field(0.25, gt=0, le=10, description="excess over the expected instance count")
    min_excess_instances: float = Field(0.75, ge=0, le=1000, description="smallest excess in instances")
    min_duration_hours: float = Field(4.0, ge=0.5, le=168)
    reference_hours: float = Field(24.0, ge=2, le=336, description="hours of reference data used when there is no earlier revision")


class RegressionDetection(_Section):
    """Latency or CPU regression between a revision and the one before it."""

    min_increase: float = Field(0.12, gt=0, le=10, description="relative increase reported (0.12 = +12 %)")
    min_hours: float = Field(3.0, ge=0.5, le=168, description="hours of data needed on each side of the deploy")
    compare_hours: float = Field(24.0, ge=1, le=336, description="hours compared on each side of the deploy")
    significance: float = Field(0.01, gt=0, lt=0.5)


class DetectionConfig(_Section):
    warmup_minutes: int = Field(45, ge=0, le=1440, description="quiet period after each deploy and new instance wave")
    memory: MemoryDetection = MemoryDetection()
    creep: CreepDetection = CreepDetection()
    latency: RegressionDetection = RegressionDetection()
    cpu: RegressionDetection = RegressionDetection(min_increase=0.15)


class PricingConfig(_Section):
    table: str = Field("builtin", description="'builtin' or the path of a price table YAML like configs/prices.yaml")
    committed_use_discount: float = Field(0.0, ge=0, lt=1, description="fraction off (0.17 request-based CUD, 0.28/0.46 flexible CUD)")
    apply_free_tier: bool = Field(False, description="subtract the monthly free tier (it is per billing account, so off by default)")
    default_request_based: bool = Field(True, description="billing mode assumed when a revision's cpu_idle is unknown")
    default_cpu: float = Field(1.0, gt=0, le=64, description="vCPU limit assumed when a revision's limits are unknown")
    default_memory_gib: float = Field(0.5, gt=0, le=64, description="memory limit assumed when unknown")
    overrides: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="per project: {project: {cpu_vcpu_second: x, memory_gib_second: y, ...}}",
    )


class AnalysisConfig(_Section):
    step_seconds: int = Field(300, ge=60, le=3600, description="time step of the analysis table")
    detection: DetectionConfig = DetectionConfig()
    pricing: PricingConfig = PricingConfig()


def format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            lines.append(f"  {where}: unknown key; remove it or check its spelling against configs/default.yaml")
        else:
            lines.append(f"  {where}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def parse_config(model: type[ModelT], data: Any, *, source: str) -> ModelT:
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source),
                          hint="see configs/default.yaml for every key, its bounds and its meaning") from exc


def load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}", hint="check the path") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}", hint="fix the YAML syntax at the line shown") from exc

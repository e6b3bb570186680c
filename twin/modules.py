"""Job classes ("modules" in Lilypad): resource needs, work, runtime and failure models.

Work is measured in **work units**: one unit is one second of the reference machine of the job's
kind (:mod:`twin.hardware`: the 32-vCPU ``cpu_server`` for CPU jobs, an RTX 4090 for GPU jobs).
The instruction count that an RP reports on chain (``instructionCount``) is the job's work in
units, so the job cost is ``C = instructionPrice * units``. (Lilypad's shipped agents report an
instruction count of 1, making the instruction price a price per job; counting work lets the twin
model heterogeneous jobs and count inflation.) A job's work is drawn from a log-normal
distribution (median ``work_median_units``, log-space sigma ``work_sigma``) and rounded up to a
whole unit.

Runtime on a machine: ``ceil(units / speed)`` seconds, where speed is the machine's cpu or gpu
speed for the job's kind. A run fails with ``failure_prob`` (the node produces no result). A
non-deterministic class gives two honest runs different outputs with ``nondeterminism_prob``.

Defaults (:data:`MODULES`) follow public Lilypad modules and typical runtimes:

- ``cowsay``: Lilypad's hello-world module; tiny CPU job, deterministic.
- ``ffmpeg_transcode``: CPU video transcode, ~2 min on 32 vCPU; deterministic.
- ``duckdb_query``: CPU analytics query, ~30 s; deterministic.
- ``sdxl``: Stable Diffusion XL, one 1024x1024 image at 30 steps is ~6-8 s on an RTX 4090
  (public SDXL benchmarks); ~10 GB VRAM; GPU kernels make outputs differ across runs/GPUs.
- ``llama3_8b``: Ollama Llama-3-8B inference (Lilypad ``ollama`` module), ~8 GB VRAM, ~20 s for a
  long completion; sampling makes outputs differ unless seeded and run on identical hardware.
- ``whisper``: speech-to-text of a few minutes of audio, ~4 GB VRAM, ~60 s; nearly deterministic.
- ``lora_finetune``: LoRA fine-tune of an SDXL/LLM adapter, ~20 GB VRAM, ~30 min; non-deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True)
class JobClass:
    name: str
    kind: str  # "cpu" or "gpu": which speed of the machine applies
    cpu_milli: int
    gpu_count: int
    vram_mb: int
    ram_mb: int
    disk_mb: int
    work_median_units: float
    work_sigma: float
    failure_prob: float
    deterministic: bool
    nondeterminism_prob: float  # P(two honest runs differ); 0 for deterministic classes


MODULES: dict[str, JobClass] = {
    m.name: m
    for m in (
        JobClass("cowsay", "cpu", 1_000, 0, 0, 128, 100, 2.0, 0.3, 0.001, True, 0.0),
        JobClass(
            "ffmpeg_transcode", "cpu", 16_000, 0, 0, 8_192, 20_000, 120.0, 0.6, 0.01, True, 0.0
        ),
        JobClass("duckdb_query", "cpu", 8_000, 0, 0, 16_384, 50_000, 30.0, 0.8, 0.005, True, 0.0),
        JobClass("sdxl", "gpu", 4_000, 1, 10_240, 16_384, 20_000, 8.0, 0.3, 0.01, False, 0.3),
        JobClass("llama3_8b", "gpu", 4_000, 1, 8_192, 16_384, 20_000, 20.0, 0.5, 0.01, False, 0.2),
        JobClass("whisper", "gpu", 4_000, 1, 4_096, 8_192, 5_000, 60.0, 0.5, 0.005, False, 0.05),
        JobClass(
            "lora_finetune", "gpu", 8_000, 1, 20_480, 32_768, 50_000, 1800.0, 0.4, 0.03, False, 0.9
        ),
    )
}


def draw_work_units(job: JobClass, rng: np.random.Generator, size: int | None = None):
    """Work of ``size`` jobs of class ``job`` in whole units (>= 1)."""
    x = rng.lognormal(np.log(job.work_median_units), job.work_sigma, size)
    return np.maximum(1, np.ceil(x)).astype(np.int64)


def in_demand(modules: Sequence[str], shares: Mapping[str, float]) -> list[str]:
    """The job classes clients post, as the market draws them: ``market.modules`` when it lists
    any, else those with a positive share in ``market.module_shares``."""
    return list(modules) or [k for k, v in shares.items() if v > 0]


def work_units_range(job: JobClass, coverage: float) -> tuple[int, int]:
    """(lowest, highest) work in whole units of the central ``coverage`` quantiles of ``job``'s
    log-normal work (rounded up, at least 1, as :func:`draw_work_units` rounds)."""
    z = NormalDist().inv_cdf(0.5 + coverage / 2)
    lo, hi = (max(1, math.ceil(job.work_median_units * math.exp(s * job.work_sigma * z)))
              for s in (-1, 1))  # fmt: skip
    return lo, hi


def runtime_s(units: int, speed: float) -> int:
    """Seconds a machine with ``speed`` units/s needs for ``units`` of work (at least 1 s)."""
    if speed <= 0:
        raise ValueError("this machine cannot run this kind of job (speed 0)")
    return max(1, math.ceil(units / speed))

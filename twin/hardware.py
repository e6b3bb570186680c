"""Hardware classes of compute nodes, and drawing a population of machines from them.

A :class:`HardwareClass` is one kind of machine: its resources (milli-CPU, GPU count and model,
VRAM per GPU, RAM, disk, as the v1 solver's hardware spec), a speed factor per kind of work
(relative to the reference machine of that kind, see :mod:`twin.modules`) and a running cost in
wei per second of use.

Defaults (:data:`CATALOGUE`) are typical machines of 2024-2025 with hourly prices converted at
``token_usd`` USD per token (1.0 by default):

- ``cpu_server``: 32 vCPU / 64 GB, like AWS ``c6a.8xlarge`` (on-demand us-east-1 $1.224/h, AWS
  price list 2024). CPU reference machine (cpu speed 1.0); no GPU.
- ``consumer_gpu_small``: RTX 3060 12 GB, 8 vCPU, 32 GB (community-cloud GPU marketplaces such as
  Vast.ai list it at about $0.10/h). GPU speed 0.35 of an RTX 4090 (Stable Diffusion
  throughput benchmarks, e.g. Tom's Hardware's 2024 SD GPU benchmark).
- ``consumer_gpu``: RTX 4090 24 GB, 16 vCPU, 64 GB (about $0.40/h on the same marketplaces).
  GPU reference machine (gpu speed 1.0).
- ``datacenter_gpu``: A100 80 GB SXM, 30 vCPU, 200 GB (Lambda on-demand about $1.79/h, 2024);
  GPU speed 1.2 for inference-sized jobs.
- ``datacenter_gpu_h100``: H100 80 GB SXM, 26 vCPU, 200 GB (Lambda about $2.99/h, 2024);
  GPU speed 2.0.

These are modelling defaults, not measurements of Lilypad nodes; override them by config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class HardwareClass:
    name: str
    cpu_milli: int
    gpu_count: int
    gpu_model: str
    vram_mb: int  # per GPU
    ram_mb: int
    disk_mb: int
    cpu_speed: float  # work units per second on CPU-bound jobs (reference cpu_server = 1.0)
    gpu_speed: float  # work units per second on GPU-bound jobs (reference RTX 4090 = 1.0)
    usd_per_hour: float

    def cost_wei_per_s(self, token_usd: float) -> int:
        """Running cost in wei per second at ``token_usd`` USD per token (integer, rounded down)."""
        return int(self.usd_per_hour / token_usd * 10**18) // SECONDS_PER_HOUR


CATALOGUE: dict[str, HardwareClass] = {
    h.name: h
    for h in (
        HardwareClass("cpu_server", 32_000, 0, "", 0, 65_536, 500_000, 1.0, 0.0, 1.224),
        HardwareClass(
            "consumer_gpu_small", 8_000, 1, "RTX 3060", 12_288, 32_768, 500_000, 0.25, 0.35, 0.10
        ),
        HardwareClass(
            "consumer_gpu", 16_000, 1, "RTX 4090", 24_576, 65_536, 1_000_000, 0.5, 1.0, 0.40
        ),
        HardwareClass(
            "datacenter_gpu", 30_000, 1, "A100 80GB", 81_920, 204_800, 1_000_000, 0.9, 1.2, 1.79
        ),
        HardwareClass(
            "datacenter_gpu_h100",
            26_000,
            1,
            "H100 80GB",
            81_920,
            204_800,
            1_000_000,
            0.8,
            2.0,
            2.99,
        ),
    )
}


@dataclass(frozen=True)
class Fleet:
    """The machines of a population, one row per node (struct of arrays)."""

    class_index: np.ndarray  # int16, index into ``classes``
    classes: tuple[HardwareClass, ...]
    cpu_milli: np.ndarray
    gpu_count: np.ndarray
    vram_mb: np.ndarray
    ram_mb: np.ndarray
    disk_mb: np.ndarray
    cpu_speed: np.ndarray
    gpu_speed: np.ndarray
    cost_wei_per_s: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.class_index)


def draw_fleet(
    n: int,
    shares: dict[str, float],
    rng: np.random.Generator,
    token_usd: float = 1.0,
    catalogue: dict[str, HardwareClass] | None = None,
) -> Fleet:
    """Draw ``n`` machines with class frequencies ``shares`` (normalised; exact counts by largest
    remainder so that small populations still follow the shares, then shuffled with ``rng``)."""
    catalogue = catalogue or CATALOGUE
    names = [k for k, v in shares.items() if v > 0]
    for k in names:
        if k not in catalogue:
            raise ValueError(
                f"hardware.shares: unknown hardware class {k!r}; allowed: {sorted(catalogue)}"
            )
    classes = tuple(catalogue[k] for k in names)
    w = np.array([shares[k] for k in names], dtype=float)
    w = w / w.sum()
    exact = w * n
    counts = np.floor(exact).astype(int)
    rest = n - counts.sum()
    if rest:
        order = np.argsort(-(exact - counts), kind="stable")[:rest]
        counts[order] += 1
    idx = np.repeat(np.arange(len(classes), dtype=np.int16), counts)
    rng.shuffle(idx)
    col = lambda attr, dt: np.array([getattr(classes[i], attr) for i in idx], dtype=dt)  # noqa: E731
    return Fleet(
        class_index=idx,
        classes=classes,
        cpu_milli=col("cpu_milli", np.int64),
        gpu_count=col("gpu_count", np.int64),
        vram_mb=col("vram_mb", np.int64),
        ram_mb=col("ram_mb", np.int64),
        disk_mb=col("disk_mb", np.int64),
        cpu_speed=col("cpu_speed", np.float64),
        gpu_speed=col("gpu_speed", np.float64),
        cost_wei_per_s=np.array(
            [classes[i].cost_wei_per_s(token_usd) for i in idx], dtype=np.int64
        ),
    )

"""Manufacturing cost of one accelerator as a function of its L2 size (for the L2 design sweep).

    die area  = logic_area_mm2 + L2_MiB * sram_mm2_per_mib          (L2 on the compute die)
    dies/wafer = pi (d/2)^2 / A - pi d / sqrt(2 A)                  (standard gross-die estimate)
    yield      = exp(-A * D0)                                        (Poisson defect model)
    die cost   = wafer_usd / (dies/wafer * yield)
    device     = die cost + HBM_GB * hbm_usd_per_gb + package_usd

Every default is either sourced or stated as an assumption in :data:`COST_SOURCES`; the
defaults describe a 910B-class device (7 nm-class process, 64 GB HBM2e, 2.5D package). Cost
grows faster than linearly with area because yield falls, which is what makes a large L2
expensive.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from llmtwin.errors import ConfigurationError

MIB = float(2**20)


@dataclass(frozen=True, slots=True)
class CostModel:
    """Parameters of the device cost model (USD, mm^2, MiB, GB)."""

    sram_mm2_per_mib: float = 0.64
    logic_area_mm2: float = 600.0
    wafer_usd: float = 9346.0
    wafer_diameter_mm: float = 300.0
    defect_density_per_cm2: float = 0.10
    hbm_usd_per_gb: float = 15.0
    package_usd: float = 800.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ConfigurationError(f"cost parameter {f.name} must be >= 0, got {getattr(self, f.name)}")
        if self.wafer_diameter_mm <= 0:
            raise ConfigurationError("cost parameter wafer_diameter_mm must be > 0")

    def die_area_mm2(self, l2_bytes: float) -> float:
        return self.logic_area_mm2 + (l2_bytes / MIB) * self.sram_mm2_per_mib

    def dies_per_wafer(self, area_mm2: float) -> float:
        d = self.wafer_diameter_mm
        return max(0.0, math.pi * (d / 2.0) ** 2 / area_mm2 - math.pi * d / math.sqrt(2.0 * area_mm2))

    def die_yield(self, area_mm2: float) -> float:
        return math.exp(-(area_mm2 / 100.0) * self.defect_density_per_cm2)

    def die_usd(self, l2_bytes: float) -> float:
        area = self.die_area_mm2(l2_bytes)
        good = self.dies_per_wafer(area) * self.die_yield(area)
        if good <= 0:
            raise ConfigurationError(
                f"a {area:.0f} mm^2 die does not fit on a {self.wafer_diameter_mm} mm wafer"
            )
        return self.wafer_usd / good

    def device_usd(self, l2_bytes: float, hbm_bytes: float) -> float:
        """Cost of one accelerator with ``l2_bytes`` of L2 and ``hbm_bytes`` of HBM."""
        return self.die_usd(l2_bytes) + (hbm_bytes / 1e9) * self.hbm_usd_per_gb + self.package_usd

    def with_overrides(self, pairs: dict[str, float]) -> CostModel:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(pairs) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown cost parameter(s) {unknown}; known: {', '.join(sorted(known))}"
            )
        return replace(self, **pairs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


COST_SOURCES: dict[str, str] = {
    "sram_mm2_per_mib": (
        "[S] AMD's 3D V-Cache die holds 64 MiB of L3 in 41 mm^2 on TSMC N7 (AMD, Hot Chips 33 / "
        "ISSCC 2022; not re-checked): 0.64 mm^2/MiB including tags, periphery and wiring. TSMC's "
        "7 nm high-density bitcell (0.027 um^2, IEDM 2016) alone gives 0.23 mm^2/MiB; macros with "
        "periphery reach about half that density, so 0.64 is a real cache, not a bitcell array."
    ),
    "logic_area_mm2": (
        "[E] assumption: non-L2 silicon of a 910B-class die (cores, vector units, HBM PHYs, HCCS, "
        "I/O). Huawei's Ascend 910 (2019) had a 456 mm^2 compute die and a 168 mm^2 I/O die "
        "(Hot Chips 31, not re-checked); the 910B die size is not public."
    ),
    "wafer_usd": (
        "[S] 300 mm TSMC 7 nm wafer, USD 9,346 (CSET, Khan & Mann, 'AI Chips: What They Are and "
        "Why They Matter', 2020, wafer-cost table; 5 nm: USD 16,988). The 910B is said to be "
        "made on a 7 nm-class process."
    ),
    "wafer_diameter_mm": "[V] standard 300 mm wafer",
    "defect_density_per_cm2": (
        "[E] assumption: 0.10 defects/cm^2, a mature 7 nm-class process (TSMC reported about 0.09 "
        "for N7 in 2020 [S]); with a Poisson yield model."
    ),
    "hbm_usd_per_gb": (
        "[E] assumption: USD 15 per GB of HBM2e/HBM3 (industry estimates of 2023-2024 range about "
        "10-20 USD/GB; no primary price list exists)."
    ),
    "package_usd": (
        "[E] assumption: USD 800 for the 2.5D interposer package, substrate, assembly and test "
        "(CoWoS-class; no primary figure)."
    ),
}
"""Where each :class:`CostModel` default comes from."""

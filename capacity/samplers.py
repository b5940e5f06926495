"""Service and latency distributions, in seconds: fixed, log-normal, or measured samples.

Every draw takes the caller's ``random.Random``, so a simulation is deterministic for its seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol


class Sampler(Protocol):
    def sample(self, rng: random.Random) -> float: ...

    def mean(self) -> float: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Fixed:
    value: float

    def sample(self, rng: random.Random) -> float:
        return self.value

    def mean(self) -> float:
        return self.value

    def describe(self) -> str:
        return f"{self.value * 1000:g} ms"


@dataclass(frozen=True)
class LogNormal:
    """Median ``median`` s; ``sigma`` the standard deviation of its logarithm (0.3: p99 ~2x the median)."""

    median: float
    sigma: float

    def sample(self, rng: random.Random) -> float:
        if self.median <= 0:
            return 0.0
        return rng.lognormvariate(math.log(self.median), self.sigma)

    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)

    def describe(self) -> str:
        return f"log-normal, median {self.median * 1000:g} ms, sigma {self.sigma:g}"


@dataclass(frozen=True)
class Empirical:
    """Draws one of the measured ``values`` (a bootstrap of what a run saw)."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("an empirical distribution needs at least one value")

    def sample(self, rng: random.Random) -> float:
        return self.values[int(rng.random() * len(self.values))]

    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    def describe(self) -> str:
        ordered = sorted(self.values)
        return f"measured, {len(ordered)} samples, median {ordered[len(ordered) // 2] * 1000:.1f} ms"


@dataclass(frozen=True)
class Shifted:
    """``base`` plus a constant (a fixed cost in front of a variable one)."""

    base: Sampler
    offset: float

    def sample(self, rng: random.Random) -> float:
        return self.offset + self.base.sample(rng)

    def mean(self) -> float:
        return self.offset + self.base.mean()

    def describe(self) -> str:
        return f"{self.offset * 1000:.1f} ms + {self.base.describe()}"


@dataclass(frozen=True)
class Scaled:
    """``base`` times a factor (a measured distribution, calibrated)."""

    base: Sampler
    factor: float

    def sample(self, rng: random.Random) -> float:
        return self.factor * self.base.sample(rng)

    def mean(self) -> float:
        return self.factor * self.base.mean()

    def describe(self) -> str:
        return f"{self.factor:.2f} x {self.base.describe()}"

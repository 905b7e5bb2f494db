"""Quasi-steady-state lap speed profile: cornering limit, then a forward (acceleration) and a backward
(braking) pass, vectorised over a batch of B laps on one circuit's N-point distance grid.

Grip is a friction circle scaled by downforce: a_max(v) = mu * (g + rho * ClA * v^2 / (2 m)).
 - cornering limit: v^2 * |k| <= a_max(v)  ->  v = sqrt(mu g / (|k| - mu rho ClA / (2 m)))
 - forward:  dv^2/ds = 2 * (min(P / (m v), traction left after cornering) - drag / m)
 - backward: dv^2/ds = 2 * (braking grip left after cornering + drag / m)
Worn tires (lower mu) therefore give lower minimum corner speeds and longer braking zones; dirty air
(lower downforce) mostly costs speed in fast corners; DRS and slipstream (lower drag) add top speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strategist.sim.eras import CarSpec
from strategist.sim.tracks import Track

G = 9.81
V_TOP_CAP = 100.0  # m/s, numerical cap of "unlimited" cornering speed (360 km/h)
V_MIN = 1.0  # m/s, avoids division by zero in P / (m v) and time integration

# modes of each grid point, used to derive Throttle / Brake
MODE_POWER = 0  # accelerating, full throttle
MODE_CORNER = 1  # held at the cornering limit, partial throttle
MODE_BRAKE = 2  # braking-limited
MODE_CAP = 3  # held at an imposed speed (pit lane, safety car), partial throttle


@dataclass
class LapConditions:
    """Per-lap inputs, each [B] unless noted.

    mu_factor     tire grip relative to a fresh reference tire (wear, compound, cold tires)
    aero_factor   downforce relative to clean air (dirty air)
    drag_factor   [B, N] drag relative to clean air (DRS zones, slipstream)
    mass_kg       car + driver + fuel (fuel scaled to the track's mass sensitivity)
    cap_ms        [B, N] imposed speed limit, m/s (np.inf where free)
    v0_ms         speed at s = 0, m/s; NaN = steady state (end speed of the same lap)
    """

    mu_factor: np.ndarray
    aero_factor: np.ndarray
    drag_factor: np.ndarray
    mass_kg: np.ndarray
    cap_ms: np.ndarray
    v0_ms: np.ndarray


def _grip(car: CarSpec, mu: np.ndarray, aero: np.ndarray, mass: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Total tire force available per unit mass, m/s^2 (all [B])."""
    return mu * (G + car.rho * car.cla_m2 * aero * v * v / (2.0 * mass))


def corner_limit(track: Track, car: CarSpec, cond: LapConditions) -> np.ndarray:
    """Maximum steady cornering speed [B, N], m/s."""
    k = np.abs(track.curvature)[None, :]
    mu = (car.mu * cond.mu_factor)[:, None]
    aero_term = mu * car.rho * car.cla_m2 * cond.aero_factor[:, None] / (2.0 * cond.mass_kg[:, None])
    denom = k - aero_term
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(denom > 1e-9, np.sqrt(mu * G / np.maximum(denom, 1e-9)), V_TOP_CAP)
    return np.minimum(np.minimum(v, V_TOP_CAP), cond.cap_ms)


def _forward(track: Track, car: CarSpec, cond: LapConditions, vlim: np.ndarray, v0: np.ndarray) -> np.ndarray:
    n = track.n
    ds = track.length_m / n
    k = np.abs(track.curvature)
    mu = car.mu * cond.mu_factor
    out = np.empty_like(vlim)
    v = np.minimum(v0, vlim[:, 0])
    out[:, 0] = v
    drag_coef = 0.5 * car.rho * car.cda_m2 / cond.mass_kg
    for i in range(n - 1):
        vv = np.maximum(v, V_MIN)
        a_tot = _grip(car, mu, cond.aero_factor, cond.mass_kg, vv)
        a_lat = vv * vv * k[i]
        traction = a_tot * np.sqrt(np.clip(1.0 - (a_lat / a_tot) ** 2, 0.0, 1.0))
        a_x = (
            np.minimum(car.power_w / (cond.mass_kg * vv), traction)
            - drag_coef * cond.drag_factor[:, i] * vv * vv
        )
        v = np.sqrt(np.maximum(v * v + 2.0 * a_x * ds, V_MIN**2))
        v = np.minimum(v, vlim[:, i + 1])
        out[:, i + 1] = v
    return out


def _backward(
    track: Track, car: CarSpec, cond: LapConditions, vlim: np.ndarray, v_end: np.ndarray
) -> np.ndarray:
    n = track.n
    ds = track.length_m / n
    k = np.abs(track.curvature)
    mu = car.mu * cond.mu_factor
    out = np.empty_like(vlim)
    v = np.minimum(v_end, vlim[:, -1])
    out[:, -1] = v
    drag_coef = 0.5 * car.rho * car.cda_m2 / cond.mass_kg
    for i in range(n - 1, 0, -1):
        vv = np.maximum(v, V_MIN)
        a_tot = _grip(car, mu, cond.aero_factor, cond.mass_kg, vv)
        a_lat = vv * vv * k[i]
        braking = a_tot * np.sqrt(np.clip(1.0 - (a_lat / a_tot) ** 2, 0.0, 1.0))
        decel = braking + drag_coef * cond.drag_factor[:, i] * vv * vv
        v = np.sqrt(v * v + 2.0 * decel * ds)
        v = np.minimum(v, vlim[:, i - 1])
        out[:, i - 1] = v
    return out


@dataclass
class SpeedProfile:
    v_ms: np.ndarray  # [B, N] speed at each grid point
    mode: np.ndarray  # [B, N] MODE_* of each point
    vlim_ms: np.ndarray  # [B, N] cornering / cap limit

    def lap_time(self, ds: float) -> np.ndarray:
        """[B] time to cover the grid, s (trapezoid in 1/v)."""
        inv = 1.0 / np.maximum(self.v_ms, V_MIN)
        return ds * (0.5 * (inv[:, :-1] + inv[:, 1:])).sum(axis=1) + ds / np.maximum(self.v_ms[:, -1], V_MIN)


def solve(track: Track, car: CarSpec, cond: LapConditions) -> SpeedProfile:
    """Speed profile for a batch of laps. Steady-state laps (v0 NaN) start at the speed the same lap
    ends with, found by a first forward pass; the line is on a straight, so one pass settles it."""
    vlim = corner_limit(track, car, cond)
    v0 = cond.v0_ms.astype(float).copy()
    steady = np.isnan(v0)
    if steady.any():
        # steady state ignores imposed caps: an in-lap starts at racing speed, an SC lap is slowed at the line
        free = corner_limit(
            track, car, LapConditions(**{**cond.__dict__, "cap_ms": np.full_like(cond.cap_ms, np.inf)})
        )
        guess = _forward(track, car, cond, free, free[:, 0])
        v0[steady] = guess[steady, -1]
    fwd = _forward(track, car, cond, vlim, v0)
    bwd = _backward(track, car, cond, vlim, fwd[:, -1])
    v = np.minimum(fwd, bwd)
    mode = np.full(v.shape, MODE_POWER, dtype=np.int8)
    mode[bwd < fwd - 1e-6] = MODE_BRAKE
    at_limit = v >= vlim - 1e-3
    mode[at_limit & (vlim < V_TOP_CAP - 1e-6)] = MODE_CORNER
    mode[at_limit & (cond.cap_ms <= vlim + 1e-6) & np.isfinite(cond.cap_ms)] = MODE_CAP
    return SpeedProfile(v_ms=v, mode=mode, vlim_ms=vlim)


def default_conditions(track: Track, car: CarSpec, batch: int, fuel_kg: float = 0.0) -> LapConditions:
    """Fresh tires, clean air, no DRS, free track, steady state."""
    return LapConditions(
        mu_factor=np.ones(batch),
        aero_factor=np.ones(batch),
        drag_factor=np.ones((batch, track.n)),
        mass_kg=np.full(batch, car.mass_kg + fuel_kg),
        cap_ms=np.full((batch, track.n), np.inf),
        v0_ms=np.full(batch, np.nan),
    )


@dataclass(frozen=True)
class Sensitivities:
    """Lap-time sensitivities of the physics model on one circuit, used to map the lap-time model's
    terms (seconds) onto physical inputs so telemetry and timing tell the same story.

    ref_time_s     clean lap, fresh tires, no fuel
    s_per_mu       seconds per unit of fractional grip loss (d t / d(1 - mu_factor))
    s_per_aero     seconds per unit of fractional downforce loss
    s_per_kg       seconds per kg of added mass
    """

    ref_time_s: float
    s_per_mu: float
    s_per_aero: float
    s_per_kg: float


def sensitivities(track: Track, car: CarSpec) -> Sensitivities:
    cond = default_conditions(track, car, 4)
    cond.mu_factor[1] = 0.97
    cond.aero_factor[2] = 0.8
    cond.mass_kg[3] += 50.0
    t = solve(track, car, cond).lap_time(track.length_m / track.n)
    return Sensitivities(
        ref_time_s=float(t[0]),
        s_per_mu=float((t[1] - t[0]) / 0.03),
        s_per_aero=float((t[2] - t[0]) / 0.2),
        s_per_kg=float((t[3] - t[0]) / 50.0),
    )

"""Car telemetry: each driven lap's physics speed profile, made to match the lap's timing, turned into
FastF1 car_data channels (Speed, Throttle, Brake, nGear, RPM, DRS) and sampled at ~4 Hz.

How timing and telemetry stay one story: the lap-time model's terms are mapped onto physical inputs
(tire seconds -> grip loss, dirty-air seconds -> downforce loss, fuel -> mass) through the circuit's
sensitivities, the profile is solved, and what is left (car/driver pace, noise, blocking) is a
uniform speed scale of the on-track part so the integrated lap time equals the timing to the ms.
Safety-car laps are instead held under a speed cap found by bisection; pit-lane parts run at 80 km/h
with the standstill as a dwell at the box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strategist.sim import speed_profile as sp
from strategist.sim.eras import CarSpec
from strategist.sim.laptime import RaceSetup
from strategist.sim.race import GREEN, RaceRecord
from strategist.sim.tracks import Track, in_zones

PIT_SPEED_MS = 80.0 / 3.6
SLIPSTREAM_DRAG = 0.12  # drag fraction removed at zero gap, decaying with exp(-gap / 0.5 s)
SAMPLE_DT_S = (0.240, 0.270)


@dataclass
class PitLane:
    entry_m: float  # pit-lane speed limit from here to the line on the in-lap
    exit_m: float  # ... and from the line to here on the out-lap
    box_m: float  # where the car stops


@dataclass
class LapTrace:
    """One lap on the distance grid ([N] each) plus its timing landmarks."""

    t_s: np.ndarray  # time since the lap start at each grid point
    v_kmh: np.ndarray
    throttle: np.ndarray
    brake: np.ndarray
    gear: np.ndarray
    drs: np.ndarray
    box_idx: int  # grid index of the standstill (-1: none)
    standstill_s: float
    sector_s: tuple[float, float, float]
    speed_traps: tuple[float, float, float, float]  # I1, I2, FL, ST km/h
    pit_in_offset_s: float  # time since lap start when entering the pit lane (NaN: no)
    pit_out_offset_s: float


def pit_lane(track: Track, ref_v: np.ndarray, in_loss_s: float, out_loss_s: float) -> PitLane:
    """Place pit entry/exit so that driving the pit lane at 80 km/h costs the race's fitted losses."""
    ds = track.length_m / track.n
    loss_per_pt = ds / PIT_SPEED_MS - ds / np.maximum(ref_v, 1.0)
    cum_in = np.cumsum(loss_per_pt[::-1])
    n_in = int(np.clip(np.searchsorted(cum_in, max(in_loss_s, 0.5)) + 1, 16, track.n // 4))
    cum_out = np.cumsum(loss_per_pt)
    n_out = int(np.clip(np.searchsorted(cum_out, max(out_loss_s - 4.0, 2.0)) + 1, 30, track.n // 3))
    return PitLane(entry_m=track.length_m - n_in * ds, exit_m=n_out * ds, box_m=0.45 * n_out * ds)


def build_traces(
    setup: RaceSetup,
    rec: RaceRecord,
    track: Track,
    car: CarSpec,
    sens: sp.Sensitivities,
    lane: PitLane,
    rng: np.random.Generator,
) -> dict[tuple[int, int], LapTrace]:
    """Telemetry of every driven lap, keyed by (lap index, car index)."""
    li_idx, car_idx = np.where(~np.isnan(rec.cross))
    b = len(li_idx)
    if b == 0:
        return {}
    n, ds, s = track.n, track.length_m / track.n, track.s
    status = rec.status[li_idx]
    gap = np.nan_to_num(rec.gap_ahead[li_idx, car_idx], nan=np.inf, posinf=np.inf)
    tire_s = rec.tire_time[li_idx, car_idx]
    dirty_s = rec.dirty_air[li_idx, car_idx]
    drs_open = rec.drs[li_idx, car_idx]
    pit_in = rec.pit_in[li_idx, car_idx]
    pit_out = rec.pit_out[li_idx, car_idx]
    stand = np.nan_to_num(rec.standstill[li_idx, car_idx])
    target = rec.lap_time[li_idx, car_idx]

    straight = np.abs(track.curvature) < 1.0 / 800.0
    drs_zone = in_zones(s, track.drs_zones)
    slip = SLIPSTREAM_DRAG * np.exp(-np.where(np.isfinite(gap), gap, 99.0) / 0.5)
    drag = 1.0 - slip[:, None] * straight[None, :]
    drag = np.where(drs_open[:, None] & drs_zone[None, :], drag * (1.0 - car.drs_drag_reduction), drag)

    pit_mask = np.zeros((b, n), bool)
    pit_mask[pit_in] |= (s >= lane.entry_m)[None, :]
    pit_mask[pit_out] |= (s <= lane.exit_m)[None, :]
    cap = np.where(pit_mask, PIT_SPEED_MS, np.inf)
    box_idx = int(round(lane.box_m / ds))
    cap[pit_out, box_idx] = sp.V_MIN
    v0 = np.full(b, np.nan)
    v0[li_idx == 0] = sp.V_MIN
    v0[pit_out] = PIT_SPEED_MS
    mu_factor = np.clip(1.0 - tire_s / sens.s_per_mu, 0.75, 1.0)
    cond = sp.LapConditions(
        mu_factor=mu_factor,
        aero_factor=np.clip(1.0 - dirty_s / max(sens.s_per_aero, 1e-6), 0.6, 1.0),
        drag_factor=drag,
        mass_kg=car.mass_kg
        + rec.fuel_kg[li_idx, car_idx] * setup.fuel_sens_s_per_kg / max(sens.s_per_kg, 1e-6),
        cap_ms=cap,
        v0_ms=v0,
    )
    prof = sp.solve(track, car, cond)
    v = prof.v_ms.copy()

    def seg_times(vel: np.ndarray) -> np.ndarray:
        nxt = np.concatenate([vel[:, 1:], vel[:, -1:]], axis=1)
        return ds / np.maximum(0.5 * (vel + nxt), sp.V_MIN)

    seg = seg_times(v)
    t_pit = (seg * pit_mask).sum(axis=1)
    t_track = (seg * ~pit_mask).sum(axis=1)
    budget = target - t_pit - stand  # time the on-track part must take

    # Safety-car / VSC laps: cap the on-track speed (bisection on the cap) instead of scaling.
    slow = (status != GREEN) & (t_track < budget)
    if slow.any():
        lo, hi = np.full(slow.sum(), 5.0), np.full(slow.sum(), sp.V_TOP_CAP)
        vs, ms = v[slow], ~pit_mask[slow]
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            vc = np.where(ms, np.minimum(vs, mid[:, None]), vs)
            tt = (seg_times(vc) * ms).sum(axis=1)
            too_slow = tt > budget[slow]
            lo = np.where(too_slow, mid, lo)
            hi = np.where(too_slow, hi, mid)
        v[slow] = np.where(ms, np.minimum(vs, hi[:, None]), vs)
    # Everything else: uniform scale of the on-track speeds (pace, noise, blocking).
    scale = np.where(slow, 1.0, np.clip(t_track / np.maximum(budget, 1.0), 0.6, 1.6))
    v = np.where(pit_mask, v, v * scale[:, None])
    seg = seg_times(v)
    # Exact match to the timing (absorbs the rare clipped case); the stretch is ~1e-12 otherwise.
    total = seg.sum(axis=1) + stand
    seg *= (target / total)[:, None]

    # Channels on the grid.
    v_next = np.concatenate([v[:, 1:], v[:, -1:]], axis=1)
    accel = (v_next**2 - v**2) / (2.0 * ds)
    mass = cond.mass_kg[:, None]
    drag_acc = 0.5 * car.rho * car.cda_m2 * drag * v * v / mass
    power_frac = (accel + drag_acc) * mass * v / car.power_w
    throttle = np.clip(np.round(power_frac * 100.0 / 0.97), 0, 100)  # >= 97 % of power is full throttle
    brake = accel < -(drag_acc + 2.5)
    # Lift before braking; worn tires -> the driver lifts earlier (0.1 s fresh, up to ~0.4 s).
    lift_s = 0.1 + 4.0 * (1.0 - mu_factor)
    onset = brake & ~np.concatenate([np.zeros((b, 1), bool), brake[:, :-1]], axis=1)
    lift_pts = np.ceil(lift_s[:, None] * v / ds).astype(int)
    for r, c in zip(*np.where(onset), strict=True):
        a = max(c - int(lift_pts[r, c]), 0)
        throttle[r, a:c] = 0
    throttle = np.where(brake, 0, throttle)
    in_pit_slow = pit_mask & (v <= PIT_SPEED_MS + 0.1)
    throttle = np.where(in_pit_slow & ~brake, np.maximum(throttle, 45), throttle)
    v_kmh = v * 3.6
    gear = gear_for(car, v_kmh, throttle > 0)
    drs_code = np.zeros((b, n), np.int8)
    lap_no = li_idx + 1
    disabled = (lap_no < 3) | (status != GREEN)
    drs_code[disabled] = 1
    detect = in_zones(s, tuple(((z0 - 250.0) % track.length_m, z0) for z0, _ in track.drs_zones))
    drs_code[drs_open[:, None] & detect[None, :]] = 8
    drs_code[drs_open[:, None] & drs_zone[None, :]] = 12

    t_cum = np.concatenate([np.zeros((b, 1)), np.cumsum(seg, axis=1)[:, :-1]], axis=1)
    t_cum[pit_out, box_idx + 1 :] += stand[pit_out, None]
    sec_idx = (n // 3, 2 * n // 3)
    # speed traps: intermediate 1 and 2, finish line, and the fastest point of the lap (speed trap)
    trap_idx = (int(0.3 * n), int(0.7 * n), n - 7, int(np.argmax(np.median(prof.v_ms, axis=0))))
    lap_total = seg.sum(axis=1) + stand
    traces: dict[tuple[int, int], LapTrace] = {}
    for k in range(b):
        t = t_cum[k]
        s1, s2 = t[sec_idx[0]], t[sec_idx[1]]
        traces[(int(li_idx[k]), int(car_idx[k]))] = LapTrace(
            t_s=t,
            v_kmh=np.where(np.arange(n) == box_idx, 0.0, v_kmh[k]) if pit_out[k] else v_kmh[k],
            throttle=throttle[k].astype(np.int16),
            brake=brake[k],
            gear=gear[k],
            drs=drs_code[k],
            box_idx=box_idx if pit_out[k] else -1,
            standstill_s=float(stand[k]),
            sector_s=(float(s1), float(s2 - s1), float(lap_total[k] - s2)),
            speed_traps=tuple(float(round(v_kmh[k, j])) for j in trap_idx),  # type: ignore[arg-type]
            pit_in_offset_s=float(t[int(lane.entry_m / ds)]) if pit_in[k] else float("nan"),
            pit_out_offset_s=float(t[min(int(lane.exit_m / ds), n - 1)]) if pit_out[k] else float("nan"),
        )
    return traces


def gear_for(car: CarSpec, v_kmh: np.ndarray, on_power: np.ndarray) -> np.ndarray:
    """Gear along each lap ([B, N] in, [B, N] out): under power the smallest gear below shift_rpm
    (upshifts); off power the gear is only ever lowered, once the lower gear would stay below
    downshift_rpm (the lag of real downshifts under braking)."""
    ratios = np.asarray(car.rpm_per_kmh)

    def smallest_gear(v: np.ndarray, limit: float) -> np.ndarray:
        ok = v[..., None] * ratios <= limit
        return np.where(ok.any(axis=-1), ok.argmax(axis=-1) + 1, len(ratios))

    up = smallest_gear(v_kmh, car.shift_rpm)
    down = smallest_gear(v_kmh, car.downshift_rpm)
    gear = np.empty(v_kmh.shape, dtype=np.int8)
    g = up[:, 0]
    for j in range(v_kmh.shape[1]):
        g = np.where(on_power[:, j], up[:, j], np.minimum(g, down[:, j]))
        gear[:, j] = g
    return gear


def rpm_for(car: CarSpec, v_kmh: np.ndarray, gear: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ratios = np.asarray(car.rpm_per_kmh)
    rpm = v_kmh * ratios[np.clip(gear, 1, len(ratios)) - 1]
    rpm = np.maximum(rpm, car.idle_rpm) + rng.normal(0.0, 70.0, rpm.shape)
    return np.clip(np.round(rpm), 0, 12800).astype(np.int32)


@dataclass
class CarSamples:
    session_s: np.ndarray  # [M] sample times, s (ms resolution)
    speed: np.ndarray
    rpm: np.ndarray
    gear: np.ndarray
    throttle: np.ndarray
    brake: np.ndarray
    drs: np.ndarray


def sample_car(
    laps: list[tuple[float, LapTrace]],
    car: CarSpec,
    race_start_s: float,
    rng: np.random.Generator,
    pre_race_s: float = 20.0,
) -> CarSamples:
    """Concatenate a car's laps ([(lap start session time, trace)], in order) and sample them at the
    FastF1 car_data rate (240-270 ms steps)."""
    times, v, thr, brk, gear, drs = [], [], [], [], [], []
    for start, tr in laps:
        t = start + tr.t_s
        times.append(t)
        v.append(tr.v_kmh)
        thr.append(tr.throttle)
        brk.append(tr.brake)
        gear.append(tr.gear)
        drs.append(tr.drs)
        if tr.box_idx >= 0:
            # dwell at the box: a second point at the same place after the standstill
            j = tr.box_idx
            times.append(np.array([start + tr.t_s[j + 1] - 1e-3]))
            v.append(np.array([0.0]))
            thr.append(np.array([0], np.int16))
            brk.append(np.array([True]))
            gear.append(np.array([1], np.int8))
            drs.append(np.array([tr.drs[j]], np.int8))
    if not times:
        empty = np.zeros(0)
        return CarSamples(
            empty,
            empty,
            empty.astype(int),
            empty.astype(int),
            empty.astype(int),
            empty.astype(bool),
            empty.astype(int),
        )
    t_all = np.concatenate(times)
    order = np.argsort(t_all, kind="stable")
    t_all = t_all[order]
    v_all = np.concatenate(v)[order]
    thr_all = np.concatenate(thr)[order]
    brk_all = np.concatenate(brk)[order]
    gear_all = np.concatenate(gear)[order]
    drs_all = np.concatenate(drs)[order]
    end = laps[-1][0] + laps[-1][1].t_s[-1]
    t0 = race_start_s - pre_race_s
    steps = rng.uniform(SAMPLE_DT_S[0], SAMPLE_DT_S[1], int((end - t0) / SAMPLE_DT_S[0]) + 2)
    ts = np.round(t0 + np.cumsum(steps), 3)
    ts = ts[ts <= end]
    speed = np.interp(ts, t_all, v_all, left=0.0)
    prev = np.clip(np.searchsorted(t_all, ts, side="right") - 1, 0, len(t_all) - 1)
    before = ts < t_all[0]
    throttle = np.where(before, 0, np.round(np.interp(ts, t_all, thr_all.astype(float)))).astype(np.int16)
    brake = np.where(before, True, brk_all[prev])
    g = np.where(before, 1, gear_all[prev]).astype(np.int8)
    # pit-lane and standing-start crawl happen in low gears; keep gear consistent with the speed
    g = np.where(speed < 1.0, np.where(before, 0, 1), g).astype(np.int8)
    d = np.where(before, 1, drs_all[prev]).astype(np.int8)
    rpm = rpm_for(car, speed, np.maximum(g, 1), rng)
    rpm = np.where(g == 0, 0, rpm)
    speed_out = np.round(speed).astype(np.int32)
    return CarSamples(ts, speed_out, rpm, g, throttle, brake.astype(bool), d)

"""Race orchestration: lap by lap for the whole field, with pit stops, SC/VSC and on-track interactions.

Interactions follow TUM's lap-discretised scheme (domain-notes.md 1.4) with the probabilistic pass
of section 2.5: cars are handled front to back in the order they started the lap; a car whose
projected line crossing comes within `MIN_GAP_S` of the car ahead either passes (probability
sigmoid((advantage - threshold) / scale)) or is held up behind it (blocking); both lose a duel
time. Dirty air (a function of the gap at the start of the lap) and DRS (within 1 s, from lap 3,
not within 2 laps of an SC) act on the projected lap time beforehand. Lapped cars are not modelled
to meet the leaders (blue flags make that cost small).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strategist.sim.laptime import (
    COLD_TIRE_S,
    FUEL_MULT_SC,
    FUEL_MULT_VSC,
    SC_LAP_MULT,
    VSC_LAP_MULT,
    WEAR_MULT_SC,
    WEAR_MULT_VSC,
    RaceSetup,
    standstill_s,
)

MIN_GAP_S = 0.5  # closest a car can follow at the line without passing (TUM min_t_dist)
SC_GAP_S = 0.8  # queue spacing behind the safety car (TUM min_t_dist_sc)
DUEL_S = 0.3  # loss of both cars when they fight (TUM t_duel)
LOSER_S = 0.3  # extra loss of the car that is passed (TUM t_overtake_loser)
DRS_WINDOW_S = 1.0

GREEN, SC, VSC = 0, 1, 2


@dataclass
class RaceRecord:
    """Lap-by-lap outcome, arrays [n_laps, n_cars] (row l is lap l+1); NaN/False where not driven."""

    start: np.ndarray  # session time at the start of the lap, s
    cross: np.ndarray  # session time at the end of the lap, s
    lap_time: np.ndarray
    clean_time: np.ndarray  # no noise, no interaction (the oracle)
    traffic_loss: np.ndarray  # dirty air + blocking + duels, s
    overtaken: np.ndarray  # bool: lost a place on track in the lap
    wear: np.ndarray  # tire wear at the end of the lap, virtual laps
    health: np.ndarray  # tire health at the end of the lap, 0..1
    fuel_kg: np.ndarray  # fuel at the start of the lap
    tire_time: np.ndarray  # compound offset + degradation + cold tires of the lap, s
    dirty_air: np.ndarray  # dirty-air loss of the lap, s
    gap_ahead: np.ndarray  # gap to the car ahead at the start of the lap, s (inf: none)
    drs: np.ndarray  # bool: DRS open this lap
    compound: np.ndarray  # index into COMPOUNDS... stored as str object array
    tyre_life: np.ndarray  # laps on this set including this lap
    stint: np.ndarray
    pit_in: np.ndarray  # bool
    pit_out: np.ndarray  # bool
    standstill: np.ndarray  # s, on out-laps
    status: np.ndarray  # GREEN / SC / VSC per lap [n_laps]
    position: np.ndarray  # at the end of the lap (1-based), 0 if not driven
    race_start_s: float
    laps_completed: np.ndarray  # [n_cars]


def simulate_timing(setup: RaceSetup, rng: np.random.Generator, race_start_s: float) -> RaceRecord:
    n_laps, cars = setup.n_laps, setup.entries
    n = len(cars)
    shape = (n_laps, n)
    nan = np.full(shape, np.nan)
    rec = RaceRecord(
        start=nan.copy(),
        cross=nan.copy(),
        lap_time=nan.copy(),
        clean_time=nan.copy(),
        traffic_loss=nan.copy(),
        overtaken=np.zeros(shape, bool),
        wear=nan.copy(),
        health=nan.copy(),
        fuel_kg=nan.copy(),
        tire_time=nan.copy(),
        dirty_air=nan.copy(),
        gap_ahead=nan.copy(),
        drs=np.zeros(shape, bool),
        compound=np.full(shape, "", dtype=object),
        tyre_life=nan.copy(),
        stint=nan.copy(),
        pit_in=np.zeros(shape, bool),
        pit_out=np.zeros(shape, bool),
        standstill=nan.copy(),
        status=np.zeros(n_laps, np.int8),
        position=np.zeros(shape, np.int32),
        race_start_s=race_start_s,
        laps_completed=np.zeros(n, np.int32),
    )
    for first, length, kind in setup.sc_events:
        rec.status[first - 1 : first - 1 + length] = SC if kind == "SC" else VSC

    compound = [e.start_compound for e in cars]
    # soft starters carry the set they qualified on (about three laps of wear)
    wear = np.array([2.0 if e.start_compound == "SOFT" else 0.0 for e in cars])
    age = np.zeros(n, dtype=int)  # laps driven on the set in this race
    stint = np.ones(n, dtype=int)
    fuel = np.full(n, setup.fuel_start_kg)
    plans = [list(e.plan) for e in cars]
    running = np.ones(n, bool)
    pitted_last_lap = np.zeros(n, bool)
    prev_cross = np.full(n, race_start_s)
    # order at the start of lap 1 is the grid
    order = sorted(range(n), key=lambda i: cars[i].grid)
    last_sc_lap = -10

    for li in range(n_laps):
        lap = li + 1
        status = int(rec.status[li])
        if status != GREEN:
            last_sc_lap = lap
        for i, e in enumerate(cars):
            if running[i] and e.retire_lap == lap:
                running[i] = False
        order = [i for i in order if running[i]]
        if not order:
            break
        # gaps at the start of the lap, in running order
        gap = np.full(n, np.inf)
        for k in range(1, len(order)):
            gap[order[k]] = prev_cross[order[k]] - prev_cross[order[k - 1]]
        if lap == 1:
            gap[:] = np.inf

        projected = np.full(n, np.nan)
        clean = np.full(n, np.nan)
        dirty = np.zeros(n)
        interacting = np.zeros(n, bool)
        pit_extra = np.zeros(n)  # pit-lane losses inside this lap's time, s
        pit_in_now = np.zeros(n, bool)
        sc_pit = status != GREEN
        for i in order:
            e = cars[i]
            # pit stop decision: planned lap, or early under SC/VSC when the set is past half its plan
            if plans[i]:
                due = plans[i][0][0]
                if due == lap or (
                    sc_pit and not pitted_last_lap[i] and age[i] >= 0.5 * max(due - (lap - age[i]), 1)
                ):
                    pit_in_now[i] = True
            cold = COLD_TIRE_S if pitted_last_lap[i] else 0.0  # start tires are warmed on the formation lap
            wear_mult = WEAR_MULT_SC if status == SC else WEAR_MULT_VSC if status == VSC else 1.0
            lap_wear = wear_mult * (setup.dirty_air_wear_mult(gap[i]) if status == GREEN else 1.0)
            tire_s = float(setup.tire_time_s(e, compound[i], wear[i] + 0.5 * lap_wear)) + cold
            t = setup.base_time_s + e.pace_deficit_s + tire_s + fuel[i] * setup.fuel_sens_s_per_kg
            if lap == 1:
                t += setup.tum.loss_firstlap_s + (e.grid - 1) * setup.tum.loss_per_gridpos_s + e.start_perf_s
            if pit_in_now[i]:
                pit_extra[i] += max(setup.tum.pit_inlap_sc_s if sc_pit else setup.tum.pit_inlap_s, 0.0)
            if pitted_last_lap[i]:
                stand = standstill_s(rng, e)
                rec.standstill[li, i] = stand
                pit_extra[i] += (setup.tum.pit_outlap_sc_s if sc_pit else setup.tum.pit_outlap_s) + stand
            t += pit_extra[i]
            clean[i] = t
            rec.tire_time[li, i] = tire_s
            rec.fuel_kg[li, i] = fuel[i]
            rec.gap_ahead[li, i] = gap[i]
            wear[i] += lap_wear
            age[i] += 1
            interacting[i] = status == GREEN and lap > 1 and not pit_in_now[i] and not pitted_last_lap[i]
            noise = rng.normal(0.0, e.noise_sigma_s)
            if status != GREEN:
                noise *= 0.3
            drs_open = interacting[i] and lap >= 3 and lap - last_sc_lap > 2 and gap[i] < DRS_WINDOW_S
            if interacting[i]:
                dirty[i] = float(setup.dirty_air_s(gap[i]))
            rec.drs[li, i] = drs_open
            projected[i] = prev_cross[i] + t + noise + dirty[i] + (setup.drs_effect_s if drs_open else 0.0)

        final, overtaken, extra = _resolve(
            setup, rng, order, projected, prev_cross, interacting, pit_extra, status, lap
        )

        for i in order:
            rec.start[li, i] = prev_cross[i]
            rec.cross[li, i] = final[i]
            rec.lap_time[li, i] = final[i] - prev_cross[i]
            rec.clean_time[li, i] = clean[i] if status == GREEN else max(clean[i], rec.lap_time[li, i])
            rec.traffic_loss[li, i] = dirty[i] + extra[i]
            rec.dirty_air[li, i] = dirty[i]
            rec.overtaken[li, i] = overtaken[i]
            rec.compound[li, i] = compound[i]
            rec.tyre_life[li, i] = age[i]
            rec.stint[li, i] = stint[i]
            rec.wear[li, i] = wear[i]
            rec.health[li, i] = float(setup.tire_health(compound[i], wear[i]))
            rec.pit_in[li, i] = pit_in_now[i]
            rec.pit_out[li, i] = pitted_last_lap[i]
            rec.laps_completed[i] = lap
        # state for the next lap
        fuel_mult = FUEL_MULT_SC if status == SC else FUEL_MULT_VSC if status == VSC else 1.0
        for i in order:
            fuel[i] = max(fuel[i] - setup.fuel_per_lap_kg * fuel_mult, 0.0)
            pitted_last_lap[i] = pit_in_now[i]
            if pit_in_now[i]:
                planned, new_compound = plans[i].pop(0)
                if planned > lap and plans[i]:
                    # stopped early under SC: bring the remaining stops forward by half the gain
                    shift = (planned - lap) // 2
                    plans[i] = [(max(p - shift, lap + 3), c) for p, c in plans[i]]
                compound[i], wear[i], age[i] = new_compound, 0.0, 0
                stint[i] += 1
            prev_cross[i] = final[i]
        order = sorted(order, key=lambda i: final[i])
        for pos, i in enumerate(order):
            rec.position[li, i] = pos + 1

    _truncate_at_finish(rec)
    return rec


def _resolve(
    setup: RaceSetup,
    rng: np.random.Generator,
    order: list[int],
    projected: np.ndarray,
    prev_cross: np.ndarray,
    interacting: np.ndarray,
    pit_extra: np.ndarray,
    status: int,
    lap: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Final line crossings, overtaken flags and interaction losses (blocking + duels), [n] each."""
    n = len(projected)
    final = projected.copy()
    overtaken = np.zeros(n, bool)
    extra = np.zeros(n)
    pitting = pit_extra > 0
    if status == SC:
        # The leader follows the safety car; everyone else closes up to the queue at race pace. A car
        # in the pit lane drops back by its pit loss (no longer part of the queue).
        tail = None
        for i in order:
            race_pace = projected[i] - pit_extra[i]
            if tail is None:
                lap_time = max(setup.base_time_s * SC_LAP_MULT, race_pace - prev_cross[i])
                queued = prev_cross[i] + lap_time
            else:
                queued = max(race_pace, tail + SC_GAP_S)
            final[i] = queued + pit_extra[i]
            if not pitting[i]:
                tail = queued
        return final, overtaken, extra
    if status == VSC:
        # Everyone keeps to the VSC delta; no passing; pit losses come on top.
        tail = None
        for i in order:
            delta = setup.base_time_s * VSC_LAP_MULT + abs(float(rng.normal(0.0, 0.25)))
            t = prev_cross[i] + max(projected[i] - pit_extra[i] - prev_cross[i], delta)
            if tail is not None and not pitting[i]:
                t = max(t, tail + 0.2)
            final[i] = t + pit_extra[i]
            if not pitting[i]:
                tail = t
        return final, overtaken, extra
    if lap == 1:
        # Standing start: places change freely, only a minimum spacing at the line.
        new_order = sorted(order, key=lambda i: projected[i])
        for k in range(1, len(new_order)):
            final[new_order[k]] = max(final[new_order[k]], final[new_order[k - 1]] + 0.25)
        grid_pos = {i: k for k, i in enumerate(order)}
        for k, i in enumerate(new_order):
            overtaken[i] = k > grid_pos[i]
        return final, overtaken, extra

    # Green lap: bubble each car (in start order) up through the cars already placed ahead of it.
    placed: list[int] = []
    for i in order:
        k = len(placed)
        placed.append(i)
        while k > 0:
            ahead = placed[k - 1]
            if not (interacting[i] and interacting[ahead]):
                # pit traffic: cars pass freely on the line
                if final[i] < final[ahead]:
                    placed[k - 1], placed[k] = i, ahead
                    k -= 1
                    continue
                break
            if final[i] >= final[ahead] + MIN_GAP_S:
                break
            advantage = final[ahead] + MIN_GAP_S - final[i]  # how much faster it would be, s
            p_pass = 1.0 / (
                1.0 + np.exp(-(advantage - setup.overtake_threshold_s) / setup.era.overtake_scale_s)
            )
            if rng.uniform() < p_pass:
                final[i] += DUEL_S
                extra[i] += DUEL_S
                final[ahead] = max(final[ahead] + DUEL_S + LOSER_S, final[i] + 0.2)
                extra[ahead] = final[ahead] - projected[ahead]
                overtaken[ahead] = True
                placed[k - 1], placed[k] = i, ahead
                k -= 1
                continue
            held = final[ahead] + MIN_GAP_S * float(rng.uniform(0.6, 1.2))
            duel = DUEL_S if advantage > 0.3 else 0.0
            extra[i] += max(held - final[i], 0.0) + duel
            final[i] = max(held, final[i]) + duel
            break
    # A car passed twice in one lap may have been pushed behind a car it is still ahead of in the
    # list: keep the list order monotone with a small spacing.
    for k in range(1, len(placed)):
        a, b = placed[k - 1], placed[k]
        if final[b] < final[a] + 0.05:
            extra[b] += final[a] + 0.05 - final[b]
            final[b] = final[a] + 0.05
    return final, overtaken, extra


def _truncate_at_finish(rec: RaceRecord) -> None:
    """The race ends when the leader completes the distance; the others finish the lap they are on."""
    last = rec.cross[-1]
    if np.all(np.isnan(last)):
        finished_rows = np.where(~np.all(np.isnan(rec.cross), axis=1))[0]
        if len(finished_rows) == 0:
            return
        last = rec.cross[finished_rows[-1]]
    t_end = np.nanmin(last)
    drop = rec.start >= t_end
    for arr in (rec.start, rec.cross, rec.lap_time, rec.clean_time, rec.traffic_loss, rec.wear, rec.health):
        arr[drop] = np.nan
    for arr in (
        rec.fuel_kg,
        rec.tire_time,
        rec.dirty_air,
        rec.gap_ahead,
        rec.tyre_life,
        rec.stint,
        rec.standstill,
    ):
        arr[drop] = np.nan
    rec.overtaken[drop] = False
    rec.drs[drop] = False
    rec.pit_in[drop] = False
    rec.pit_out[drop] = False
    rec.position[drop] = 0
    rec.compound[drop] = ""
    rec.laps_completed = (~np.isnan(rec.cross)).sum(axis=0).astype(np.int32)

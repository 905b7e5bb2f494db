"""Eras: parameter regimes of the rules, so pre-training on one and fine-tuning on another can be tested.

The 2022 rules moved downforce from the upper body to the floor (ground effect). The cars got heavier
(743 kg -> 798 kg minimum mass) and lost far less downforce when following: about 47 % -> 18 % at
10 m behind, 35 % -> 4 % at 20 m (domain-notes.md section 2.3). So in the "2023" era dirty air costs
less lap time and less tire life, and passing needs a smaller pace advantage.
"""

from __future__ import annotations

from dataclasses import dataclass

from strategist.errors import StrategistError


@dataclass(frozen=True)
class CarSpec:
    """Quasi-steady-state car model in race trim.

    Started from TUM laptime-simulation F1_Shanghai.ini (domain-notes 5) and tuned down to race
    conditions (tire temperature window, fuel saving, lift-and-coast) until mean speeds, top speeds
    and minimum speeds matched the real 2023 telemetry at Sakhir, Silverstone, Budapest and Suzuka
    (see docs/realism.md)."""

    mass_kg: float  # minimum mass with driver, without fuel
    power_w: float  # ICE + MGU-K deployment, averaged over a lap
    cda_m2: float  # drag coefficient x frontal area
    cla_m2: float  # lift (downforce) coefficient x area, front + rear
    mu: float  # tire friction coefficient of a fresh reference compound
    rho: float = 1.18  # air density, kg/m^3
    drs_drag_reduction: float = 0.17  # fraction of drag removed with the flap open
    rpm_per_kmh: tuple[float, ...] = (135.0, 98.0, 77.0, 63.0, 53.0, 46.0, 40.5, 36.0)  # gears 1..8
    shift_rpm: float = 11800.0  # upshift point under power
    downshift_rpm: float = 9700.0  # gear kept under braking until rpm falls below this in the lower gear
    idle_rpm: float = 3600.0


@dataclass(frozen=True)
class Era:
    name: str
    car: CarSpec
    # dirty air: lap-time loss A * exp(-gap / g0) (s) for gaps below 2.5 s, and the downforce fraction
    # lost at zero gap (the telemetry side of the same effect)
    dirty_air_a_s: float
    dirty_air_g0_s: float
    # extra tire wear when following: wear rate x (1 + kappa * exp(-gap / g0))
    dirty_air_wear_kappa: float
    # overtaking: logistic P(pass) = sigmoid((advantage - threshold) / scale), in seconds
    overtake_threshold_s: float
    overtake_scale_s: float
    # compound base degradation (s/lap at track severity 1) and usable life (laps at severity 1)
    deg_rate_s: dict[str, float]
    tire_life_laps: dict[str, float]
    compound_offset_s: dict[str, float]  # fresh-tire pace offset against the softest compound
    start_fuel_kg: float
    drs_effect_s: float  # lap-time gain of DRS over all zones (negative), before track scaling


ERAS: dict[str, Era] = {
    "2019": Era(
        name="2019",
        car=CarSpec(mass_kg=743.0, power_w=630e3, cda_m2=1.72, cla_m2=3.8, mu=1.50),
        dirty_air_a_s=0.55,
        dirty_air_g0_s=0.9,
        dirty_air_wear_kappa=0.45,
        overtake_threshold_s=1.9,
        overtake_scale_s=0.28,
        deg_rate_s={"SOFT": 0.075, "MEDIUM": 0.048, "HARD": 0.030},
        tire_life_laps={"SOFT": 20.0, "MEDIUM": 30.0, "HARD": 40.0},
        compound_offset_s={"SOFT": 0.0, "MEDIUM": 0.45, "HARD": 0.9},
        start_fuel_kg=110.0,
        drs_effect_s=-0.55,
    ),
    "2023": Era(
        name="2023",
        car=CarSpec(mass_kg=798.0, power_w=640e3, cda_m2=1.70, cla_m2=3.6, mu=1.50),
        dirty_air_a_s=0.30,
        dirty_air_g0_s=0.6,
        dirty_air_wear_kappa=0.25,
        overtake_threshold_s=1.6,
        overtake_scale_s=0.28,
        deg_rate_s={"SOFT": 0.070, "MEDIUM": 0.045, "HARD": 0.028},
        tire_life_laps={"SOFT": 18.0, "MEDIUM": 28.0, "HARD": 38.0},
        compound_offset_s={"SOFT": 0.0, "MEDIUM": 0.35, "HARD": 0.75},
        start_fuel_kg=110.0,
        drs_effect_s=-0.45,
    ),
}


def get_era(name: str) -> Era:
    try:
        return ERAS[str(name)]
    except KeyError:
        raise StrategistError(f"unknown era {name!r}; choose one of {', '.join(ERAS)}") from None

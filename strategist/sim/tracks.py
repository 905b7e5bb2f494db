"""Circuits: geometry -> distance grid with curvature, straights (DRS zones) and speed-trap points.

Real circuits come from the TUM racetrack database (`<data_root>/tracks/racelines/<Name>.csv`, the
minimum-curvature racing line, else the centreline in `tracks/<Name>.csv`). When the shared data is
absent the simulator still runs on procedurally generated circuits ("Synthetic-1" ... "Synthetic-5"),
defined here in code so tests and CI of a fresh machine need no data files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from strategist.errors import DataError
from strategist.paths import tracks_dir

log = logging.getLogger(__name__)

DS_M = 5.0  # distance step of the simulation grid, m
SYNTHETIC_TRACKS: tuple[str, ...] = tuple(f"Synthetic-{k}" for k in range(1, 6))
# Circuits of the database that are not Formula 1 venues; listed but not in the default calendar.
NON_F1_TRACKS = frozenset({"BrandsHatch", "IMS", "MoscowRaceway", "Norisring", "Oschersleben"})
# Official race-lap counts are ~305 km / lap length; the real layouts' names map to event names here.
EVENT_NAMES: dict[str, str] = {
    "Sakhir": "Bahrain Grand Prix",
    "Catalunya": "Spanish Grand Prix",
    "Silverstone": "British Grand Prix",
    "Budapest": "Hungarian Grand Prix",
    "Suzuka": "Japanese Grand Prix",
    "Melbourne": "Australian Grand Prix",
    "Monza": "Italian Grand Prix",
    "Spa": "Belgian Grand Prix",
    "Spielberg": "Austrian Grand Prix",
    "Montreal": "Canadian Grand Prix",
    "Zandvoort": "Dutch Grand Prix",
    "Austin": "United States Grand Prix",
    "MexicoCity": "Mexico City Grand Prix",
    "SaoPaulo": "Sao Paulo Grand Prix",
    "YasMarina": "Abu Dhabi Grand Prix",
    "Shanghai": "Chinese Grand Prix",
    "Sochi": "Russian Grand Prix",
    "Sepang": "Malaysian Grand Prix",
    "Hockenheim": "German Grand Prix",
    "Nuerburgring": "Eifel Grand Prix",
}


@dataclass(frozen=True)
class Track:
    """A circuit sampled every DS_M metres along the driven line.

    s          [N] distance from the start/finish line, m (s[0] = 0)
    curvature  [N] signed curvature 1/m (the speed model uses its magnitude)
    length_m   lap length, m (s[-1] + DS_M)
    drs_zones  list of (start_m, end_m) on the longest straights
    """

    name: str
    s: np.ndarray
    curvature: np.ndarray
    length_m: float
    drs_zones: tuple[tuple[float, float], ...]
    synthetic: bool

    @property
    def n(self) -> int:
        return len(self.s)


def available_tracks() -> list[str]:
    """Names the simulator accepts: the real circuits found under the shared data, then the synthetic ones."""
    real: list[str] = []
    folder = tracks_dir() / "tracks"
    if folder.exists():
        real = sorted(p.stem for p in folder.glob("*.csv"))
    return real + list(SYNTHETIC_TRACKS)


def default_calendar() -> list[str]:
    """The season's circuits in order: the real F1 venues when the data is there, else the synthetic ones."""
    real = [name for name in available_tracks() if name not in SYNTHETIC_TRACKS and name not in NON_F1_TRACKS]
    return real if real else list(SYNTHETIC_TRACKS)


@lru_cache(maxsize=64)
def load_track(name: str) -> Track:
    """Load (and cache) a circuit by name; see available_tracks()."""
    if name in SYNTHETIC_TRACKS:
        xy = _synthetic_layout(int(name.split("-")[1]))
        return _build_track(name, xy, synthetic=True)
    root = tracks_dir()
    for sub in ("racelines", "tracks"):
        path = root / sub / f"{name}.csv"
        if path.exists():
            return _build_track(name, _read_xy(path), synthetic=False)
    raise DataError(
        f"unknown track {name!r}; available: {', '.join(available_tracks())}",
        file=str(root / "tracks" / f"{name}.csv"),
    )


def _read_xy(path: Path) -> np.ndarray:
    try:
        data = np.loadtxt(path, delimiter=",", comments="#", usecols=(0, 1))
    except ValueError as exc:
        raise DataError(f"cannot parse x_m,y_m columns: {exc}", file=str(path)) from exc
    if data.ndim != 2 or len(data) < 50:
        raise DataError(f"expected at least 50 points of x_m,y_m, got shape {data.shape}", file=str(path))
    return data


def _synthetic_layout(variant: int) -> np.ndarray:
    """A closed circuit-like layout: a random star-shaped polygon (straights) whose vertices are rounded
    off by smoothing (corners; the sharper the vertex, the tighter the corner).

    Each variant has its own fixed generator, so a layout never changes. Lengths come out at
    4-7 km with hairpins, medium and fast corners and long straights.
    """
    rng = np.random.default_rng(1000 + variant)
    n_vertices = int(rng.integers(9, 14))
    angles = np.sort(rng.uniform(0.0, 2.0 * np.pi, n_vertices))
    radii = rng.uniform(0.45, 1.0, n_vertices) * rng.uniform(700.0, 900.0)
    stretch = rng.uniform(1.2, 1.6)
    vx, vy = radii * np.cos(angles) * stretch, radii * np.sin(angles)
    # dense polyline along the polygon edges, 1 m apart
    pts = []
    for k in range(n_vertices):
        x0, y0, x1, y1 = vx[k], vy[k], vx[(k + 1) % n_vertices], vy[(k + 1) % n_vertices]
        m = max(int(np.hypot(x1 - x0, y1 - y0)), 2)
        t = np.arange(m) / m
        pts.append(np.stack([x0 + (x1 - x0) * t, y0 + (y1 - y0) * t], axis=1))
    xy = np.concatenate(pts)
    xy = np.stack([_periodic_smooth(xy[:, 0], 28.0), _periodic_smooth(xy[:, 1], 28.0)], axis=1)
    # start/finish line in the middle of the longest edge
    longest = int(np.argmax([len(p) for p in pts]))
    start = sum(len(p) for p in pts[:longest]) + len(pts[longest]) // 2
    return np.roll(xy, -start, axis=0)


def _periodic_smooth(values: np.ndarray, sigma_pts: float) -> np.ndarray:
    """Gaussian smoothing of a periodic signal (FFT convolution keeps the wrap-around exact)."""
    n = len(values)
    freqs = np.fft.rfftfreq(n)
    kernel = np.exp(-0.5 * (2 * np.pi * freqs * sigma_pts) ** 2)
    return np.fft.irfft(np.fft.rfft(values) * kernel, n)


def _build_track(name: str, xy: np.ndarray, *, synthetic: bool) -> Track:
    # Resample the closed polyline to a uniform DS_M grid along its arc length.
    closed = np.vstack([xy, xy[:1]])
    seg = np.hypot(np.diff(closed[:, 0]), np.diff(closed[:, 1]))
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    length = float(arc[-1])
    n = int(round(length / DS_M))
    s = np.arange(n) * (length / n)
    x = np.interp(s, arc, closed[:, 0])
    y = np.interp(s, arc, closed[:, 1])
    # Heading from smoothed coordinates, curvature = d(heading)/ds; smoothing (~15 m) removes the
    # digitisation noise of the database points that would otherwise create fake kinks.
    x_s, y_s = _periodic_smooth(x, 3.0), _periodic_smooth(y, 3.0)
    dx = np.gradient(np.concatenate([x_s[-2:], x_s, x_s[:2]]))[2:-2]
    dy = np.gradient(np.concatenate([y_s[-2:], y_s, y_s[:2]]))[2:-2]
    heading = np.arctan2(dy, dx)
    ds = length / n
    # Wrapped heading change to the next point (the last point's "next" is the first: closed loop).
    dheading = np.angle(np.exp(1j * (np.roll(heading, -1) - heading)))
    curvature = _periodic_smooth(dheading / ds, 2.0)
    track_len = float(n * ds)
    s = np.arange(n) * ds
    return Track(
        name=name,
        s=s,
        curvature=curvature,
        length_m=track_len,
        drs_zones=_find_drs_zones(s, curvature, track_len),
        synthetic=synthetic,
    )


def _find_drs_zones(s: np.ndarray, curvature: np.ndarray, length: float) -> tuple[tuple[float, float], ...]:
    """The two longest straights (|curvature| < 1/800 m), trimmed: DRS opens 100 m after the exit and
    closes 120 m before the next braking point."""
    straight = np.abs(curvature) < 1.0 / 800.0
    n = len(s)
    if straight.all():
        return ((0.0, length * 0.5),)
    # Rotate so the array starts inside a corner; runs then never wrap around the end.
    start = int(np.argmin(straight))
    rolled = np.roll(straight, -start)
    runs: list[tuple[int, int]] = []
    i = 0
    while i < n:
        if rolled[i]:
            j = i
            while j < n and rolled[j]:
                j += 1
            runs.append((i, j))
            i = j
        else:
            i += 1
    runs.sort(key=lambda r: r[1] - r[0], reverse=True)
    ds = length / n
    zones = []
    for a, b in runs[:2]:
        if (b - a) * ds < 500.0:
            continue
        z0 = ((a + start) * ds + 100.0) % length
        z1 = ((b + start) * ds - 120.0) % length
        zones.append((z0, z1))
    return tuple(zones)


def in_zones(s: np.ndarray, zones: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Boolean mask of grid points inside any (possibly wrapping) zone."""
    mask = np.zeros(len(s), dtype=bool)
    for z0, z1 in zones:
        mask |= (s >= z0) & (s <= z1) if z0 <= z1 else (s >= z0) | (s <= z1)
    return mask

"""`strategist realism`: simulated races vs the real 2023 races, measured by the same code.

Prints the comparison tables, writes <out>/realism_table.md and the plots <out>/img/realism_*.png.
Metric definitions: strategist/sim/realism.py and docs/realism.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

SIDES = ("sim", "real, same circuits", "real, all races")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("realism", help="compare simulated races with the real 2023 races")
    p.add_argument("--sim", required=True, nargs="+", help="simulated race folders or season folders")
    p.add_argument(
        "--real",
        nargs="+",
        default=None,
        help="real race folders or season folders (default: shared f1-2023)",
    )
    p.add_argument("--out", default="docs", help="writes <out>/realism_table.md and <out>/img/realism_*.png")
    p.set_defaults(func=run)


def _fmt(value: float, fmt: str) -> str:
    return "-" if value != value else fmt.format(value)  # NaN -> "-"


def _overtaken_truth_pct(races: list[Any]) -> float:
    """Cross-check for the simulated side: share of green car-laps the simulator flags `Overtaken`."""
    import pandas as pd

    from strategist.sim.realism import green_laps

    flags = [
        green_laps(r).merge(r.truth, on=["Driver", "LapNumber"])["Overtaken"]
        for r in races
        if r.truth is not None
    ]
    return 100.0 * float(pd.concat(flags).astype(bool).mean()) if flags else float("nan")


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from strategist.data.dataset import expand_race_dirs
    from strategist.data.fastf1_reader import read_race
    from strategist.paths import f1_2023_dir
    from strategist.sim.realism import (
        SUMMARY_ROWS,
        SideMetrics,
        SpeedTraces,
        circuit_key,
        compare_traces,
        speed_traces,
    )

    console = Console(width=max(Console().width, 150))  # the tables stay readable in a log
    sim_races = [read_race(d) for d in expand_race_dirs(args.sim)]
    real_paths = [Path(p) for p in args.real] if args.real else [f1_2023_dir()]
    missing = [p for p in real_paths if not p.exists()]
    skip_reason = f"real side skipped: {', '.join(map(str, missing))} not found" if missing else ""
    real_races = [] if missing else [read_race(d) for d in expand_race_dirs(real_paths)]
    if skip_reason:
        console.print(f"[yellow]{skip_reason}[/yellow]")

    sim_keys = {circuit_key(r.track) for r in sim_races}
    sides: dict[str, SideMetrics] = {name: SideMetrics() for name in SIDES}
    for r in sim_races:
        sides["sim"].add(r)
    for r in real_races:
        sides["real, all races"].add(r)
        if circuit_key(r.track) in sim_keys:
            sides["real, same circuits"].add(r)
    summaries = {name: m.summary() for name, m in sides.items()}

    # Speed traces at the circuits both sides have with telemetry.
    traces: dict[str, dict[str, SpeedTraces]] = {}
    names: dict[str, str] = {}
    for side, races in (("sim", sim_races), ("real", real_races)):
        for r in races:
            key = circuit_key(r.track)
            if key not in sim_keys or not r.has_telemetry:
                continue
            names.setdefault(key, r.track)
            traces.setdefault(key, {}).setdefault(side, SpeedTraces()).extend(speed_traces(r))
    pairs = {
        k: v
        for k, v in sorted(traces.items())
        if "sim" in v and "real" in v and v["sim"].n_laps and v["real"].n_laps
    }
    comparisons = {k: compare_traces(v["sim"], v["real"]) for k, v in pairs.items()}

    # --- tables ---
    summary_table = Table(title="Race metrics, same code on both sides")
    summary_table.add_column("metric")
    for name in SIDES:
        summary_table.add_column(name, justify="right")
    md = ["| metric | " + " | ".join(SIDES) + " |", "|---|" + "---:|" * len(SIDES)]
    for key, label, fmt in SUMMARY_ROWS:
        cells = [_fmt(summaries[name][key], fmt) for name in SIDES]
        summary_table.add_row(escape(label), *cells)  # '[s]' is not rich markup
        md.append(f"| {label} | " + " | ".join(cells) + " |")
    console.print(summary_table)
    truth_pct = _overtaken_truth_pct(sim_races)
    check = f"cross-check: simulator truth `Overtaken` on green car-laps: {_fmt(truth_pct, '{:.2f}')} %"
    console.print(escape(check))

    speed_cols: tuple[str, ...] = ("circuit", "laps sim/real", "r", "best shift [lap]", "r at shift")
    speed_cols += ("lap time sim-real [s]", "top speed sim-real [km/h]", "min speed sim-real [km/h]")
    speed_table = Table(title="Speed trace, median over green laps")
    for col in speed_cols:
        speed_table.add_column(escape(col), justify="left" if col == "circuit" else "right")
    md += ["", "| " + " | ".join(speed_cols) + " |", "|---|" + "---:|" * (len(speed_cols) - 1)]
    for key, c in comparisons.items():
        cells = [
            f"{names[key]}",
            f"{pairs[key]['sim'].n_laps}/{pairs[key]['real'].n_laps}",
            f"{c.correlation:.3f}",
            f"{c.best_shift:+.3f}",
            f"{c.best_correlation:.3f}",
            f"{c.lap_time_diff_s:+.2f}",
            f"{c.top_speed_diff_kmh:+.1f}",
            f"{c.min_speed_diff_kmh:+.1f}",
        ]
        speed_table.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    if comparisons:
        console.print(speed_table)
    else:
        console.print("no circuit with telemetry on both sides: no speed-trace comparison")

    # --- files ---
    out = Path(args.out)
    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    notes = [check]
    if skip_reason:
        notes.append(skip_reason)
    (out / "realism_table.md").write_text("\n".join(md + [""] + [f"{n}\n" for n in notes]))
    written = _plot_distributions(sides, img / "realism_distributions.png")
    for key in comparisons:
        path = img / f"realism_speed_{key}.png"
        _plot_speed(names[key], pairs[key], comparisons[key].correlation, path)
        written.append(path)
    console.print(f"wrote {out / 'realism_table.md'} and {', '.join(str(p) for p in written)}")
    return 0


def _plot_distributions(sides: dict[str, Any], path: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = (
        (
            "stint residual [s]",
            lambda m: np.concatenate([f.residuals for f in m.fits]) if m.fits else [],
            (-3, 3),
        ),
        ("stint slope [s/lap]", lambda m: [f.slope_s_per_lap for f in m.fits], (-0.4, 0.6)),
        ("pit loss [s]", lambda m: m.pit_losses, (10, 45)),
    )
    for ax, (title, values, span) in zip(axes, panels, strict=True):
        for name in ("sim", "real, same circuits"):
            data = np.clip(np.asarray(values(sides[name]), dtype=float), *span)
            if data.size:
                ax.hist(data, bins=40, range=span, density=True, histtype="step", lw=1.6, label=name)
        ax.set_xlabel(title + " (clipped to the axis)")
        ax.set_yticks([])
    if axes[0].get_legend_handles_labels()[0]:  # a tiny race may have no stint long enough
        axes[0].legend()
    fig.suptitle("Simulated vs real 2023 races at the same circuits")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]


def _plot_speed(name: str, pair: dict[str, Any], correlation: float, path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(10, 3.8))
    for side, color in (("real", "tab:red"), ("sim", "tab:blue")):
        q25, q50, q75 = pair[side].quantiles()
        x = (np.arange(q50.size) + 0.5) / q50.size
        ax.fill_between(x, q25, q75, color=color, alpha=0.2, lw=0)
        ax.plot(x, q50, color=color, lw=1.4, label=f"{side} median, {pair[side].n_laps} green laps")
    ax.set_xlabel("lap distance fraction")
    ax.set_ylabel("speed [km/h]")
    ax.set_title(f"{name}: speed trace, sim vs real 2023 (band: quartiles), r = {correlation:.3f}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

"""Turn scored results into the markdown report and the JSON file of one evaluation run."""

from __future__ import annotations

import json
import math
from pathlib import Path

from strategist.contract import RISK_CLASSES
from strategist.evaluate.scoring import REGIMES, check_targets


def format_value(value: float | int | None, digits: int = 3) -> str:
    """A number for a markdown table: fixed digits, integers as they are, — for missing or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pace_table(results: dict[str, dict], subset: str = "all") -> str:
    header = [
        "forecaster",
        "n",
        "pinball P10",
        "P50",
        "P90",
        "mean",
        "P50 MAE s",
        "P10-P90 cov.",
        "width s",
        "crossings",
    ]
    rows = []
    for name, r in results.items():
        m = r.get("pace", {}).get(subset)
        if not m:
            continue
        rows.append(
            [name, format_value(m.get("n"))]
            + [
                format_value(m.get(k))
                for k in ("pinball_p10", "pinball_p50", "pinball_p90", "pinball_mean", "mae_p50")
            ]
            + [
                format_value(m.get("coverage_p10_p90")),
                format_value(m.get("width_p10_p90")),
                format_value(m.get("crossing_rate")),
            ]
        )
    return markdown_table(header, rows)


def regime_table(results: dict[str, dict]) -> str:
    """P50 MAE / mean pinball / coverage per regime, one row per forecaster."""
    present = [g for g in REGIMES if any(g in r.get("pace", {}) for r in results.values())]
    header = ["forecaster"] + [f"{g} (n, MAE, pinball, cov.)" for g in present]
    rows = []
    for name, r in results.items():
        pace = r.get("pace")
        if not pace:
            continue
        cells = [name]
        for g in present:
            m = pace.get(g)
            cells.append(
                "—"
                if not m
                else f"{m['n']}, {format_value(m['mae_p50'])}, {format_value(m['pinball_mean'])}, {format_value(m.get('coverage_p10_p90'), 2)}"
            )
        rows.append(cells)
    return markdown_table(header, rows)


def risk_table(results: dict[str, dict]) -> str:
    header = [
        "forecaster",
        "n",
        "base rate",
        "log loss",
        "Brier",
        "Brier skill",
        "ROC-AUC",
        "PR-AUC",
        "ECE",
    ] + [f"AUC {c}" for c in RISK_CLASSES[1:]]
    rows = []
    for name, r in results.items():
        m = r.get("risk")
        if not m:
            continue
        rows.append(
            [name, format_value(m.get("n"))]
            + [
                format_value(m.get(k))
                for k in ("base_rate", "log_loss", "brier", "brier_skill", "roc_auc", "pr_auc", "ece")
            ]
            + [format_value(m.get(f"roc_auc_{c}")) for c in RISK_CLASSES[1:]]
        )
    return markdown_table(header, rows)


def tire_table(results: dict[str, dict]) -> str:
    rows = [
        [
            name,
            format_value(r["tire"].get("n")),
            format_value(r["tire"].get("rmse")),
            format_value(r["tire"].get("mae")),
        ]
        for name, r in results.items()
        if r.get("tire", {}).get("n")
    ]
    return markdown_table(["forecaster", "n", "RMSE", "MAE"], rows)


def targets_table(results: dict[str, dict], model_name: str) -> str:
    rows = []
    for subset in ("all", "clean"):
        for check in check_targets(results, model_name, subset):
            verdict = {True: "reached", False: "missed", None: "—"}[check["reached"]]
            rows.append(
                [f"{check['target']} ({subset} laps)", check["goal"], format_value(check["value"]), verdict]
            )
    return markdown_table(["target", "goal", "measured", "verdict"], rows)


def markdown_report(
    results: dict[str, dict], *, model_name: str, title: str, context: list[str], simulated: bool
) -> str:
    """The whole report: context lines, then targets, pace (all laps, per regime), risk, tire.

    The targets are defined on simulated races (they need the noise floor and true tire health), so
    a report on real races leaves them out and labels tire health as scored against a proxy.
    """
    parts = [f"# {title}", "", *[f"- {line}" for line in context], ""]
    if simulated and model_name in results:
        parts += [
            "## Targets (simulated races of held-out circuits)",
            "",
            targets_table(results, model_name),
            "",
        ]
    parts += [
        "## Pace corridor (fuel-corrected next lap, all laps)",
        "",
        pace_table(results),
        "",
        "## Pace by regime",
        "",
        regime_table(results),
        "",
        "## Bad-lap risk (bad = traffic loss or overtaken)",
        "",
        risk_table(results),
        "",
    ]
    tire = tire_table(results)
    if tire.count("\n") > 1:
        heading = (
            "## Tire health"
            if simulated
            else "## Tire health against the tyre-life proxy (real races have no truth)"
        )
        parts += [heading, "", tire, ""]
    return "\n".join(parts)


def _jsonable(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def write_json(path: Path, payload: dict) -> None:
    """JSON with NaN written as null (strict JSON has no NaN)."""
    path.write_text(json.dumps(_jsonable(payload), indent=2, sort_keys=False))

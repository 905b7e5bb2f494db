"""Does a reduced-precision engine give the same answers as the FP32 reference?

Raw element-wise tolerances are not the whole story for FP16, so the check is task-level: the pace
corridor within a few hundredths of a second, the same most likely risk class, tire health within
a percent, nothing non-finite, quantiles still ordered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from strategist import contract


@dataclass(frozen=True)
class Fp16Tolerance:
    """Pass marks for FP16 (TensorRT, or the mixed-precision ONNX) against FP32 ONNX Runtime."""

    pace_abs_s: float = 0.05  # s; timing screens show 0.001 s, but lap-time noise is ~0.1-0.3 s
    risk_prob_abs: float = 0.02  # probability units
    min_risk_argmax_agreement: float = 0.995
    tire_abs: float = 0.01  # health units (0..1)
    quantile_order_slack_s: float = 1e-3  # P10 <= P50 <= P90 up to this rounding


@dataclass
class Fp16ParityReport:
    n_samples: int
    pace_max_abs_s: float
    risk_max_abs: float
    risk_argmax_agreement: float
    tire_max_abs: float
    all_finite: bool
    quantiles_ordered: bool
    tolerance: Fp16Tolerance
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def compare_fp16(
    reference: tuple[np.ndarray, ...],
    candidate: tuple[np.ndarray, ...],
    tolerance: Fp16Tolerance | None = None,
) -> Fp16ParityReport:
    """Compare (pace_quantiles [N,3], risk_probs [N,3], tire_health [N,1]) of two runs on the same inputs."""
    tol = tolerance or Fp16Tolerance()
    ref_pace, ref_risk, ref_tire = (np.asarray(a, dtype=np.float64) for a in reference)
    pace, risk, tire = (np.asarray(a, dtype=np.float64) for a in candidate)
    for name, a, b in zip(
        (contract.OUTPUT_PACE, contract.OUTPUT_RISK, contract.OUTPUT_TIRE),
        (ref_pace, ref_risk, ref_tire),
        (pace, risk, tire),
        strict=True,
    ):
        if a.shape != b.shape:
            raise ValueError(f"output '{name}': reference shape {a.shape}, candidate {b.shape}")
    all_finite = bool(np.isfinite(pace).all() and np.isfinite(risk).all() and np.isfinite(tire).all())
    report = Fp16ParityReport(
        n_samples=int(ref_pace.shape[0]),
        pace_max_abs_s=float(np.abs(pace - ref_pace).max()),
        risk_max_abs=float(np.abs(risk - ref_risk).max()),
        risk_argmax_agreement=float(np.mean(risk.argmax(axis=1) == ref_risk.argmax(axis=1))),
        tire_max_abs=float(np.abs(tire - ref_tire).max()),
        all_finite=all_finite,
        quantiles_ordered=bool((np.diff(pace, axis=1) >= -tol.quantile_order_slack_s).all()),
        tolerance=tol,
    )
    checks = (
        (report.all_finite, "non-finite values (NaN/inf) in the outputs"),
        (report.quantiles_ordered, "pace quantiles out of order (P10 <= P50 <= P90 broken)"),
        (
            report.pace_max_abs_s <= tol.pace_abs_s,
            f"pace max abs diff {report.pace_max_abs_s:.4g} s > {tol.pace_abs_s}",
        ),
        (
            report.risk_max_abs <= tol.risk_prob_abs,
            f"risk max abs diff {report.risk_max_abs:.4g} > {tol.risk_prob_abs}",
        ),
        (
            report.risk_argmax_agreement >= tol.min_risk_argmax_agreement,
            f"risk argmax agreement {report.risk_argmax_agreement:.4f} < {tol.min_risk_argmax_agreement}",
        ),
        (
            report.tire_max_abs <= tol.tire_abs,
            f"tire health max abs diff {report.tire_max_abs:.4g} > {tol.tire_abs}",
        ),
    )
    report.failures = [message for passed, message in checks if not passed]
    return report

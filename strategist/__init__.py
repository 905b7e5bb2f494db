"""Virtual Strategist: next-lap pace corridor, bad-lap risk and tire health from F1 telemetry."""

__version__ = "0.1.0"

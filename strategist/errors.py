"""Errors meant for people: each names what is wrong (file, driver, lap, field, value)."""

from __future__ import annotations


class StrategistError(Exception):
    """Base class for errors the CLI prints without a traceback."""


class DataError(StrategistError, ValueError):
    """Bad input data: the message names the file, driver, lap and field where known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        driver: str | None = None,
        lap: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file, self.driver, self.lap, self.field = file, driver, lap, field
        where = ", ".join(
            f"{k} {v}"
            for k, v in (("file", file), ("driver", driver), ("lap", lap), ("field", field))
            if v is not None
        )
        super().__init__(f"{where}: {message}" if where else message)


class StackSizeError(StrategistError, ValueError):
    """A lap stack whose size differs from the model's n_lap_context."""

"""One error type for everything a user can fix.

A `TunerError` message names what was wrong, echoes the value, states the rule and gives
the fix. The CLI prints it without a traceback and exits with `exit_code` (2 by default:
bad input, as argparse does).
"""

from __future__ import annotations


class TunerError(Exception):
    """An error the user can act on; printed without a traceback."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def field_error(field: str, value: object, rule: str, fix: str) -> TunerError:
    """Build a TunerError in the house style: "Got X for Y. Rule. Fix."."""
    return TunerError(f"Got {value!r} for {field}. {rule} {fix}")

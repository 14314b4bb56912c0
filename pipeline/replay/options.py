"""Command-line values shared by the replay commands: zoned ISO-8601 times, settings."""

from datetime import datetime
from typing import Any

import click


class IsoMoment(click.ParamType):
    """An ISO-8601 date-time with a zone (``2025-11-20T00:00:00Z``)."""

    name = "ISO-8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 date-time", param, ctx)
        if moment.tzinfo is None:
            self.fail(f"{value!r} has no zone; add Z or +hh:mm", param, ctx)
        return moment


ISO_MOMENT = IsoMoment()

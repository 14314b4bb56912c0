"""The channels' pause switches: operators set them, the dispatcher polls them."""

from datetime import datetime

from clickhouse_connect.driver.client import Client

from schemas.dispatch_tables import CHANNEL_CONTROL_COLUMNS, CHANNEL_CONTROLS, CHANNEL_PAUSES_SQL


def switch_channel_at(client: Client, channel: str, paused: bool, at: datetime, actor: str) -> None:
    client.insert(
        CHANNEL_CONTROLS,
        [[channel, int(paused), at, actor]],
        column_names=list(CHANNEL_CONTROL_COLUMNS),
    )


def channel_pauses(client: Client) -> dict[str, bool]:
    """Each channel whose switch was ever set: paused or not."""
    return {
        channel: bool(paused) for channel, paused in client.query(CHANNEL_PAUSES_SQL).result_rows
    }

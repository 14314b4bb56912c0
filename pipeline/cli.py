"""The ``intentflow`` command.

Each command lives next to the code it runs; adding one is an import and an
``add_command`` line below. Command bodies only turn options into settings.
"""

import click

from pipeline.campaigns.command import campaigns_command
from pipeline.dispatch.command import dispatcher_command
from pipeline.local.commands import local_group
from pipeline.local.provider_sim import provider_sim_command
from pipeline.local.simulate import simulate_command
from pipeline.replay.compare import backtest_group
from pipeline.replay.export import export_command
from pipeline.replay.intent import fit_command, intent_command
from pipeline.replay.replay import replay_command
from pipeline.warehouse.migrate import migrate_command
from pipeline.worker import worker_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """intentflow: behavioural telemetry in, purchase intent and nudges out.

    Settings come from INTENTFLOW_* environment variables; options override them.
    """


main.add_command(worker_command)
main.add_command(local_group)
main.add_command(simulate_command)
main.add_command(export_command)
main.add_command(replay_command)
backtest_group.add_command(intent_command)
backtest_group.add_command(fit_command)
main.add_command(backtest_group)
main.add_command(dispatcher_command)
main.add_command(provider_sim_command)
main.add_command(migrate_command)
main.add_command(campaigns_command)


if __name__ == "__main__":
    main()

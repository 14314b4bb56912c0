"""Every command documents itself and its options."""

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import main


def all_commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += all_commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


COMMANDS = all_commands(main)


def test_the_commands_this_issue_ships_exist() -> None:
    assert {("worker",), ("local",), ("local", "up")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "intentflow")
def test_help_describes_the_command_and_every_option(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert command.help and command.help.strip(), f"{path} has no help text"
    # Click wraps text to the terminal width; compare words, not line breaks.
    output = " ".join(result.output.split())
    assert " ".join(command.help.strip().splitlines()[0].split()) in output
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        assert param.help, f"{' '.join(path)} {param.opts[0]} has no help text"
        for opt in param.opts + param.secondary_opts:
            assert opt in output


def test_local_up_help_names_its_options() -> None:
    output = CliRunner().invoke(main, ["local", "up", "--help"]).output
    for option in ("--data-dir", "--api-port", "--workers", "--partitions"):
        assert option in output
    assert "--simulate / --no-simulate" in output


def test_local_up_refuses_more_workers_than_partitions_before_starting_anything() -> None:
    result = CliRunner().invoke(main, ["local", "up", "--workers", "6", "--partitions", "4"])
    assert result.exit_code == 2
    assert "6 workers for 4 partitions" in result.output


def test_unknown_command_fails() -> None:
    assert CliRunner().invoke(main, ["no-such-command"]).exit_code != 0

"""Every command documents itself and its options; long work shows progress on a
terminal only; the local stack names every URL a user needs."""

import io
from types import SimpleNamespace

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.local.settings import LocalStackSettings
from pipeline.local.stack import LocalStack
from pipeline.progress import Progress


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


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_a_bar_with_rate_and_eta_on_a_terminal() -> None:
    screen = Terminal()
    progress = Progress("export", total=1_000, stream=screen)
    progress.advance(400)
    progress.close()
    drawn = screen.getvalue()
    assert "export" in drawn and "events/s" in drawn and "ETA" in drawn


def test_progress_is_silent_where_the_output_is_not_a_terminal() -> None:
    log = io.StringIO()  # a pipe, a file, CI: isatty() is False
    progress = Progress("export", total=1_000, stream=log)
    progress.advance(400)
    progress.close()
    assert log.getvalue() == "" and not progress.drawn and progress.done == 400


def test_simulate_prints_no_progress_into_a_pipe() -> None:
    # No events: nothing is posted, so no collector needs to answer.
    args = ["simulate", "--api", "http://127.0.0.1:9", "--write-key", "wk", "--events", "0"]
    result = CliRunner().invoke(main, [*args, "--end", "2026-05-01T00:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "end 2026-05-01T00:00:00+00:00" in result.output
    assert "posting" not in result.output and "\r" not in result.output


def test_simulate_still_takes_the_old_name_of_the_window_end() -> None:
    args = ["simulate", "--api", "http://127.0.0.1:9", "--write-key", "wk", "--events", "0"]
    result = CliRunner().invoke(main, [*args, "--start", "2026-05-01T00:00:00Z"])
    assert result.exit_code == 0 and "end 2026-05-01T00:00:00+00:00" in result.output


def test_the_local_stack_announces_every_url_a_user_needs(tmp_path) -> None:
    out = io.StringIO()
    stack = LocalStack(LocalStackSettings(data_dir=tmp_path, api_port=8123), out=out)
    stack.broker = SimpleNamespace(bootstrap_servers="127.0.0.1:9092")
    stack.sim_url = "http://127.0.0.1:8025"
    stack.announce()
    said = out.getvalue()
    for url in (
        "http://127.0.0.1:8123/docs",
        "http://127.0.0.1:8123/demo/",
        "http://127.0.0.1:8123/console/",
        "http://127.0.0.1:8123/v1/health",
        "http://127.0.0.1:8025/v1/messages",
        "http://127.0.0.1:8025/phone",
    ):
        assert url in said, url

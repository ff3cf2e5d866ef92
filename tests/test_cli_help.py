"""Every command answers --help with its own description and options, and `tuner --help` lists it."""

from __future__ import annotations

import pytest

from tuner.cli import COMMANDS, build_parser


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: tuner {command}")
    assert "options:" in text and "-h, --help" in text
    sub = next(a for a in build_parser()._subparsers._group_actions if a.dest == "command")  # type: ignore[union-attr]
    description = sub.choices[command].description
    assert description and description.split()[0] in text  # its own description, printed


def test_top_level_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert all(command in text for command in COMMANDS)

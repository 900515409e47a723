import json

from click.testing import CliRunner

import lgdiff
from cli.main import cli


def test_info_json():
    result = CliRunner().invoke(cli, ["info", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["lgdiff"] == lgdiff.__version__
    assert "SU(3)" in report["groups"]


def test_unknown_command_fails_cleanly():
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code != 0
    assert "No such command" in result.output

"""Progress where stderr is not a terminal (batch jobs, cluster logs): one-line records with the work done, the
rate, the ETA and, for runs that write an ensemble, the records written and their acceptance."""

import io
import json
import re

from click.testing import CliRunner

from cli._progress import LogProgress, format_duration
from cli.main import cli

PHI4 = ["generate", "--theory", "phi4", "--L", 4, "--kappa", 0.2, "--lam", 0.02, "--chains", 2, "--therm", 5]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_log_progress_writes_a_record_per_period_with_rate_and_eta():
    clock, out = Clock(), io.StringIO()
    log = LogProgress(40, "generating", unit="updates", file=out, period_s=30, clock=clock,
                      status=lambda: "3 records written, acceptance 0.750")
    for _ in range(9):  # 9 updates in 27 s: no record yet
        clock.now += 3
        log.update(1)
    assert out.getvalue() == ""
    clock.now += 3
    log.update(1)  # 10 of 40 after 30 s: 1/3 per s, 30 more to go
    assert out.getvalue() == ("generating: 10/40 updates (25%), 0.333 updates/s, elapsed 30s, ETA 1m30s, "
                              "3 records written, acceptance 0.750\n")
    clock.now += 29
    log.update(5)
    assert out.getvalue().count("\n") == 1  # within the period: nothing new
    clock.now += 1
    log.update(0)
    assert out.getvalue().splitlines()[-1].startswith("generating: 15/40 updates (38%), 0.25 updates/s, elapsed 1m00s, "
                                                      "ETA 1m40s")
    log.update(25)
    log.finish()
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("generating: 40/40 updates (100%)") and "ETA" not in last


def test_format_duration():
    assert [format_duration(s) for s in (0.4, 59, 61, 3599, 7620)] == ["0s", "59s", "1m01s", "59m59s", "2h07m"]


def test_generate_in_a_log_prints_progress_records(tmp_path):
    out = tmp_path / "a.safetensors"
    result = run(*PHI4, "--n", 6, "--out", out)
    assert result.exit_code == 0, result.output
    last = [line for line in result.stderr.splitlines() if line.startswith("generating:")][-1]
    assert re.fullmatch(r"generating: 11/11 updates \(100%\), [0-9.e+]+ updates/s, elapsed \d+s, 6 records written, "
                        r"acceptance [01]\.\d{3}", last), result.stderr
    # resumed: the 5 thermalisation updates are not repeated, so the run is 3 x 1 updates long
    result = run(*PHI4, "--n", 9, "--out", out)
    assert result.exit_code == 0, result.output
    last = [line for line in result.stderr.splitlines() if line.startswith("generating:")][-1]
    assert last.startswith("generating: 3/3 updates (100%)"), result.stderr


def test_sample_in_a_log_prints_progress_records(tmp_path):
    result = run("sample", "--theory", "u1", "--L", 4, "--n", 2, "--chains", 2, "--steps", 3, "--therm", 2,
                 "--every", 1, "--out", tmp_path / "s.safetensors")
    assert result.exit_code == 0, result.output
    last = [line for line in result.stderr.splitlines() if line.startswith("sampling:")][-1]
    assert re.match(r"sampling: (\d+)/\1 updates \(100%\), .*, 2 records written, acceptance", last), \
        result.stderr


def test_measure_in_a_log_prints_the_progress_of_the_wilson_flow(tmp_path):
    from lgdiff import SU
    from tests.run.synthetic import rough_links, uniform_flux_u1

    su3 = rough_links(tmp_path / "su3.safetensors", SU(3), records=3, chains=4, shape=(3, 3, 3, 3))
    result = run("measure", su3, "--flow-time", 0.5)
    assert result.exit_code == 0, result.output
    assert "topo_charge" in result.stdout and "flowing" not in result.stdout
    last = [line for line in result.stderr.splitlines() if line.startswith("flowing:")][-1]
    assert re.fullmatch(r"flowing: 12/12 configurations \(100%\), [0-9.e+]+ configurations/s, elapsed \d+s", last), \
        result.stderr
    result = run("measure", su3, "--json")  # stdout stays one JSON object
    assert result.exit_code == 0 and "topo_charge" in json.loads(result.stdout), result.output
    # nothing is flowed for a 2D U(1) ensemble (its charge is geometric): no progress
    result = run("measure", uniform_flux_u1(tmp_path / "u1.safetensors", [1, 0, -1]))
    assert result.exit_code == 0 and "topo_charge" in result.stdout and "flowing" not in result.stderr, result.output

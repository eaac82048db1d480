"""How a test run sets itself up and cleans up (issue 13): scripts/test says what it installs
and stops at once, in one line, when pgTAP is missing and it cannot install it; a run leaves
no database behind, whether its tests fail, it is interrupted, or it is killed (a later run
drops them then).

Nothing here installs or uninstalls anything on this machine: "no pgTAP" is an empty folder
in DURABLE_PGTAP_SHARE, and apt-get is a stub on PATH.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from pyclient_support import wait_until

import pgtap_setup
from durable.testing import databases as testdb

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "test"
PGTAP_ENV = ("DURABLE_PGTAP_SQL", "DURABLE_PGTAP_SHARE", "DATABASE_URL", "DURABLE_DATABASE_URL")


def _env(**extra: str) -> dict[str, str]:
    """This environment without the pgTAP and server settings, plus ``extra``; the active
    virtualenv is this Python's (where everything is installed)."""
    env = {k: v for k, v in os.environ.items() if k not in PGTAP_ENV}
    env["VIRTUAL_ENV"] = sys.prefix
    env.update(extra)
    return env


# ---------------------------------------------------------------- pgTAP


def test_no_pgtap_is_one_line_saying_what_to_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "pgtap_setup.py")],
        env=_env(DURABLE_PGTAP_SHARE=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    line = result.stderr.strip()
    assert line.startswith("scripts/test: pgTAP is missing (")
    assert f"no {tmp_path}/*/extension/pgtap.sql" in line
    assert line.endswith(
        "run `sudo apt-get install postgresql-15-pgtap` or set DURABLE_PGTAP_SQL=/path/to/pgtap.sql"
    )


def test_where_pgtap_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PGTAP_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DURABLE_PGTAP_SHARE", str(tmp_path))
    assert pgtap_setup.pgtap_sql_file() is None
    assert pgtap_setup.missing("x") is not None
    # the newest version's (9 < 15, not as strings)
    for major in ("9", "15"):
        (tmp_path / major / "extension").mkdir(parents=True)
        (tmp_path / major / "extension" / "pgtap.sql").write_text("-- pgTAP\n")
    assert pgtap_setup.pgtap_sql_file() == tmp_path / "15" / "extension" / "pgtap.sql"
    assert pgtap_setup.missing("x") is None
    # DURABLE_PGTAP_SQL wins, and must be a file
    monkeypatch.setenv("DURABLE_PGTAP_SQL", str(tmp_path / "nowhere.sql"))
    assert (
        pgtap_setup.missing("x")
        == f"x: pgTAP is missing: DURABLE_PGTAP_SQL={tmp_path}/nowhere.sql is not a file"
    )
    monkeypatch.setenv("DURABLE_PGTAP_SQL", str(tmp_path / "9" / "extension" / "pgtap.sql"))
    assert pgtap_setup.pgtap_sql_file() == tmp_path / "9" / "extension" / "pgtap.sql"


def test_the_servers_extension_will_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_url: str
) -> None:
    for name in PGTAP_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DURABLE_PGTAP_SHARE", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", server_url)
    has = pgtap_setup.server_has_pgtap(server_url)
    assert has is not None
    problem = pgtap_setup.missing("x")
    if has:
        assert problem is None
    else:  # the embedded server
        assert problem is not None and "no pgtap extension on the server of DATABASE_URL" in problem


def test_scripts_test_stops_before_pytest_when_it_may_not_install(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SCRIPT), "tests/sql/test_queue_read.sql"],
        env=_env(DURABLE_PGTAP_SHARE=str(tmp_path), DURABLE_TEST_INSTALL="no"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == "", "pytest did not run"
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("scripts/test: pgTAP is missing (")
    assert "sudo apt-get install postgresql-15-pgtap" in result.stderr


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body))
    path.chmod(0o755)


@pytest.mark.parametrize("apt_knows_it", [True, False], ids=["known", "after-update"])
def test_scripts_test_installs_pgtap_with_apt_get_and_says_so(tmp_path: Path, apt_knows_it: bool) -> None:
    share, bin_dir, log = tmp_path / "share", tmp_path / "bin", tmp_path / "apt.log"
    share.mkdir()
    bin_dir.mkdir()
    if apt_knows_it:
        (tmp_path / "updated").touch()
    # apt: knows postgresql-15-pgtap once updated; installing it puts a pgtap.sql in the share
    _stub(
        bin_dir,
        "apt-cache",
        f"""\
        if [[ $1 == policy && -e {tmp_path}/updated ]]; then
            printf '%s:\\n  Installed: (none)\\n  Candidate: 1.2.0-3\\n' "$2"
        fi
        """,
    )
    _stub(
        bin_dir,
        "apt-get",
        f"""\
        echo "$*" >>{log}
        if [[ $1 == update ]]; then touch {tmp_path}/updated; fi
        if [[ $1 == install ]]; then
            mkdir -p {share}/15/extension && echo '-- pgTAP' >{share}/15/extension/pgtap.sql
        fi
        """,
    )
    _stub(bin_dir, "sudo", '[[ $1 == -n ]] && shift\nexec "$@"\n')
    _stub(bin_dir, "npm", "exit 0\n")
    result = subprocess.run(
        [str(SCRIPT), "--collect-only", "-q", "tests/sql/test_queue_read.sql"],
        env=_env(DURABLE_PGTAP_SHARE=str(share), PATH=f"{bin_dir}:{os.environ['PATH']}"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_queue_read.sql" in result.stdout
    said = [line for line in result.stderr.splitlines() if line.startswith("scripts/test:")]
    if apt_knows_it:
        assert said == [
            "scripts/test: no pgTAP for the tests: installing Debian's postgresql-15-pgtap (apt-get install)"
        ]
        assert log.read_text().splitlines() == ["install -y -qq --no-install-recommends postgresql-15-pgtap"]
    else:
        assert said == [
            "scripts/test: no pgTAP for the tests: installing Debian's postgresql-NN-pgtap"
            " (apt-get update, then apt-get install)"
        ]
        assert log.read_text().splitlines() == [
            "update -qq",
            "install -y -qq --no-install-recommends postgresql-15-pgtap",
        ]


# ---------------------------------------------------------------- databases


def _databases(server_url: str, names: list[str]) -> list[str]:
    """Which of ``names`` exist on the server."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        rows = admin.execute("select datname from pg_database where datname = any(%s)", (names,)).fetchall()
    return sorted(row[0] for row in rows)


CHILD_TEST = """\
import os
import time

from durable.testing import databases as testdb


def test_one(admin_url, template_db):
    names = testdb.created()
    assert template_db in names and len(names) == 2
    with open(os.environ["NAMES_FILE"] + ".tmp", "w") as f:
        f.write("\\n".join(names))
    os.rename(os.environ["NAMES_FILE"] + ".tmp", os.environ["NAMES_FILE"])
    if os.environ["CHILD_DOES"] == "wait":
        time.sleep(120)
    assert False, "this test fails"
"""


BREAKS_PGTAP = """\
from typing import Any

import conftest


def _install_pgtap(conn: Any) -> None:
    raise RuntimeError("pgTAP broke")


conftest._install_pgtap = _install_pgtap
"""


class ChildRun:
    """A pytest run of one test (CHILD_TEST, in a folder of its own) with the tests'
    conftest on this server: the test writes the names of its databases to a file, then
    fails (``fail``) or waits to be stopped (``wait``), or the template fails to be made
    (``break``: installing pgTAP raises, whatever the server)."""

    def __init__(self, folder: Path, server_url: str, does: str) -> None:
        (folder / "test_child.py").write_text(CHILD_TEST)
        (folder / "breaks_pgtap.py").write_text(BREAKS_PGTAP)
        (folder / "pytest.ini").write_text("[pytest]\n")
        self.names_file = folder / "names"
        self.output = folder / "output"
        env = _env(
            DATABASE_URL=server_url,
            NAMES_FILE=str(self.names_file),
            CHILD_DOES=does,
            PYTHONPATH=f"{ROOT / 'tests'}:{ROOT / 'python_client'}:{folder}",
        )
        command = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q"]
        if does == "break":
            command += ["-p", "breaks_pgtap"]
        command += ["-c", str(folder / "pytest.ini"), "--rootdir", str(folder), str(folder / "test_child.py")]
        with self.output.open("w") as out:
            self.proc = subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)

    def names(self) -> list[str]:
        """The names of the run's databases (the template's and the test's), once written."""
        wait_until(
            lambda: self.names_file.exists() or self.proc.poll() is not None,
            120,
            "the child run wrote the names of its databases",
        )
        assert self.names_file.exists(), self.output.read_text()
        names = sorted(self.names_file.read_text().split())
        assert [n.split("_")[1] for n in names] == ["t", "tmpl"], names
        return names

    def wait(self) -> int:
        return self.proc.wait(timeout=120)


@pytest.fixture
def child_run(tmp_path: Path, server_url: str) -> Iterator[Callable[[str], ChildRun]]:
    started: list[ChildRun] = []

    def start(does: str) -> ChildRun:
        folder = tmp_path / f"run{len(started)}"
        folder.mkdir()
        started.append(ChildRun(folder, server_url, does))
        return started[-1]

    yield start
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def _no_session_on(server_url: str, names: list[str]) -> bool:
    with psycopg.connect(server_url, autocommit=True) as admin:
        row = admin.execute(
            "select count(*) from pg_stat_activity where datname = any(%s)", (names,)
        ).fetchone()
    return row == (0,)


def test_a_failing_run_leaves_no_database(child_run: Callable[[str], ChildRun], server_url: str) -> None:
    run = child_run("fail")
    assert run.wait() == 1, run.output.read_text()
    assert "this test fails" in run.output.read_text()
    assert _databases(server_url, run.names()) == []


def test_a_run_whose_template_fails_leaves_no_database(
    child_run: Callable[[str], ChildRun], server_url: str
) -> None:
    """The template is dropped when making it fails (as it did when pgTAP was missing)."""
    run = child_run("break")
    assert run.wait() == 1, run.output.read_text()
    assert "RuntimeError: pgTAP broke" in run.output.read_text()
    assert not run.names_file.exists(), "the test did not run"
    with psycopg.connect(server_url, autocommit=True) as admin:
        left = admin.execute(
            "select datname from pg_database where datname like %s",
            (f"durable\\_%\\_{testdb.WHERE}\\_{run.proc.pid}\\_%",),
        ).fetchall()
    assert left == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_leaves_no_database(
    child_run: Callable[[str], ChildRun], server_url: str, signum: int
) -> None:
    run = child_run("wait")
    names = run.names()
    assert _databases(server_url, names) == names
    run.proc.send_signal(signum)
    assert run.wait() == 2, run.output.read_text()  # pytest's "interrupted"
    assert _databases(server_url, names) == []


def test_a_killed_runs_databases_are_dropped_by_a_later_run(
    child_run: Callable[[str], ChildRun], server_url: str, template_db: str
) -> None:
    run = child_run("wait")
    names = run.names()
    # alive: not stale, however old
    assert not any(testdb.is_stale(n, older_than=0) for n in names)
    run.proc.kill()
    run.wait()
    assert _databases(server_url, names) == names, "SIGKILL: nothing could drop them"
    # dead, but not old enough yet
    assert all(testdb.is_stale(n, older_than=0) for n in names)
    assert not any(testdb.is_stale(n) for n in names)
    assert testdb.drop_stale(server_url, only=names) == []
    # old enough (here: at once), once the server has seen the run's sessions go
    wait_until(lambda: _no_session_on(server_url, names), 30, "the killed run's sessions end")
    assert sorted(testdb.drop_stale(server_url, older_than=0, only=names)) == names
    assert _databases(server_url, names) == []
    # this run's template is never stale
    assert not testdb.is_stale(template_db, older_than=0)


def test_a_dead_runs_database_in_use_stays(server_url: str) -> None:
    """A database whose run is dead but which someone is connected to is left alone."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    name = testdb.new_name("t").replace(f"_{os.getpid()}_", f"_{gone.pid}_")
    # as if the dead process had created it 3 hours ago
    parts = name.split("_")
    parts[4] = str(int(parts[4]) - 3 * 3600)
    name = "_".join(parts)
    assert testdb.is_stale(name)
    testdb.create(server_url, name)  # registered: dropped at the end of the session if left
    try:
        with psycopg.connect(make_conninfo(server_url, dbname=name), autocommit=True):
            assert testdb.drop_stale(server_url, only=[name]) == []
            assert _databases(server_url, [name]) == [name]
        wait_until(lambda: _no_session_on(server_url, [name]), 30, "the session ends")
        assert testdb.drop_stale(server_url, only=[name]) == [name]
        assert _databases(server_url, [name]) == []
    finally:
        testdb.drop(server_url, [name])


def test_names_of_other_machines_and_other_tools_are_never_stale() -> None:
    name = testdb.new_name("t")
    parts = name.split("_")
    other_pid = "_".join([*parts[:3], "999999999", *parts[4:]])
    assert not testdb.is_stale(other_pid.replace(testdb.WHERE, "00000000"), now=time.time() + 10**6)
    assert not testdb.is_stale("durable_t_0f594f6bfadf", now=time.time() + 10**6)
    assert not testdb.is_stale("durable_tmpl_0d2049cb36", now=time.time() + 10**6)
    assert testdb.is_stale(other_pid, now=time.time() + 10**6), "the same name, of this machine: stale"
    with pytest.raises(ValueError):
        testdb.new_name("t_1")

"""Developer and CI tasks: ``nox -s dev``, ``tests``, ``lint``, ``typecheck``, ``lock``, ...

Every session installs under ``constraints.txt`` so a fresh clone checks and tests the same
versions as CI; ``nox -s lock`` rebuilds that file from a fresh environment.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

# None: the interpreter nox itself runs on (any supported one, 3.11 to 3.13), so a machine
# without a python3.11 binary still runs every session.
PYTHON = None

CONSTRAINTS = ("-c", "constraints.txt")
EVERYTHING = ("-e", ".[dev,test,lint,typecheck]", "-e", "./harness")


def install(session: nox.Session, *args: str) -> None:
    """``pip install`` pinned to the versions in constraints.txt."""
    session.install(*CONSTRAINTS, *args)


@nox.session(python=PYTHON)
def dev(session: nox.Session) -> None:
    """The whole system in one process tree (local PostgreSQL and Redis unless URLs are set).

    Extra arguments go to ``arcyou-trio dev``: ``nox -s dev -- --fresh --port 9000``.
    """
    install(session, "-e", ".[dev]")
    # The banner's chat commands must work as printed: this environment's arcyou-trio is not
    # on the reader's PATH, `nox -s client -- ...` is.
    session.run("arcyou-trio", "dev", "--client-command", "nox -s client --", *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite against real PostgreSQL and Redis (see tests/conftest.py)."""
    install(session, "-e", ".[test]", "-e", "./harness")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff lint (ASYNC, B, UP, I, ...) and formatting check."""
    install(session, "-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    install(session, "-e", ".[dev,typecheck]", "-e", "./harness")
    session.run("mypy")
    with session.chdir("harness"):
        session.run("mypy")


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """Hostile-client fuzzer: 100,000 random frames against an in-process gateway and worker.

    Local PostgreSQL and Redis unless URLs are given; extra arguments go to the fuzzer:
    ``nox -s fuzz -- --seed 7 --connections 16``.
    """
    install(session, "-e", ".[dev]", "-e", "./harness")
    session.run("python", "-m", "arcyou_harness.fuzz", "--frames", "100000", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """End-to-end benchmark: gateway and worker processes under load, with pgbench and
    redis-benchmark ceilings on the same servers (local ones unless URLs are given).

    Writes bench-results.json; extra arguments go to the benchmark:
    ``nox -s bench -- --quick`` (about a minute), ``-- --scenarios 1,2 --gateways 2``.
    See docs/benchmarks.md.
    """
    install(session, "-e", ".[dev]", "-e", "./harness")
    session.run(
        "python", "-m", "arcyou_harness.bench", "--out", "bench-results.json", *session.posargs
    )


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """Chaos run: 2 gateways and 2 workers under load from 24 retrying clients while workers and
    gateways are killed and Redis and PostgreSQL restarted; then 0 lost, 0 stored twice, 0 out of
    order, 0 never received -- or exit 1. Its own local PostgreSQL and Redis.

    Writes chaos-results.json; extra arguments go to the harness: ``nox -s chaos -- --profile
    ci`` (about a minute), ``-- --seed 7 --messages 20000``. See docs/reliability.md.
    """
    install(session, "-e", ".[dev]", "-e", "./harness")
    session.run(
        "python", "-m", "arcyou_harness.chaos", "--out", "chaos-results.json", *session.posargs
    )


@nox.session(python=PYTHON)
def bridge(session: nox.Session) -> None:
    """Which bridge from trio to PostgreSQL and Redis is fastest: our send transaction and
    publish/subscribe through threads and through trio-asyncio, against pgbench and
    redis-benchmark (about two minutes).

    Needs PostgreSQL and Redis on 127.0.0.1 unless URLs are given; extra arguments go to the
    benchmark: ``nox -s bridge -- --seconds 10 --database-url postgresql://...``. See
    harness/README.md.
    """
    install(session, "-e", ".[dev]", "-e", "./harness")
    session.run("python", "-m", "arcyou_harness.bridge", *session.posargs)


@nox.session(python=PYTHON)
def client(session: nox.Session) -> None:
    """The command-line client: ``nox -s client -- --user <uuid> --room <uuid> --send hi``.

    The same as ``arcyou-trio client ...`` where the package is installed; the dev banner
    prints this form because ``nox -s dev`` installs into its own environment.
    """
    install(session, "-e", ".")
    session.run("arcyou-trio", "client", *session.posargs)


@nox.session(python=PYTHON)
def cli(session: nox.Session) -> None:
    """Any ``arcyou-trio`` command in its own environment, e.g. the HTTP API's:
    ``nox -s cli -- rooms create general --member <uuid> --user <uuid>``."""
    install(session, "-e", ".")
    session.run("arcyou-trio", *session.posargs)


@nox.session(python=PYTHON, reuse_venv=False)
def lock(session: nox.Session) -> None:
    """Rebuild constraints.txt: install everything unpinned into a fresh environment and
    record the versions pip chose. Commit the result; every other session installs under it.
    """
    session.install("--upgrade", "pip")
    session.install(*EVERYTHING)
    frozen = session.run("pip", "freeze", "--exclude-editable", silent=True)
    assert isinstance(frozen, str)
    pins = sorted(
        (line for line in frozen.splitlines() if line and not line.startswith("#")),
        key=str.lower,
    )
    version = session.run(
        "python", "-c", "import platform; print(platform.python_version())", silent=True
    )
    assert isinstance(version, str)
    header = [
        "# Versions every nox session installs under (pip install -c constraints.txt).",
        f"# Written by `nox -s lock` on {datetime.date.today().isoformat()} with Python"
        f" {version.strip()}; refresh it that way, do not edit by hand.",
    ]
    Path("constraints.txt").write_text("\n".join([*header, *pins]) + "\n")
    session.log(f"constraints.txt: {len(pins)} pins")

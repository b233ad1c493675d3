"""Developer and CI tasks: ``nox -s dev``, ``tests``, ``lint`` and ``typecheck``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

# None: the interpreter nox itself runs on (any supported one, 3.11 to 3.13), so a machine
# without a python3.11 binary still runs every session.
PYTHON = None


@nox.session(python=PYTHON)
def dev(session: nox.Session) -> None:
    """The whole system in one process tree (local PostgreSQL and Redis unless URLs are set).

    Extra arguments go to ``arcyou-trio dev``: ``nox -s dev -- --fresh --port 9000``.
    """
    session.install("-e", ".[dev]")
    session.run("arcyou-trio", "dev", *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite against real PostgreSQL and Redis (see tests/conftest.py)."""
    session.install("-e", ".[test]", "-e", "./harness")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff lint (ASYNC, B, UP, I, ...) and formatting check."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[dev,typecheck]", "-e", "./harness")
    session.run("mypy")
    with session.chdir("harness"):
        session.run("mypy")


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """Hostile-client fuzzer: 100,000 random frames against an in-process gateway and worker.

    Local PostgreSQL and Redis unless URLs are given; extra arguments go to the fuzzer:
    ``nox -s fuzz -- --seed 7 --connections 16``.
    """
    session.install("-e", ".[dev]", "-e", "./harness")
    session.run("python", "-m", "arcyou_harness.fuzz", "--frames", "100000", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """End-to-end benchmark: gateway and worker processes under load, with pgbench and
    redis-benchmark ceilings on the same servers (local ones unless URLs are given).

    Writes bench-results.json; extra arguments go to the benchmark:
    ``nox -s bench -- --quick`` (about a minute), ``-- --scenarios 1,2 --gateways 2``.
    See docs/benchmarks.md.
    """
    session.install("-e", ".[dev]", "-e", "./harness")
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
    session.install("-e", ".[dev]", "-e", "./harness")
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
    session.install("-e", ".[dev]", "-e", "./harness")
    session.run("python", "-m", "arcyou_harness.bridge", *session.posargs)

"""The images tier: our own Docker engine for the session, images built on demand, sizes summarised."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tools.images import BuiltImage, build
from tools.images.builder import load_into
from tools.images.daemon import Engine, docker_engine

# name -> (ref, size in bytes, seconds to build or find cached), printed at the end of the run.
BUILT: dict[str, tuple[str, int, float]] = {}


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    with docker_engine() as running:
        yield running


@pytest.fixture(scope="session")
def image_of(engine: Engine) -> Callable[[str], BuiltImage]:
    """Builds (or finds cached) one image and makes sure the engine has it loaded."""
    done: dict[str, BuiltImage] = {}

    def get(name: str) -> BuiltImage:
        if name not in done:
            start = time.monotonic()
            image = build([name])[name]
            load_into(engine, image)
            done[name] = image
            BUILT[name] = (image.ref, image.size_bytes, time.monotonic() - start)
        return done[name]

    return get


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not BUILT:
        return
    terminalreporter.section("image sizes")
    terminalreporter.write_line(f"{'image':<16}{'ref':<34}{'size':>12}{'build/cached':>14}")
    for name, (ref, size, seconds) in sorted(BUILT.items()):
        terminalreporter.write_line(f"{name:<16}{ref:<34}{size / 2**20:>9.1f} MiB{seconds:>12.1f} s")

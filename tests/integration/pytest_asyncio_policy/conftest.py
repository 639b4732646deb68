"""pytest-asyncio selecting ferroloop by overriding its ``event_loop_policy`` fixture (the way
of pytest-asyncio 0.23 to 1.x; deprecated in recent 1.x releases, which warn and recommend the
``pytest_asyncio_loop_factories`` hook, see ../pytest_asyncio_hook/conftest.py)."""

import pytest

pytest.importorskip("pytest_asyncio")

import ferroloop  # noqa: E402


@pytest.fixture(scope="session")
def event_loop_policy():
    return ferroloop.EventLoopPolicy()


def pytest_collection_modifyitems(items):
    # Recent pytest-asyncio warns (PytestDeprecationWarning) that this override is deprecated.
    for item in items:
        item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning"))

"""pytest-asyncio selecting ferroloop with the ``pytest_asyncio_loop_factories`` hook
(pytest-asyncio 1.x; the way its docs recommend now that overriding ``event_loop_policy`` is
deprecated). Every ``@pytest.mark.asyncio`` test and async fixture under this directory runs
on a ``ferroloop.Loop``. Returning several factories parametrizes the tests over them."""

import pytest

pytest.importorskip("pytest_asyncio")

import ferroloop  # noqa: E402


def pytest_asyncio_loop_factories(config, item):
    return {"ferroloop": ferroloop.new_event_loop}

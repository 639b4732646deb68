"""Type stubs for ``ferroloop``."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._ferroloop import Future as Future, Handle as Handle, Task as Task, LoopCore, TimerHandle as TimerHandle, __version__ as __version__

_T = TypeVar("_T")

class Loop(LoopCore, asyncio.AbstractEventLoop):  # type: ignore[misc]
    async def shutdown_asyncgens(self) -> None: ...
    async def shutdown_default_executor(self, timeout: float | None = None) -> None: ...

class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):  # type: ignore[misc]
    def _loop_factory(self) -> Loop: ...

def new_event_loop() -> Loop: ...
def install() -> None: ...
def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T: ...

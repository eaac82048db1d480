"""The worker's thread runner: every blocking call gets a thread; results and errors come back."""

from __future__ import annotations

import asyncio
import threading

import pytest

from durable.threads import ThreadRunner


def test_blocking_calls_each_get_a_thread_and_results_come_back() -> None:
    async def scenario() -> None:
        runner = ThreadRunner(asyncio.get_running_loop(), max_threads=8)
        barrier = threading.Barrier(8, timeout=10)  # passes only if all 8 calls run at once

        def meet(i: int) -> int:
            barrier.wait()
            return i * i

        assert await asyncio.gather(*(runner.run(meet, i) for i in range(8))) == [i * i for i in range(8)]
        # a burst of short calls, more than there are threads
        assert await asyncio.gather(*(runner.run(abs, -i) for i in range(1000))) == list(range(1000))

        def boom() -> None:
            raise KeyError("x")

        with pytest.raises(KeyError):
            await runner.run(boom)
        runner.close()
        with pytest.raises(RuntimeError):
            runner.run(abs, 1)

    asyncio.run(scenario())

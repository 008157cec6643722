"""The bare stream engine, for ``nextbehavior bench e2e``: a Faust agent that copies each input
record to the output topic, configured exactly like the worker (same Faust settings, broker
fixes and event loop), with nothing else: no decoding, state, model or dead letters.

Run as a process: ``python -m nextbehavior.stream.passthrough`` with the worker's ``NBP_*``
settings (broker, topics, app id, web port). ``/stats`` answers ``{"assigned": [...]}`` like the
worker's, so the benchmark waits for both the same way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.web import Request, Response, View

from nextbehavior.stream.compat import BrokerCompat, apply_compat
from nextbehavior.stream.settings import Settings, get_settings
from nextbehavior.stream.worker import event_loop, faust_config, input_topic

logger = logging.getLogger(__name__)


def build_passthrough(settings: Settings, *, partitions: int, compat: BrokerCompat) -> faust.App:
    """A Faust app whose one agent sends every input record, key and bytes, to the output."""
    app = faust.App(settings.app_id, **faust_config(settings, partitions))
    apply_compat(app, compat)
    source = input_topic(app, settings, partitions)
    output = settings.output_topic

    @app.agent(source, name="passthrough")
    async def passthrough(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():  # acked by Faust after each iteration
            msg = event.message
            await app.producer.send(output, msg.key, msg.value, None, None, None)

    @app.page("/stats")
    class StatsView(View):
        async def get(self, request: Request) -> Response:
            assigned = sorted(
                tp.partition
                for tp in app.consumer.assignment()
                if tp.topic == source.get_topic_name()
            )
            return self.json({"assigned": assigned})

    del passthrough, StatsView  # registered on the app
    return app


async def _input_partitions(settings: Settings) -> int:
    from nextbehavior.stream.topics import list_topics

    topics: dict[str, Any] = await list_topics(settings, timeout_s=settings.request_timeout_s)
    if settings.input_topic not in topics or settings.output_topic not in topics:
        raise SystemExit(f"create {settings.input_topic} and {settings.output_topic} first")
    return int(topics[settings.input_topic])


def main() -> None:
    """Run the passthrough app until SIGTERM/SIGINT (settings from ``NBP_*``)."""
    from nextbehavior.stream.compat import resolve_compat
    from nextbehavior.stream.console import setup_logging

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json)
    settings.state_dir.mkdir(parents=True, exist_ok=True)  # Faust's datadir lives there
    partitions = asyncio.run(_input_partitions(settings))
    compat = resolve_compat(settings)
    loop = event_loop()
    asyncio.set_event_loop(loop)
    app = build_passthrough(settings, partitions=partitions, compat=compat)
    faust.Worker(
        app,
        loop=loop,
        loglevel=settings.log_level,
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
    ).execute_from_commandline()


if __name__ == "__main__":
    main()

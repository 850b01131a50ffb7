"""The load engine of ``asrtk bench``: schedules, request builders, the gevent driver.

Importing this package, ``driver``, ``clock`` or ``transport`` does not import Locust: the
driver runs on an injected :class:`~toolkit.engine.transport.Transport` and
:class:`~toolkit.engine.clock.Clock`, and only the real HTTP transport (Locust's
FastHttpSession) and ``distributed`` (Locust's master/worker runners) pull in Locust and
gevent's monkey-patching, which the orchestrator (``toolkit.runs.bench``) does first thing.
"""

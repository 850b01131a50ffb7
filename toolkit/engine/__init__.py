"""The load engine of ``asrtk bench``: schedules, request builders, the gevent driver.

Importing this package does not import Locust; ``driver`` and ``distributed`` do, so
only code that generates load pulls in gevent's monkey-patching.
"""

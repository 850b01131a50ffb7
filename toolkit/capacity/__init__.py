"""Capacity: how much one node carries, and how many nodes a target needs.

Pure logic: :mod:`.usl` (Universal Scalability Law fit), :mod:`.queueing` (Erlang C, Allen-Cunneen),
:mod:`.sweep` (the peak search state machine), :mod:`.capacityfile` (``asrtk.capacity/v1``),
:mod:`.measurements` (capacity curves from sweeps or CSV), :mod:`.planner` (fleet plans),
:mod:`.planfile` (``asrtk.plan/v1``), :mod:`.render` (Markdown / HTML reports), :mod:`.units`
(flag parsers). I/O: :mod:`.runner` (``asrtk sweep``), :mod:`.plan_io` (``asrtk plan``, ``plan validate``).
See docs/capacity.md.
"""

"""Capacity: how much one node carries, and how many nodes a target needs. Pure logic only.

:mod:`.usl` (Universal Scalability Law fit), :mod:`.queueing` (Erlang C, Allen-Cunneen),
:mod:`.sweep` (the peak search state machine), :mod:`.capacityfile` (``asrtk.capacity/v1``),
:mod:`.measurements` (capacity curves from sweeps or CSV), :mod:`.planner` (fleet plans),
:mod:`.planfile` (``asrtk.plan/v1`` and its defaults), :mod:`.validation` (``plan validate``'s
judgement), :mod:`.render` (Markdown / HTML reports). The runs that feed them live in
:mod:`toolkit.runs` (``sweep``, ``plan``, ``validate``). See docs/capacity.md.
"""

"""The orchestrators: the only modules that combine the load engine, the samplers, the results
store and the reports. One module per run kind: :mod:`.bench` (one load test), :mod:`.sweep`
(a capacity sweep of bench runs), :mod:`.plan` (capacity files in, plan files out),
:mod:`.validate` (a bench run at the planned point, judged against the plan).

Nothing below this layer imports it (``tests/unit/test_layers.py`` checks).
"""

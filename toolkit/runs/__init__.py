"""The orchestrators: the only modules that combine the load engine, the samplers, the results
store and the reports. One module per run kind: :mod:`.bench` (one load test), :mod:`.sweep`
(a capacity sweep of bench runs), :mod:`.plan` (capacity files in, plan files out),
:mod:`.validate` (a bench run at the planned point, judged against the plan), :mod:`.gate` (the CI
verdict), :mod:`.drill` (failures injected under load, judged by :mod:`toolkit.drills`) with
:mod:`.fleet` (its embedded target: the real nginx in front of reference servers).

Nothing below this layer imports it (``tests/unit/test_layers.py`` checks).
"""

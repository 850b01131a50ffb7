"""``asrtk drill``'s pure core: the timeline model, nginx's log and config read as data, the
promises judged, the outputs rendered. The orchestrator is ``toolkit.runs.drill``."""

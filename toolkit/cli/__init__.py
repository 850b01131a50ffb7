"""The ``asrtk`` command line: one module per command; see ``main.py``."""

"""asrtk: capacity planning for speech-AI inference services."""

__version__ = "0.1.0"

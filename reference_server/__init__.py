"""The asrtk reference inference server (ASR, emotion recognition, TTS on ONNX Runtime).

Its models are built locally with seeded random weights: transcripts and labels are
meaningless, while compute, memory and batching behaviour are real.
"""

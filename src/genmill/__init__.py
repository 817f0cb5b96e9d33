"""genmill: a self-hostable server for generative-AI tasks that speaks the PiAPI/Qubico Unified API."""

__version__ = "0.1.0"

"""The OpenAI-compatible chat models: catalog entries and the backends that answer them (the operator's
OpenAI-compatible servers, or a local transformers model)."""

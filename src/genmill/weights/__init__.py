"""Where the weight folders under GENMILL_MODELS_DIR come from, and `genmill models pull`, which fetches them."""

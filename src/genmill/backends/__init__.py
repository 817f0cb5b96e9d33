"""What every model family's backends build on: the `Backend` interface (`base`), the registry that constructs the
families' backends and plugins, and the shared helpers (`toolkit`, `video_io`, `audio_io`, `loras`,
`diffusers_loading`, `memory_modes`, `isolation`); the `upstream` backend forwards any catalog entry. The model
families themselves live in `genmill.models`.
"""

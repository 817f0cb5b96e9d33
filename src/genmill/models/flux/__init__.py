"""FLUX.1 image generation (`Qubico/flux1-dev`, `Qubico/flux1-schnell`, `Qubico/flux1-dev-advanced`) with diffusers."""

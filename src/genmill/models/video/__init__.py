"""Video generation with diffusers: Wan (`Qubico/wanx`, `Qubico/skyreels`, `Qubico/hug-video`) and HunyuanVideo
(`Qubico/hunyuan`, `Qubico/framepack`), which share one pipeline runner (`pipeline`)."""

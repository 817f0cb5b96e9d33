"""Text to speech: `Qubico/tts`, spoken by Piper or cloned from a reference voice by Dia."""

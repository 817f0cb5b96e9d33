"""Music and sound: `Qubico/ace-step` and `Qubico/diffrhythm` (ACE-Step, or MusicGen standing in) and
`Qubico/mmaudio` (Stable Audio Open standing in)."""

"""Image and text to 3D: `Qubico/trellis` with Microsoft's TRELLIS."""

"""The image and video toolkits (`Qubico/image-toolkit`, `Qubico/video-toolkit`): upscale, background removal,
segmentation and face swaps with small networks that run on a CPU. One family because the video toolkit is the
image toolkit's networks applied to every frame (Real-ESRGAN, U²-Net-p, MediaPipe Face Mesh) and its catalog takes
the image toolkit's field types."""

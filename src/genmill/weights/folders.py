"""The weight table: every weight folder under GENMILL_MODELS_DIR, the repository (or repositories, for a layout
genmill assembles) that fills it, the files the backend loads from it and the catalog entries it serves.

Kept apart from the lookups (`genmill.weights.sources`) because it is data that grows with the catalog.
"""

from __future__ import annotations

from typing import Any

from genmill.weights.parts import Entry, RepoPart, WeightSource


def diffusers_files(*components: str) -> tuple[str, ...]:
    """Allow-patterns for a diffusers pipeline folder: its model_index.json and the named component folders
    (which leaves out the single-file checkpoints many repositories also keep at their root)."""
    return ("model_index.json", *(f"{name}/*" for name in components))


FLUX_COMPONENTS = ("scheduler", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "transformer", "vae")
WAN_T2V = ("scheduler", "text_encoder", "tokenizer", "transformer", "vae")
WAN_I2V = (*WAN_T2V, "image_encoder", "image_processor")
HUNYUAN_COMPONENTS = ("scheduler", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "transformer", "vae")
TRANSFORMERS_FILES = ("config.json", "model.safetensors")
ACE_STEP_COMPONENTS = (
    "audio_token_detokenizer",  # with the tokenizer: the 5 Hz semantic codes cover (audio2audio, edit) needs
    "audio_tokenizer",
    "condition_encoder",
    "scheduler",
    "text_encoder",
    "tokenizer",
    "transformer",
    "vae",
)
CONTROLNET_FILES = ("config.json", "diffusion_pytorch_model.safetensors")

DEV, SCHNELL, ADVANCED = "Qubico/flux1-dev", "Qubico/flux1-schnell", "Qubico/flux1-dev-advanced"
MIDJOURNEY = "midjourney"  # served by FLUX.1 stand-ins (genmill.models.flux.midjourney)
WANX, HUNYUAN = "Qubico/wanx", "Qubico/hunyuan"
SERVICES_GENERATE: tuple[Entry, ...] = (
    ("kling", "video_generation"),
    ("kling", "text2video"),
    ("kling", "image2video"),
    ("kling-turbo", "video_generation"),
    ("hailuo", "video_generation"),
    ("luma", "video_generation"),
)
SERVICES_EXTEND: tuple[Entry, ...] = (("kling", "extend_video"), ("luma", "extend_video"))
"""The Wan stand-ins for Kling, Hailuo and Luma (genmill.models.video.services) read the same folders."""


def _entries(model: str, *task_types: str) -> tuple[Entry, ...]:
    return tuple((model, task_type) for task_type in task_types)


def _flux(folder: str, repo: str, serves: tuple[Entry, ...], *, gated: bool = True) -> WeightSource:
    return WeightSource(folder, "flux", (RepoPart(repo, diffusers_files(*FLUX_COMPONENTS), 34, gated),), serves)


def _controlnet(control_type: str, repo: str, approx_gb: float) -> WeightSource:
    return WeightSource(
        f"flux1-dev-controlnet-{control_type}",
        "flux",
        (RepoPart(repo, CONTROLNET_FILES, approx_gb),),
        ((ADVANCED, "controlnet-lora"),),
    )


def _wan(folder: str, repo: str, components: tuple[str, ...], approx_gb: float, *serves: Entry) -> WeightSource:
    return WeightSource(folder, "wan", (RepoPart(repo, diffusers_files(*components), approx_gb),), serves)


FRAMEPACK_MODEL_INDEX: dict[str, Any] = {
    # The components HunyuanVideoFramepackPipeline.__init__ takes, as diffusers' FramePack docs assemble them.
    "_class_name": "HunyuanVideoFramepackPipeline",
    "_diffusers_version": "0.33.0",  # the first diffusers release with this pipeline
    "feature_extractor": ["transformers", "SiglipImageProcessor"],
    "image_encoder": ["transformers", "SiglipVisionModel"],
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "LlamaModel"],
    "text_encoder_2": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "LlamaTokenizerFast"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "transformer": ["diffusers", "HunyuanVideoFramepackTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLHunyuanVideo"],
}

UNION_PRO_2 = "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro-2.0"

SOURCES: tuple[WeightSource, ...] = (
    _flux(
        "flux1-dev",
        "black-forest-labs/FLUX.1-dev",
        (
            *_entries(DEV, "txt2img", "img2img", "txt2img-lora"),
            *_entries(ADVANCED, "txt2img", "img2img", "txt2img-lora", "img2img-lora"),
            # Redux and the ControlNets generate with FLUX.1-dev's pipeline.
            *_entries(ADVANCED, "redux-variation", "controlnet-lora"),
            *_entries(MIDJOURNEY, "imagine", "upscale", "variation", "reroll", "seed", "blend"),
        ),
    ),
    _flux(
        "flux1-schnell",
        "black-forest-labs/FLUX.1-schnell",
        _entries(SCHNELL, "txt2img", "img2img", "txt2img-lora"),
        gated=False,
    ),
    _flux(
        "flux1-fill-dev",
        "black-forest-labs/FLUX.1-Fill-dev",
        (
            *_entries(ADVANCED, "fill-inpaint", "fill-outpaint"),
            *_entries(MIDJOURNEY, "inpaint", "outpaint", "pan"),
        ),
    ),
    _flux("flux1-kontext-dev", "black-forest-labs/FLUX.1-Kontext-dev", _entries(ADVANCED, "kontext")),
    WeightSource(
        "flux1-redux-dev",
        "flux",
        (
            RepoPart(
                "black-forest-labs/FLUX.1-Redux-dev",
                diffusers_files("feature_extractor", "image_embedder", "image_encoder"),
                1,
                gated=True,
            ),
        ),
        (*_entries(ADVANCED, "redux-variation"), (MIDJOURNEY, "blend")),
    ),
    WeightSource(
        "blip-captioning",
        "flux",
        (
            RepoPart(
                "Salesforce/blip-image-captioning-large",
                ("*.json", "vocab.txt", "model.safetensors"),
                1.9,
            ),
        ),
        ((MIDJOURNEY, "describe"),),
        note="BLIP captions stand in for Midjourney's describe",
    ),
    _controlnet("canny", "InstantX/FLUX.1-dev-Controlnet-Canny", 3.6),
    _controlnet("depth", "Shakker-Labs/FLUX.1-dev-ControlNet-Depth", 3.6),
    _controlnet("soft_edge", UNION_PRO_2, 4),
    _controlnet("openpose", UNION_PRO_2, 4),
    WeightSource(
        "depth-anything",
        "flux",
        (
            RepoPart(
                "depth-anything/Depth-Anything-V2-Small-hf",
                ("config.json", "preprocessor_config.json", "model.safetensors"),
                0.1,
            ),
        ),
        _entries(ADVANCED, "controlnet-lora"),
        note="turns control_image into a depth map for the depth ControlNet",
    ),
    _wan("wan2.1-t2v-1.3b", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", WAN_T2V, 29, (WANX, "txt2video-1.3b")),
    _wan(
        "wan2.1-t2v-14b",
        "Wan-AI/Wan2.1-T2V-14B-Diffusers",
        WAN_T2V,
        80,
        *_entries(WANX, "txt2video-14b", "txt2video-14b-lora"),
        *SERVICES_GENERATE,
    ),
    _wan(
        "wan2.1-i2v-14b",
        "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
        WAN_I2V,
        90,
        *_entries(WANX, "img2video-14b", "img2video-14b-lora"),
        ("Qubico/hug-video", "image_to_video"),
        *SERVICES_GENERATE,
        *SERVICES_EXTEND,
    ),
    _wan(
        "wan2.1-flf2v-14b",
        "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
        WAN_I2V,
        90,
        (WANX, "img2video-14b-keyframe"),
    ),
    _wan(
        "wan2.2-t2v-a14b",
        "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
        (*WAN_T2V, "transformer_2"),
        126,
        (WANX, "wan22-txt2video-14b"),
    ),
    _wan(
        "wan2.2-i2v-a14b",
        "Wan-AI/Wan2.2-I2V-A14B-Diffusers",
        (*WAN_T2V, "transformer_2"),
        126,
        (WANX, "wan22-img2video-14b"),
    ),
    _wan(
        "skyreels-v2-i2v",
        "Skywork/SkyReels-V2-I2V-14B-540P-Diffusers",
        WAN_I2V,
        90,
        ("Qubico/skyreels", "img2video"),
    ),
    WeightSource(
        "hunyuanvideo",
        "hunyuan",
        (RepoPart("hunyuanvideo-community/HunyuanVideo", diffusers_files(*HUNYUAN_COMPONENTS), 41),),
        _entries(HUNYUAN, "txt2video", "fast-txt2video", "txt2video-lora"),
    ),
    WeightSource(
        "hunyuanvideo-i2v-concat",
        "hunyuan",
        (
            RepoPart(
                "hunyuanvideo-community/HunyuanVideo-I2V-33ch",
                diffusers_files(*HUNYUAN_COMPONENTS, "image_processor"),
                43,
            ),
        ),
        _entries(HUNYUAN, "img2video-concat"),
        note='its transformer has image_condition_type "latent_concat" (33 input channels)',
    ),
    WeightSource(
        "hunyuanvideo-i2v-replace",
        "hunyuan",
        (
            RepoPart(
                "hunyuanvideo-community/HunyuanVideo-I2V",
                diffusers_files(*HUNYUAN_COMPONENTS, "image_processor"),
                43,
            ),
        ),
        _entries(HUNYUAN, "img2video-replace"),
        note='its transformer has image_condition_type "token_replace"',
    ),
    WeightSource(
        "framepack",
        "hunyuan",
        (
            RepoPart(
                "lllyasviel/FramePackI2V_HY",
                ("config.json", "*.safetensors", "*.safetensors.index.json"),
                26,
                subfolder="transformer",
            ),
            RepoPart(
                "hunyuanvideo-community/HunyuanVideo",
                tuple(f"{name}/*" for name in HUNYUAN_COMPONENTS if name != "transformer"),
                16,
            ),
            RepoPart("lllyasviel/flux_redux_bfl", ("image_encoder/*", "feature_extractor/*"), 0.9),
        ),
        (("Qubico/framepack", "img2video"),),
        model_index=FRAMEPACK_MODEL_INDEX,
        note="assembled: the FramePack transformer, HunyuanVideo's text encoders, tokenizers, VAE and scheduler, "
        "the SigLIP image encoder, and a model_index.json genmill writes",
    ),
    WeightSource(
        "ace-step",
        "audio",
        (RepoPart("ACE-Step/acestep-v15-xl-turbo-diffusers", diffusers_files(*ACE_STEP_COMPONENTS), 12),),
        (
            *_entries("Qubico/ace-step", "txt2audio", "audio2audio", "edit", "extend"),
            *_entries("Qubico/diffrhythm", "txt2audio-base", "txt2audio-full"),
            *_entries("music-u", "generate_music"),
            *_entries("music-s", "generate_music", "generate_music_custom"),
        ),
        note="ACE-Step 1.5 XL turbo (4B DiT, 8 steps); it also stands in for DiffRhythm, Udio and Suno",
    ),
    WeightSource(
        "musicgen",
        "audio",
        (RepoPart("facebook/musicgen-small", ("*.json", "spiece.model", "model.safetensors"), 2.4),),
        (),
        note="a small stand-in for ACE-Step and DiffRhythm where ace-step/ is absent; pull it by its folder name",
    ),
    WeightSource(
        "stable-audio-open",
        "audio",
        (
            RepoPart(
                "stabilityai/stable-audio-open-1.0",
                diffusers_files("projection_model", "scheduler", "text_encoder", "tokenizer", "transformer", "vae"),
                5,
                gated=True,
            ),
        ),
        (("Qubico/mmaudio", "video2audio"),),
        note="Stable Audio Open stands in for MMAudio",
    ),
    WeightSource(
        "tts-clone",
        "audio",
        (
            RepoPart("nari-labs/Dia-1.6B-0626", ("*.json", "model*.safetensors"), 6.4),
            RepoPart("descript/dac_44khz", ("*.json", "model*.safetensors"), 0.31, subfolder="dac"),
        ),
        (("Qubico/tts", "zero-shot"),),
        note="Dia-1.6B (Apache-2.0) clones ref_audio with its transcript; without it Piper's voice speaks",
    ),
    WeightSource(
        "trellis-image-large",
        "trellis",
        (
            RepoPart("microsoft/TRELLIS-image-large", ("pipeline.json", "ckpts/*"), 3),
            RepoPart(
                "facebook/dinov2-with-registers-large", ("config.json", "model.safetensors"), 1.2, subfolder="dinov2"
            ),
        ),
        (("Qubico/trellis", "image-to-3d"),),
        note="needs Microsoft's TRELLIS code and its CUDA extensions; opaque images also need rembg's u2net.onnx "
        "in u2net/ (docs/backends.md)",
    ),
    WeightSource(
        "trellis-text-xlarge",
        "trellis",
        (
            RepoPart("microsoft/TRELLIS-text-xlarge", ("pipeline.json", "ckpts/*"), 5),
            RepoPart(
                "openai/clip-vit-large-patch14",
                (
                    "config.json",
                    "model.safetensors",
                    "tokenizer*",
                    "vocab.json",
                    "merges.txt",
                    "special_tokens_map.json",
                ),
                1.7,
                subfolder="clip",
            ),
        ),
        (("Qubico/trellis", "text-to-3d"),),
        note="needs Microsoft's TRELLIS code and its CUDA extensions (docs/backends.md)",
    ),
    WeightSource(
        "vitmatte",
        "image",
        (
            RepoPart(
                "hustvl/vitmatte-base-distinctions-646",
                ("config.json", "preprocessor_config.json", "model.safetensors"),
                0.39,
            ),
        ),
        (("Qubico/image-toolkit", "background-remove"),),
        note="optional: ViTMatte refines the edges of U²-Net-p's cut (which ships in genmill[cpu])",
    ),
    WeightSource(
        "face-restore",
        "image",
        (RepoPart("facefusion/models-3.0.0", ("gfpgan_1.4.onnx",), 0.34),),
        (("Qubico/image-toolkit", "upscale"),),
        note="GFPGAN v1.4 (ONNX) for upscale's face_enhance; Apache-2.0 with StyleGAN2-derived parts under NVIDIA's "
        "licence, trained on FFHQ: check it fits commercial use",
    ),
    WeightSource(
        "grounding-dino",
        "image",
        (RepoPart("IDEA-Research/grounding-dino-base", ("*.json", "vocab.txt", "model.safetensors"), 0.94),),
        (("Qubico/image-toolkit", "segment"),),
        note="with sam2/: segment with any words (without both, MediaPipe's person/face/hand/background)",
    ),
    WeightSource(
        "sam2",
        "image",
        (RepoPart("facebook/sam2.1-hiera-large", ("*.json", "model.safetensors"), 0.9),),
        (("Qubico/image-toolkit", "segment"),),
        note="with grounding-dino/: segment with any words",
    ),
)

FAMILIES = ("flux", "wan", "hunyuan", "audio", "image", "trellis")

"""Tiny, randomly initialised video models in the production folder layout (see genmill.models.video.wan and
genmill.models.video.hunyuan), built from configs with tokenizers made from a few words, so nothing touches the
network. The clips are noise; what the tests check is everything around the pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tests.backends.tiny_tokenizers import clip_tokenizer, t5_tokenizer

WORDS = ["a", "red", "fox", "cat", "dog", "on", "green", "grass", "blue", "sky", "two", "people", "hug", "run"]


def t5_parts() -> tuple[Any, Any]:
    """A UMT5 encoder (Wan, SkyReels) with a unigram tokenizer over WORDS."""
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = t5_tokenizer(WORDS)
    config = UMT5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return tokenizer, UMT5EncoderModel(config)


def wan_vae() -> Any:
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def wan_transformer(**extra: Any) -> Any:
    from diffusers import WanTransformer3DModel

    settings: dict[str, Any] = {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 2,
        "attention_head_dim": 12,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 32,
        "freq_dim": 32,
        "ffn_dim": 32,
        "num_layers": 1,
        "rope_max_seq_len": 32,
    }
    return WanTransformer3DModel(**{**settings, **extra})


def clip_vision() -> tuple[Any, Any]:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(
        hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=16, patch_size=4
    )
    processor = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    return CLIPVisionModel(config), processor


CLIP_TOKENS = 17
"""16x16 images in 4x4 patches plus the class token."""


def save_tiny_lora(pipeline_class: Any, transformer: Any, folder: Path) -> Path:
    """A LoRA on the transformer's attention, with non-zero weights so that it visibly changes the clip."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
    transformer.add_adapter(config, adapter_name="tiny")
    layers = get_peft_model_state_dict(transformer, adapter_name="tiny")
    pipeline_class.save_lora_weights(folder, transformer_lora_layers=layers, safe_serialization=True)
    transformer.delete_adapters("tiny")
    return folder / "pytorch_lora_weights.safetensors"


def build_wan(root: Path) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanPipeline

    torch.manual_seed(0)
    tokenizer, text_encoder = t5_parts()
    vae = wan_vae()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    text = {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "scheduler": scheduler}
    t2v = wan_transformer()
    WanPipeline(transformer=t2v, **text).save_pretrained(root / "wan2.1-t2v-1.3b")
    WanPipeline(transformer=wan_transformer(), **text).save_pretrained(root / "wan2.1-t2v-14b")
    image_encoder, image_processor = clip_vision()
    i2v = {"in_channels": 36, "image_dim": 8, "added_kv_proj_dim": 24}
    WanImageToVideoPipeline(
        transformer=wan_transformer(**i2v), image_encoder=image_encoder, image_processor=image_processor, **text
    ).save_pretrained(root / "wan2.1-i2v-14b")
    WanImageToVideoPipeline(
        transformer=wan_transformer(**i2v, pos_embed_seq_len=2 * CLIP_TOKENS),
        image_encoder=image_encoder,
        image_processor=image_processor,
        **text,
    ).save_pretrained(root / "wan2.1-flf2v-14b")
    WanPipeline(
        transformer=wan_transformer(), transformer_2=wan_transformer(), boundary_ratio=0.875, **text
    ).save_pretrained(root / "wan2.2-t2v-a14b")
    WanImageToVideoPipeline(
        transformer=wan_transformer(in_channels=36),
        transformer_2=wan_transformer(in_channels=36),
        boundary_ratio=0.9,
        **text,
    ).save_pretrained(root / "wan2.2-i2v-a14b")
    lora = save_tiny_lora(WanPipeline, t2v, root / "wan-lora-build")
    (root / "wan-loras").mkdir()
    lora.rename(root / "wan-loras" / "tiny-style.safetensors")
    # SkyReels-V2 is Wan's architecture under its own classes, with a projected CLIP image encoder.
    from diffusers import SkyReelsV2ImageToVideoPipeline, SkyReelsV2Transformer3DModel, UniPCMultistepScheduler
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    vision = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=16,
            patch_size=4,
            projection_dim=8,
        )
    )
    skyreels = SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36,
        out_channels=16,
        text_dim=32,
        freq_dim=32,
        ffn_dim=32,
        num_layers=1,
        image_dim=8,
        added_kv_proj_dim=24,
        rope_max_seq_len=32,
    )
    SkyReelsV2ImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        image_encoder=vision,
        image_processor=image_processor,
        transformer=skyreels,
        vae=vae,
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
    ).save_pretrained(root / "skyreels-v2-i2v")


LLAMA_SPECIALS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<image>"]


def llama_tokenizer() -> Any:
    """A character-level Llama tokenizer (every printable ASCII character, plus the chat markers and `<image>`
    that HunyuanVideo's prompt templates use)."""
    from transformers import LlamaTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for code in range(32, 127):
        vocab.setdefault(chr(code), len(vocab))
    vocab.setdefault("\u2581", len(vocab))
    vocab.setdefault("\n", len(vocab))
    tokenizer = LlamaTokenizerFast(vocab=vocab, merges=[], model_max_length=4096)
    tokenizer.add_special_tokens({"pad_token": "<pad>", "additional_special_tokens": LLAMA_SPECIALS})
    return tokenizer


def clip_text() -> tuple[Any, Any]:
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_tokenizer(WORDS)
    model = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=8,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=2,
            projection_dim=8,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            max_position_embeddings=77,
        )
    )
    return tokenizer, model


def llama_config(vocab_size: int) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=37,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=0,
    )


def hunyuan_vae() -> Any:
    from diffusers import AutoencoderKLHunyuanVideo

    return AutoencoderKLHunyuanVideo(
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )


def hunyuan_transformer(model_class: Any = None, **extra: Any) -> Any:
    from diffusers import HunyuanVideoTransformer3DModel

    settings: dict[str, Any] = {
        "in_channels": 4,
        "out_channels": 4,
        "num_attention_heads": 2,
        "attention_head_dim": 10,
        "num_layers": 1,
        "num_single_layers": 1,
        "num_refiner_layers": 1,
        "patch_size": 1,
        "patch_size_t": 1,
        "guidance_embeds": True,
        "text_embed_dim": 16,
        "pooled_projection_dim": 8,
        "rope_axes_dim": (2, 4, 4),
    }
    return (model_class or HunyuanVideoTransformer3DModel)(**{**settings, **extra})


def build_hunyuan(root: Path) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline
    from transformers import LlamaModel

    torch.manual_seed(0)
    tokenizer = llama_tokenizer()
    tokenizer_2, text_encoder_2 = clip_text()
    vae = hunyuan_vae()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    transformer = hunyuan_transformer()
    HunyuanVideoPipeline(
        text_encoder=LlamaModel(llama_config(len(tokenizer))),
        tokenizer=tokenizer,
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
    ).save_pretrained(root / "hunyuanvideo")
    lora = save_tiny_lora(HunyuanVideoPipeline, transformer, root / "hunyuan-lora-build")
    (root / "hunyuan-loras").mkdir()
    lora.rename(root / "hunyuan-loras" / "tiny-style.safetensors")


def build_framepack(root: Path) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoFramepackPipeline
    from diffusers import HunyuanVideoFramepackTransformer3DModel as Framepack
    from transformers import LlamaModel, SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    tokenizer = llama_tokenizer()
    tokenizer_2, text_encoder_2 = clip_text()
    siglip = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=4
        )
    )
    transformer = hunyuan_transformer(
        Framepack, patch_size=2, has_image_proj=True, image_proj_dim=8, has_clean_x_embedder=True
    )
    HunyuanVideoFramepackPipeline(
        text_encoder=LlamaModel(llama_config(len(tokenizer))),
        tokenizer=tokenizer,
        transformer=transformer,
        vae=hunyuan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        image_encoder=siglip,
        feature_extractor=SiglipImageProcessor(size={"height": 16, "width": 16}),
    ).save_pretrained(root / "framepack")


I2V_TEMPLATE_PARTS = [
    "system",
    "user",
    "assistant",
    "Describe the video by detailing the following aspects according to the reference image: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:",
]
"""HunyuanVideo-I2V's prompt template in few tokens, so that it fits the pipeline's token budget as with the real
Llama 3 tokenizer (one character per token would truncate it)."""


def build_hunyuan_i2v(root: Path) -> None:
    """Both HunyuanVideo-I2V kinds; the text encoder is a toy LLaVA whose CLIP tower yields the 576 image tokens
    the pipeline's template expects (48x48 images in 2x2 patches)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoImageToVideoPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(0)
    tokenizer = llama_tokenizer()
    tokenizer.add_tokens(I2V_TEMPLATE_PARTS)
    tokenizer_2, text_encoder_2 = clip_text()
    vision = CLIPVisionConfig(
        hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=48, patch_size=2
    )
    # The pipeline reads pad_token_id from the top-level config, as the published weights have it; transformers
    # keeps it there though LlavaConfig does not declare it (so its types do not know it).
    undeclared: dict[str, Any] = {"pad_token_id": 0}
    config = LlavaConfig(
        vision_config=vision,
        text_config=llama_config(len(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=576,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        **undeclared,
    )
    text_encoder = LlavaForConditionalGeneration(config)
    processor = CLIPImageProcessor(size={"shortest_edge": 48}, crop_size={"height": 48, "width": 48})
    vae = hunyuan_vae()
    for kind, channels in (("concat", 9), ("replace", 4)):
        condition = "latent_concat" if kind == "concat" else "token_replace"
        HunyuanVideoImageToVideoPipeline(
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=hunyuan_transformer(in_channels=channels, image_condition_type=condition),
            vae=vae,
            scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
            text_encoder_2=text_encoder_2,
            tokenizer_2=tokenizer_2,
            image_processor=processor,
        ).save_pretrained(root / f"hunyuanvideo-i2v-{kind}")

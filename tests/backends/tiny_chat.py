"""A tiny random chat model saved the way `save_pretrained` saves real ones: a 1-layer Llama over a word-level
tokenizer built from a few words, with a chat template, so the local chat backend loads it with the same
`from_pretrained` calls production uses. Nothing is downloaded; the answers are random words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

WORDS = ("hello", "there", "friend", "say", "the", "sky", "is", "blue", "system", "be", "brief", "user", "assistant")
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


def tiny_chat_tokenizer() -> Any:
    """A word-level fast tokenizer: specials first, then the words; whitespace splits, unknowns map to <unk>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate((*SPECIALS, *WORDS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_tiny_chat_model(folder: Path, *, seed: int = 0) -> Path:
    """Write a tiny random LlamaForCausalLM and its tokenizer to `folder` with `save_pretrained`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_chat_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    # A random model mostly picks special tokens, which decode to nothing: its saved generation config keeps it
    # to words (and never ends early), so the answers have text and every call uses exactly max_tokens.
    model.generation_config.suppress_tokens = [tokenizer.convert_tokens_to_ids(t) for t in SPECIALS]
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

"""Tokenizers built locally from a few words, for the tiny random text encoders of the backend tests (nothing is
downloaded). Prompts made of these words tokenize to whole-word pieces; anything else falls back to letters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def t5_tokenizer(words: Sequence[str], *, max_length: int = 512) -> Any:
    """A unigram (SentencePiece-style) T5 tokenizer: pad 0, eos 1, unk 2, then the words, then their letters."""
    from transformers import T5Tokenizer  # what transformers 5 also names T5TokenizerFast

    letters = sorted(set("".join(words)))
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(f"\u2581{word}", -1.0) for word in words] + [(c, -3.0) for c in letters]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def clip_tokenizer(words: Sequence[str]) -> Any:
    """A CLIP BPE tokenizer over the words' letters (no merges): bos 0, eos/pad 1."""
    from transformers import CLIPTokenizer

    letters = sorted(set("".join(words)))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in [*letters, *(f"{c}</w>" for c in letters)]:
        vocab[token] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)

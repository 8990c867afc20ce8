"""Whole Hugging Face model directories: `minillm export` and `minillm import-hf`.

Lecture: a model is its weights and the tokenizer that numbers its tokens, and a chat model
also the layout it was finetuned on. `export` writes all three in the files `transformers`
reads (GPT2LMHeadModel weights and config, tokenizer.json, tokenizer_config.json with a Jinja
chat template), so `AutoTokenizer` and `AutoModelForCausalLM` give the same ids, logits and
greedy text as minillm. `import-hf` turns such a directory (or GPT-2's own) into a run
directory every minillm command accepts.
A reward model exports as a GPT2ForSequenceClassification (score head folded, see
hf_gpt2._classifier_tensors). Left out: importing reward models, sharded weights.
"""
from __future__ import annotations

import os
from pathlib import Path

from minillm.tokenizers import chat_template as chat
from minillm.io import checkpoint
from minillm.errors import MissingFileError, UserError
from minillm.io.hf_gpt2 import load_hf_gpt2, save_hf_gpt2
from minillm.model.gpt import GPT
from minillm.io.run_dir import check_output_dir, prepare_output_dir, refuse_inputs_as_output
from minillm.io.safe_files import read_json
from minillm.tokenizers import Tokenizer
from minillm.tokenizers.hf_format import read_gpt2_files, read_tokenizer_json, to_tokenizer_json

END_OF_TEXT = "<|endoftext|>"


# ----- export -----------------------------------------------------------------------------------

def export_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a run's model, tokenizer and chat template as a Hugging Face model directory.

    Args:
        run_dir: a run directory (pretrain, sft, rlhf, ...) or its checkpoint directory.
        out_dir: the directory to write: new or empty, or with overwrite a model minillm wrote
            (replaced); never the run itself or its checkpoint.
    Returns:
        out_dir: config.json, model.safetensors, generation_config.json, tokenizer.json,
        tokenizer_config.json, special_tokens_map.json.
    """
    refuse_inputs_as_output(out_dir, {"RUN_DIR": run_dir})
    ckpt = checkpoint.load(run_dir)
    check_output_dir(out_dir, overwrite)
    if ckpt.tokenizer is None:
        raise UserError(f"{run_dir} has no tokenizer.json, so its token ids cannot be given meaning "
                         "in another program; save the checkpoint with its tokenizer")
    tokenizer, config = ckpt.tokenizer, ckpt.model.config
    roles = special_token_roles(tokenizer, ckpt.meta, reward_model=ckpt.model_kind == "reward_model")
    pad = roles["pad_token"]
    ids = {"eos_token_id": stop_ids(tokenizer, ckpt.meta) or None,
           "pad_token_id": tokenizer.special_tokens[pad] if pad else None}
    files = {"tokenizer.json": to_tokenizer_json(tokenizer),
             "tokenizer_config.json": tokenizer_config(tokenizer, roles, config.block_size),
             "special_tokens_map.json": special_tokens_map(tokenizer, roles)}
    return save_hf_gpt2(ckpt.model, out_dir, token_ids=ids, extra_files=files)


def special_token_roles(tokenizer: Tokenizer, meta: dict, reward_model: bool = False) -> dict[str, str | None]:
    """Which special token plays each role transformers knows: {"eos_token", "pad_token", "unk_token"}.

    eos is where an answer ends: <|end|> for a chat model, else <|endoftext|>; pad is
    <|endoftext|> when there is one (padding is masked out, any id does), else eos. A reward
    model's classifier reads the last token that is not pad, so its pad must never end a real
    input: <|endoftext|> or none (then transformers scores one unpadded row at a time).
    """
    specials = tokenizer.special_tokens
    end_of_text = END_OF_TEXT if END_OF_TEXT in specials else None
    eos = chat.END if chat.uses_chat_template(meta) and chat.END in specials else end_of_text
    return {"eos_token": eos, "pad_token": end_of_text if reward_model else end_of_text or eos,
            "unk_token": getattr(tokenizer, "unk_token", None)}


def stop_ids(tokenizer: Tokenizer, meta: dict) -> list[int]:
    """The ids `minillm generate` stops at by default: <|endoftext|>, and <|end|> for a chat model."""
    names = [END_OF_TEXT] + ([chat.END] if chat.uses_chat_template(meta) else [])
    return [tokenizer.special_tokens[name] for name in names if name in tokenizer.special_tokens]


def tokenizer_config(tokenizer: Tokenizer, roles: dict, block_size: int) -> dict:
    """tokenizer_config.json: the tokenizer class to build, the special tokens' roles, and the
    chat template when the tokenizer has the chat tokens. Nothing is added to encoded text
    (no BOS/EOS) and decoding does not touch spaces, as in minillm."""
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": block_size,
              "clean_up_tokenization_spaces": False, "add_bos_token": False, "add_eos_token": False,
              **{role: token for role, token in roles.items() if token}}
    if all(token in tokenizer.special_tokens for token in (chat.USER, chat.ASSISTANT, chat.END)):
        config["chat_template"] = chat.HF_CHAT_TEMPLATE
    return config


def special_tokens_map(tokenizer: Tokenizer, roles: dict) -> dict:
    """special_tokens_map.json: the roles, and every other special token as "additional"."""
    named = {token for token in roles.values() if token}
    others = [t for t in sorted(tokenizer.special_tokens, key=tokenizer.special_tokens.get) if t not in named]
    return {**{role: token for role, token in roles.items() if token}, "additional_special_tokens": others}


# ----- import -----------------------------------------------------------------------------------

def import_hf(hf_dir: str | os.PathLike, out_run: str | os.PathLike, overwrite: bool = False) -> Path:
    """Turn a Hugging Face GPT-2 directory into a minillm run directory (`out_run/checkpoint`).

    Reads config.json and model.safetensors (see `hf_gpt2.load_hf_gpt2`) and the tokenizer
    from tokenizer.json, or vocab.json + merges.txt. Where the files number tokens otherwise
    than minillm (GPT-2 orders its byte tokens by its byte alphabet), the embedding rows are
    reordered so each token keeps its vector. A directory written by `minillm export` comes
    back with the same ids and weights, and as a chat model if it was one. `out_run` must be new
    or empty, or with overwrite a minillm run (replaced); never `hf_dir` itself.
    """
    hf_dir = Path(hf_dir)
    refuse_inputs_as_output(out_run, {"HF_DIR": hf_dir})
    check_output_dir(out_run, overwrite)
    tokenizer, file_ids = read_hf_tokenizer(hf_dir)
    model = load_hf_gpt2(hf_dir)
    reorder_token_rows(model, file_ids)
    prepare_output_dir(out_run, overwrite)
    meta = {"phase": "import-hf", "source": str(hf_dir.resolve())}
    if read_chat_template(hf_dir) == chat.HF_CHAT_TEMPLATE:
        meta["chat_template"] = chat.TEMPLATE_NAME
    checkpoint.save(model, Path(out_run) / checkpoint.RUN_SUBDIRECTORY, tokenizer, meta=meta)
    return Path(out_run)


def read_chat_template(hf_dir: Path) -> str | None:
    """The Jinja chat template of a directory: in tokenizer_config.json, or in chat_template.jinja
    (where transformers' save_pretrained puts it), or None."""
    config_path, jinja_path = hf_dir / "tokenizer_config.json", hf_dir / "chat_template.jinja"
    template = read_json(config_path).get("chat_template") if config_path.exists() else None
    if template is None and jinja_path.exists():
        template = jinja_path.read_text(encoding="utf-8")
    return template


def read_hf_tokenizer(hf_dir: Path) -> tuple[Tokenizer, list[int]]:
    """The tokenizer of a Hugging Face directory and its file ids (see hf_format.read_tokenizer_json)."""
    if (hf_dir / "tokenizer.json").exists():
        return read_tokenizer_json(hf_dir / "tokenizer.json")
    if (hf_dir / "vocab.json").exists() and (hf_dir / "merges.txt").exists():
        return read_gpt2_files(hf_dir / "vocab.json", hf_dir / "merges.txt")
    raise MissingFileError(f"{hf_dir} holds no tokenizer: expected tokenizer.json, or GPT-2's "
                            "vocab.json and merges.txt")


def reorder_token_rows(model: GPT, file_ids: list[int]) -> None:
    """Give minillm token i the embedding row (and untied head column) of file token file_ids[i].

    Rows the tokenizer never produces (a vocabulary padded to a round size) keep their
    order after the tokenizer's. Example: file_ids [2, 0, 1] on 4 rows -> rows [2, 0, 1, 3].
    """
    V = model.config.vocab_size
    if max(file_ids) >= V:
        raise UserError(f"the tokenizer uses id {max(file_ids)} but the model has only {V} embedding "
                         "rows (config.json vocab_size): they do not belong together")
    taken = set(file_ids)
    order = file_ids + [j for j in range(V) if j not in taken]
    if order == list(range(V)):
        return
    model.wte.weight.data = model.wte.weight.data[order]  # (V, C) rows in minillm's id order
    if model.lm_head is not None:
        model.lm_head.weight.data = model.lm_head.weight.data[:, order]  # (C, V) columns likewise

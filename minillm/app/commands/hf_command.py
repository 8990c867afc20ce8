"""`minillm export` and `minillm import-hf`: the door to the Hugging Face ecosystem.

    minillm export runs/pipeline/rlhf runs/hf/rlhf      # a directory transformers loads
    minillm import-hf path/to/gpt2 runs/gpt2             # GPT-2 (or an export) as a minillm run
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the `export` and `import-hf` commands."""
    p = subparsers.add_parser(
        "export", help="write a run as a Hugging Face model directory (weights, tokenizer, chat template)",
        description="Write RUN_DIR's model as GPT2LMHeadModel files (a reward model as "
                    "GPT2ForSequenceClassification), its tokenizer as tokenizer.json and its chat template "
                    "as Jinja in tokenizer_config.json, so that transformers' AutoTokenizer and "
                    "AutoModelForCausalLM load OUT_DIR and agree with minillm.")
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a run directory (pretrain, sft, rlhf, dpo, reward) or its checkpoint")
    p.add_argument("out_dir", metavar="OUT_DIR", help="the Hugging Face directory to write (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace the model minillm wrote in OUT_DIR before")
    p.set_defaults(func=export)
    p = subparsers.add_parser(
        "import-hf", help="turn a Hugging Face GPT-2 directory into a minillm run directory",
        description="Read config.json + model.safetensors and tokenizer.json (or GPT-2's vocab.json + "
                    "merges.txt) from HF_DIR and write OUT_RUN/checkpoint, which generate, chat, sft, "
                    "reward and rlhf accept.")
    p.add_argument("hf_dir", metavar="HF_DIR", help="a GPT-2 model directory (e.g. written by minillm export)")
    p.add_argument("out_run", metavar="OUT_RUN", help="the minillm run directory to write (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace the minillm run already in OUT_RUN")
    p.set_defaults(func=import_hf)


def export(args: argparse.Namespace) -> int:
    from minillm.io.hf_dir import export_run  # loaded only when the command runs

    out = export_run(args.run_dir, args.out_dir, overwrite=args.overwrite)
    print(f"wrote {out} (load it with transformers: AutoModelForCausalLM.from_pretrained({str(out)!r}))")
    return 0


def import_hf(args: argparse.Namespace) -> int:
    from minillm.io.hf_dir import import_hf as read_directory

    out = read_directory(args.hf_dir, args.out_run, overwrite=args.overwrite)
    print(f"wrote {out / 'checkpoint'} (try: minillm generate --ckpt {out} --prompt \"Hello\")")
    return 0

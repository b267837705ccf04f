"""The Hugging Face Trainer + PEFT peer of `python run.py budget=full` (results/training_path).

The training-path benchmark (`lora_exp/bench/training_path.py`) compares lora_exp's default run
with what a Hugging Face user would write for the same recipe: `transformers.Trainer` training a
PEFT `LoraConfig` model on the same data, split, tokenisation, model and hyperparameters. The
recipe is whatever the composed lora_exp config says (by default MiniLM, LoRA r=8 alpha=8 on
query and value, tweet_sentiment, all training data, 3 epochs, batch 32, AdamW at the hparams
file's lr with weight decay 0.01, 6% linear warm-up then linear decay, bf16 on a GPU, eval batch
128, seed 0). Only the data code is shared (read-only): the Hydra config, `load_splits`, the
budget's subsampling, the tokenizer and the backbone loader; training, evaluation and the
checkpoint choice are the Trainer's own.

    python -m lora_exp.bench.hf_trainer_peft --out DIR budget=full \\
        model.local_path=bundle/minilm-fp16 model.tokenizer=hub

Everything after `--out DIR` is a Hydra override, as on `python run.py`. The result is
`DIR/result.json` (the columns of training_path's table.csv, plus `trainable`), and one summary
line on stdout. Timings, in seconds from the start of this process (not of the module import):

    startup_s  process start until `trainer.train()` is called: interpreter and imports, config,
               data load, tokenisation, model load, PEFT wrapping, Trainer construction
    train_s    `trainer.train()`: training with its per-epoch validation and checkpointing, and
               the best checkpoint's reload at the end
    eval_s     the final `trainer.predict` on the test split
    wall_s     process start until the result is written

`tokens_per_s` is real (non-padding) training tokens over all epochs divided by train_s;
`peak_mem_bytes` is `torch.cuda.max_memory_allocated()` at the end of training (None on a CPU).
Bad input (an unknown override, a non-LoRA method) prints one line on stderr and exits with 2.
"""

from __future__ import annotations

import time


def _process_start_offset() -> float:
    """`time.perf_counter()` value at this process's start (at this import without psutil)."""
    now = time.perf_counter()
    try:
        import psutil

        # The interpreter's own start-up and the imports before this one count, as they do for
        # the lora_exp rows, which training_path times from outside the process.
        return now - max(0.0, time.time() - psutil.Process().create_time())
    except ImportError:
        return now


_START = _process_start_offset()

import argparse  # noqa: E402  (after the clock: imports are part of startup_s)
import platform  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from lora_exp.errors import UserError  # noqa: E402

CONF = Path(__file__).resolve().parents[2] / "conf"
# PEFT names the LoRA'd modules by their last name component: the logical targets it can express.
PEFT_TARGETS = ("q", "k", "v")


def elapsed() -> float:
    """Seconds since this process started."""
    return time.perf_counter() - _START


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line on stderr and exit 2 (argparse's default also prints the usage)."""
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def compose(overrides: list[str]):
    """The config `python run.py <overrides>` would run, or a UserError for a bad override."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        # MissingConfigException is an IOError as well as a HydraException.
        raise UserError(f"bad override in {overrides}: {str(err).splitlines()[0]}") from err


def lora_targets(cfg) -> list[str]:
    """PEFT `target_modules` for the config's logical targets (q, v -> query, value on BERT)."""
    from lora_exp.models import get_family

    family = get_family(cfg.model.family)
    names = []
    for target in cfg.method.targets:
        site = family.sites.get(target) if target in PEFT_TARGETS else None
        if site is None or site.fused_index is not None:
            raise UserError(
                f"the HF + PEFT peer adapts q, k, v of unfused attention only; got target "
                f"'{target}' on model family {family.name}"
            )
        # The site's pattern ends in `\.<module name>$`, e.g. `...attention\.self\.query$`.
        names.append(re.search(r"(\w+)\$$", site.pattern).group(1))
    return names


def _optional_int(value) -> int | None:
    return None if value is None else int(value)


def settings(cfg) -> dict:
    """Every value the run needs, read (and so validated) before anything heavy starts."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        if cfg.method.name != "lora":
            raise UserError(f"the HF + PEFT peer runs method=lora only; got '{cfg.method.name}'")
        if cfg.task.problem != "single_label_classification":
            raise UserError(f"the peer scores accuracy; task {cfg.task.name} is {cfg.task.problem}")
        budget = cfg.budget
        return {
            "epochs": int(cfg.epochs),
            "lr": float(cfg.lr),
            "weight_decay": float(cfg.weight_decay),
            "warmup_ratio": float(cfg.warmup_ratio),
            "batch_size": int(cfg.batch_size),
            "eval_batch_size": int(cfg.eval_batch_size),
            "seed": int(cfg.seed),
            "max_seq_len": int(cfg.task.max_seq_len),
            "max_train": None
            if budget.max_train_examples is None
            else int(budget.max_train_examples),
            "max_eval": None if budget.max_eval_examples is None else int(budget.max_eval_examples),
            "rank": int(cfg.method.rank),
            "alpha": float(cfg.method.alpha),
            "dropout": float(cfg.method.dropout),
            # lora_exp's kaiming init is PEFT's default (A kaiming-uniform, B zero).
            "init": {"kaiming": True, "gaussian": "gaussian"}[str(cfg.method.init)],
            "targets": lora_targets(cfg),
        }
    except (OmegaConfBaseException, ValueError, TypeError, KeyError) as err:
        raise UserError(f"bad configuration: {str(err).splitlines()[0]}") from err


def _subsample(dataset, limit: int | None, seed: int):
    """A seeded subsample of at most `limit` rows, as `lora_exp.tasks.datamodule._subsample`.

    Copied, not imported: that module imports Lightning, which a Hugging Face user's startup
    would not pay.
    """
    if limit is None or limit >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(int(limit)))


def load_data(cfg, tokenizer, s: dict):
    """Train/validation/test as lora_exp's data module makes them, tokenised without padding.

    The subsampling repeats `lora_exp.tasks.datamodule.TaskDataModule.setup` (seeded by the
    task's split seed, not the run's), so both implementations see the same examples;
    tests/test_hf_trainer_peft.py checks the copy against the original.
    """
    from datasets.utils.logging import disable_progress_bar

    from lora_exp.tasks.registry import load_splits

    raw = load_splits(cfg.task)
    split_seed = int(cfg.task.get("split", {}).get("seed", 0))
    raw["train"] = _subsample(raw["train"], s["max_train"], split_seed)
    raw["validation"] = _subsample(raw["validation"], s["max_eval"], split_seed)
    if cfg.task.get("test_is_validation"):
        raw["test"] = raw["validation"]
    fields = list(cfg.task.text_fields)

    def tokenize(batch):
        return tokenizer(
            *[batch[field] for field in fields], truncation=True, max_length=s["max_seq_len"]
        )

    disable_progress_bar()
    return {
        name: raw[name]
        .map(tokenize, batched=True, remove_columns=fields)
        .rename_column("label", "labels")
        for name in ("train", "validation", "test")
    }


def device_name() -> str:
    """The GPU's name, or `cpu <architecture>`."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu {platform.machine()}"


def accuracy(eval_pred) -> dict:
    """Top-1 accuracy of the Trainer's logits: `eval_accuracy` picks the best epoch."""
    import numpy as np

    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def run(out: Path, overrides: list[str]) -> dict:
    """Train, pick the best epoch, score the test split; return the result row."""
    cfg = compose(overrides)
    s = settings(cfg)

    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    from lora_exp.models import load_backbone, load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    data = load_data(cfg, tokenizer, s)
    set_seed(s["seed"])  # before the backbone: the classifier head's init is seeded too
    backbone = load_backbone(
        cfg.model, len(cfg.task.label_names), cfg.task.problem, tokenizer.pad_token_id
    )
    lora = LoraConfig(
        r=s["rank"],
        lora_alpha=s["alpha"],
        target_modules=s["targets"],
        lora_dropout=s["dropout"],
        init_lora_weights=s["init"],
        task_type="SEQ_CLS",  # also trains the classifier head (PEFT's modules_to_save)
    )
    model = get_peft_model(backbone, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix="checkpoints_") as checkpoints:
        args = TrainingArguments(
            output_dir=checkpoints,
            num_train_epochs=s["epochs"],
            per_device_train_batch_size=s["batch_size"],
            per_device_eval_batch_size=s["eval_batch_size"],
            learning_rate=s["lr"],
            weight_decay=s["weight_decay"],
            lr_scheduler_type="linear",
            warmup_steps=s["warmup_ratio"],  # a float below 1 is a ratio (transformers >= 5)
            eval_strategy="epoch",
            save_strategy="epoch",
            load_best_model_at_end=True,
            metric_for_best_model="accuracy",
            greater_is_better=True,
            bf16=torch.cuda.is_available(),
            seed=s["seed"],
            logging_steps=10,
            report_to="none",
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data["train"],
            eval_dataset=data["validation"],
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=accuracy,
        )
        startup_s = elapsed()
        trainer.train()  # includes the per-epoch validation, checkpointing and the best's reload
        train_s = elapsed() - startup_s
        peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
        predicted = trainer.predict(data["test"])
        eval_s = elapsed() - startup_s - train_s
    logits = predicted.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    test_acc = float((np.argmax(logits, axis=-1) == predicted.label_ids).mean())
    tokens = sum(sum(mask) for mask in data["train"]["attention_mask"]) * s["epochs"]
    return {
        "model": cfg.model.name,
        "seq_len": s["max_seq_len"],
        "batch_size": s["batch_size"],
        "method": "lora",
        "impl": "hf_trainer_peft",
        "mode": "eager",
        "default": False,
        "startup_s": round(startup_s, 3),
        "train_s": round(train_s, 3),
        "eval_s": round(eval_s, 3),
        "tokens_per_s": round(tokens / train_s, 1),
        "peak_mem_bytes": peak,
        "test_acc": test_acc,
        "device": (
            torch.cuda.get_device_name()
            if torch.cuda.is_available()
            else f"cpu {platform.machine()}"
        ),
        "trainable": trainable,
        "train_examples": len(data["train"]),
        "epochs": s["epochs"],
        "overrides": overrides,
    }


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="result.json goes here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as on `python run.py`")
    args = parser.parse_intermixed_args(argv)
    try:
        result = run(args.out, list(args.overrides))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from lora_exp.records import write_json_atomic

    result["wall_s"] = round(elapsed(), 3)
    write_json_atomic(args.out / "result.json", result)
    print(
        f"hf_trainer_peft {result['model']} on {result['device']}: startup {result['startup_s']} s,"
        f" train {result['train_s']} s, test {result['eval_s']} s, wall {result['wall_s']} s, "
        f"{result['tokens_per_s']} tokens/s, test acc {result['test_acc']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

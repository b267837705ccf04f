"""Start a run from the best checkpoint of an earlier run (the paper's App. D.1 and D.2).

"We initialize the LoRA modules to our best MNLI checkpoint when adapting to MRPC, RTE, and STS-B"
(following Liu et al. 2019 for RoBERTa and He et al. 2021 for DeBERTa); the restricted (†) setup
starts from the pretrained model instead. The standard-setup hparams files set

    task:
      init_from: {task: mnli}

and `task.init_from=null` on the command line turns it off. The source run is found through the run
records under `records_root`: a successful record of task `init_from.task` with the same model,
method, rank, alpha, targets, seed and setup (rank/alpha/targets compared only where the method
has them). Among several, runs on all training data come first, then the newest. Its checkpoint is
`<run_dir>/checkpoints/best.ckpt` (the best validation epoch), a Lightning checkpoint whose
`state_dict` holds `model.<parameter name>` for the tensors that trained.

Loaded: every tensor of that checkpoint outside the task head (for LoRA, each adapted matrix's A
and B); not the head, which has MNLI's 3 outputs where MRPC/RTE have 2 and STS-B 1, and stays
freshly initialised, as in the paper's code.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lora_exp.errors import UserError

log = logging.getLogger("lora_exp")
RECORD_NAME = "record.json"
BEST = Path("checkpoints") / "best.ckpt"
METHOD_KEYS = ("rank", "alpha", "targets")  # what makes the tensors and their scaling the same


def _identity(config: dict, seed) -> dict:
    """The fields two runs must share for one to start from the other's tensors."""
    method = config.get("method") or {}
    return {
        "model": (config.get("model") or {}).get("name"),
        "method": method.get("name"),
        **{key: method.get(key) for key in METHOD_KEYS},
        "seed": seed,
        "setup": config.get("setup", "standard"),
    }


def _is_full_data(config: dict) -> bool:
    return (config.get("budget") or {}).get("max_train_examples") is None


def source_task(cfg: DictConfig) -> str | None:
    """The task whose checkpoint this run starts from, or None."""
    spec = cfg.task.get("init_from")
    return str(spec.task) if spec else None


def producing_command(cfg: DictConfig, task: str) -> str:
    """The command that trains the source run this configuration looks for."""
    method = cfg.method
    args = [f"model={cfg.model.name}", f"method={method.name}", f"task={task}"]
    for key in ("rank", "alpha"):
        if method.get(key) is not None:
            args.append(f"{key}={method[key]}")
    if method.get("targets") is not None:
        args.append(f"'targets=[{','.join(method.targets)}]'")
    args += [f"seed={cfg.seed}", f"budget={cfg.budget.name}"]
    if cfg.get("setup", "standard") != "standard":
        args.append(f"setup={cfg.setup}")
    if cfg.model.get("local_path"):
        args.append(f"model.local_path={cfg.model.local_path}")
    if cfg.task.get("data_dir"):
        args.append(f"task.data_dir={cfg.task.data_dir}")  # a GLUE root serves every task
    if str(cfg.records_root) != "outputs":
        args.append(f"records_root={cfg.records_root}")
    return "python run.py " + " ".join(args)


def find_init_checkpoint(cfg: DictConfig, records_root: Path) -> Path:
    """`best.ckpt` of the run this configuration starts from (see the module docstring).

    Raises:
        UserError: no such successful run (the message gives the command that produces it), or
            its checkpoint file is gone.
    """
    task = source_task(cfg)
    if task is None:
        raise UserError("task.init_from is not set: this run starts from the pretrained model")
    config = OmegaConf.to_container(cfg, resolve=True)
    wanted = _identity(config, cfg.seed)
    candidates, without_checkpoint = [], []
    for path in (
        sorted(Path(records_root).rglob(RECORD_NAME)) if Path(records_root).exists() else []
    ):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a record being replaced right now, or not ours
        other = record.get("config") or {}
        if (
            record.get("status") != "success"
            or (other.get("task") or {}).get("name") != task
            or _identity(other, record.get("seed")) != wanted
        ):
            continue
        checkpoint = next(
            (
                d / BEST
                for d in (path.parent, Path(record.get("run_dir") or path.parent))
                if (d / BEST).is_file()
            ),
            None,
        )
        if checkpoint is None:
            without_checkpoint.append(str(path.parent))
            continue
        candidates.append((_is_full_data(other), record.get("finished_at") or "", checkpoint))
    if candidates:
        best = max(candidates, key=lambda c: (c[0], c[1]))[2]
        log.info("starting from %s (task.init_from=%s)", best, task)
        return best
    lost = (
        f" (the run(s) {', '.join(without_checkpoint)} match but their {BEST} is gone)"
        if without_checkpoint
        else ""
    )
    raise UserError(
        f"task.init_from: this {cfg.task.name} run starts from the best {task} checkpoint of the "
        f"same model, method, rank, alpha, targets and seed (the paper's standard setup), and "
        f"records_root={records_root} has no successful {task} run like that{lost}. Produce it "
        f"first with: {producing_command(cfg, task)}  -- or start from the pretrained model with "
        f"task.init_from=null"
    )


def load_init_checkpoint(model, checkpoint: Path, family) -> list[str]:
    """Copy the checkpoint's tensors outside the task head into `model`; return their names.

    Call after `method.apply(model, family)` (the A, B parameters must exist) and before training.

    Raises:
        UserError: a tensor has no counterpart of the same shape in `model`, or a trainable
            parameter outside the head is not in the checkpoint (a different method or targets).
    """
    import torch

    from lora_exp.models import is_head_parameter

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    params = dict(model.named_parameters())
    loaded = []
    with torch.no_grad():
        for key, tensor in state.items():
            name = key.removeprefix("model.")
            if is_head_parameter(family, name):
                continue  # the source task's head: other labels
            if name not in params or params[name].shape != tensor.shape:
                found = tuple(params[name].shape) if name in params else "no such parameter"
                raise UserError(
                    f"{checkpoint}: tensor {name} {tuple(tensor.shape)} does not fit this model "
                    f"({found}); the source run used another model, method or rank"
                )
            params[name].copy_(tensor.to(dtype=params[name].dtype))
            loaded.append(name)
    absent = [
        n
        for n, p in params.items()
        if p.requires_grad and not is_head_parameter(family, n) and n not in loaded
    ]
    if absent or not loaded:
        raise UserError(
            f"{checkpoint} lacks {len(absent)} trainable tensor(s) of this model, e.g. "
            f"{absent[:1]}; the source run used other targets or another method"
        )
    log.info("loaded %d tensors from %s (the head is left as initialised)", len(loaded), checkpoint)
    return loaded

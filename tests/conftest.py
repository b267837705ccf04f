"""Shared fixtures: offline environment, tiny models built from configs, Hydra composition."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Offline and quiet before anything imports transformers/datasets/wandb: a failed hub lookup can
# otherwise wait for network time-outs.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models run fastest on one thread, and parallel test processes must not oversubscribe cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Tokenised splits are cached on disk (lora_exp/tasks/token_cache.py): one fresh cache per test
# session, never the user's.
os.environ.setdefault("LORA_EXP_CACHE", tempfile.mkdtemp(prefix="lora_exp_test_cache_"))

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"


# A real `python run.py` in seconds: a tiny BERT fully fine-tuned on 512 tweets for 3 epochs.
TINY_RUN = [
    "model=tiny-bert",
    "method=full_ft",
    "lr=3e-3",
    "budget.max_train_examples=512",
    "budget.max_eval_examples=128",
    "epochs=3",
    "trainer.enable_progress_bar=false",
    "trainer.deterministic=true",
]


def compose(overrides: list[str] | None = None):
    """The config `python run.py <overrides>` would run (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides or [])


def run_cli(args: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: float = 600):
    """Run `python run.py <args>` in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill_after_first_checkpoint(args: list[str], last_checkpoint: Path, poll: float = 0.05) -> None:
    """Start `args`, SIGKILL it as soon as `last_checkpoint` exists (mid-training), and wait."""
    import signal
    import time

    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not last_checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(poll)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture
def tiny_model():
    """Factory: a tiny random-initialised HF model of a family, from conf/model/tiny-*.yaml."""
    import torch

    from lora_exp.models import load_backbone

    def build(name: str = "tiny-bert", num_labels: int = 3, seed: int = 0):
        cfg = compose([f"model={name}"])
        torch.manual_seed(seed)
        model = load_backbone(cfg.model, num_labels, "single_label_classification", pad_token_id=0)
        return model.eval(), cfg

    return build

"""Turn the embedded learning-rate search into hparams files (the search is on validation only).

For each method, the learning rate with the highest best-epoch val/acc among the successful runs
under results/embedded_lr_search*/runs (seed 0, tweet_sentiment, quick budget; ties go to the
lower rate) is written to conf/hparams/minilm/<method>/{tweet_sentiment,bbc_news}.yaml, keeping any
other setting already in those files. Usage: python scripts/choose_lr.py [runs dir]
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("tweet_sentiment", "bbc_news")


def best_learning_rates(runs: list[Path]) -> dict[str, tuple[float, float, dict[float, float]]]:
    """method -> (chosen lr, its val/acc, every lr's val/acc)."""
    scores: dict[str, dict[float, float]] = defaultdict(dict)
    for path in sorted(p for root in runs for p in root.rglob("record.json")):
        record = json.loads(path.read_text())
        if record.get("status") != "success" or not record.get("best"):
            continue
        config = record["config"]
        scores[config["method"]["name"]][float(config["lr"])] = record["best"]["val/acc"]
    return {
        method: (max(sorted(by_lr), key=lambda lr: by_lr[lr]), max(by_lr.values()), by_lr)
        for method, by_lr in scores.items()
    }


def write_hparams(method: str, lr: float, val_acc: float, grid: dict[float, float]) -> None:
    for task in TASKS:
        path = ROOT / "conf" / "hparams" / "minilm" / method / f"{task}.yaml"
        existing = OmegaConf.load(path) if path.exists() else OmegaConf.create()
        existing.lr = lr
        grid_text = ", ".join(f"{k:g}: {v:.4f}" for k, v in sorted(grid.items()))
        header = (
            "# @package _global_\n"
            f"# MiniLM + {method} on {task} (the embedded methods study). lr {lr:g} was chosen\n"
            "# by the embedded LR search on tweet_sentiment's validation split (seed 0, quick\n"
            f"# budget; best-epoch val/acc by lr: {grid_text}); scripts/choose_lr.py wrote it.\n"
            f"# `python run.py method={method} task={task}` picks this file up automatically.\n"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + OmegaConf.to_yaml(existing))


def main() -> int:
    runs = [Path(a) for a in sys.argv[1:]] or sorted(ROOT.glob("results/embedded_lr_search*/runs"))
    chosen = best_learning_rates(runs)
    if not chosen:
        print(f"error: no successful runs under {runs}", file=sys.stderr)
        return 2
    for method, (lr, acc, grid) in sorted(chosen.items()):
        write_hparams(method, lr, acc, grid)
        print(f"{method:10s} lr={lr:g} val/acc={acc:.4f}  grid={grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

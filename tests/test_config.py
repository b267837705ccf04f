"""Config composition: every model x method x task composes, knobs reach the method, CLI help."""

from __future__ import annotations

import pytest

from tests.conftest import CONF, compose, run_cli
from tests.family_cases import TINY_MODELS


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


MODELS, METHODS, TASKS = _options("model"), _options("method"), _options("task")


def test_groups_have_the_paper_and_embedded_options():
    assert {"minilm", *TINY_MODELS} <= set(MODELS)
    assert {"roberta-base", "roberta-large", "deberta-v2-xxlarge", "gpt2-medium"} <= set(MODELS)
    assert {"full_ft", "lora"} <= set(METHODS)
    assert {"tweet_sentiment", "bbc_news", "mnli"} <= set(TASKS)


def _check_composes(model: str, method: str, task: str) -> None:
    from lora_exp.models import get_family

    cfg = compose([f"model={model}", f"method={method}", f"task={task}"])
    assert (cfg.model.name, cfg.method.name, cfg.task.name) == (model, method, task)
    assert get_family(cfg.model.family).name == cfg.model.family
    assert cfg.task.version >= 1 and cfg.task.primary_metric in cfg.task.metrics


@pytest.mark.parametrize("model", MODELS)
def test_every_model_with_every_method_and_task_composes(model):
    """Every model x method and every model x task (the fast subset of the full product)."""
    for method in METHODS:
        _check_composes(model, method, "tweet_sentiment")
    for task in TASKS:
        _check_composes(model, "lora", task)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_every_model_method_task_triple_composes(model):
    for method in METHODS:
        for task in TASKS:
            _check_composes(model, method, task)


def test_default_is_the_embedded_lora_run():
    cfg = compose()
    assert (cfg.model.name, cfg.method.name, cfg.task.name) == ("minilm", "lora", "tweet_sentiment")
    assert (cfg.method.rank, cfg.method.alpha, list(cfg.method.targets)) == (8, 8, ["q", "v"])
    assert cfg.budget.name == "quick" and cfg.epochs == 2


def test_top_level_knobs_reach_the_method():
    cfg = compose(["method=lora", "rank=4", "alpha=16", "targets=[q,k,v,o]", "task=bbc_news"])
    assert cfg.method.rank == 4 and cfg.method.alpha == 16
    assert list(cfg.method.targets) == ["q", "k", "v", "o"]


def test_full_budget_uses_the_task_epochs_and_all_data():
    cfg = compose(["budget=full", "task=bbc_news"])
    assert cfg.epochs == cfg.task.epochs
    assert cfg.budget.max_train_examples is None and cfg.budget.max_eval_examples is None


def test_every_yaml_opens_with_a_comment():
    for path in CONF.rglob("*.yaml"):
        first = path.read_text().lstrip().splitlines()[0]
        assert first.startswith("#"), path


def test_help_lists_groups_and_cfg_job_prints_the_config():
    result = run_cli(["--help"])
    assert result.returncode == 0
    for group in ("model:", "method:", "task:", "trainer:", "logger:"):
        assert group in result.stdout
    assert "roberta-base" in result.stdout and "tweet_sentiment" in result.stdout
    result = run_cli(
        ["method=lora", "rank=4", "targets=[q,k,v,o]", "task=bbc_news", "--cfg", "job"]
    )
    assert result.returncode == 0
    assert "rank: 4" in result.stdout and "name: bbc_news" in result.stdout

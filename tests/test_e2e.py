"""E2E NLG: the challenge's CSV files, MR formatting, the five metrics on hand-made outputs, the
loss and sequence layout, offline failure, Table 11, and a tiny end-to-end run.

Fixtures are written by the tests: a few E2E rows in the challenge's CSV format, and a byte-level
BPE tokenizer trained on them (`tokenizers`), since GPT-2's vocabulary cannot be downloaded here.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from lora_exp.errors import UserError
from tests import record_keys
from tests.conftest import compose, run_cli
from tests.family_cases import FAMILY_CASES, Arch, lora_count

# (MR, references): several references per MR, as in the challenge's files.
TRAIN = [
    ("name[The Eagle], eatType[coffee shop], near[Burger King]",
     ["The Eagle is a coffee shop near Burger King.",
      "Near Burger King is a coffee shop called The Eagle.",
      "The Eagle coffee shop is close to Burger King."]),
    ("name[The Mill], eatType[pub], food[Italian], area[riverside]",
     ["The Mill is a pub serving Italian food by the riverside.",
      "By the riverside, The Mill pub serves Italian food."]),
    ("name[Zizzi], eatType[restaurant], priceRange[£20-25], familyFriendly[yes]",
     ["Zizzi is a family-friendly restaurant with prices of £20-25.",
      "Zizzi, a restaurant costing £20-25, is family friendly."]),
    ("name[Aromi], eatType[coffee shop], customer rating[5 out of 5]",
     ["Aromi is a coffee shop rated 5 out of 5.",
      "The coffee shop Aromi has a customer rating of 5 out of 5."]),
]  # fmt: skip
DEV = [
    ("name[The Vaults], eatType[pub], near[Café Adriatic]",
     ["The Vaults is a pub near Café Adriatic.", "Near Café Adriatic is The Vaults, a pub."]),
    ("name[Blue Spice], eatType[restaurant], area[city centre]",
     ["Blue Spice is a restaurant in the city centre."]),
]  # fmt: skip
TEST = [
    ("name[The Wrestlers], eatType[pub], food[Italian]",
     ["The Wrestlers is a pub serving Italian food.",
      "Italian food is served at The Wrestlers pub.", "The Wrestlers pub has Italian food."]),
    ("name[Cotto], eatType[coffee shop], near[The Bakers]",
     ["Cotto is a coffee shop near The Bakers."]),
    ("name[Strada], eatType[restaurant], priceRange[cheap]",
     ["Strada is a cheap restaurant.", "The cheap restaurant Strada."]),
]  # fmt: skip
FILES = {"trainset.csv": TRAIN, "devset.csv": DEV, "testset_w_refs.csv": TEST}


def write_e2e_csv(path: Path, groups) -> None:
    """The challenge's format: header `mr,ref`, one (MR, reference) pair a row, quoted as needed."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mr", "ref"])
        for mr, refs in groups:
            for ref in refs:
                writer.writerow([mr, ref])


@pytest.fixture(scope="module")
def e2e_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    for name, groups in FILES.items():
        write_e2e_csv(root / name, groups)
    return root


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory, e2e_dir) -> Path:
    """A small byte-level BPE (GPT-2's scheme) trained on the fixture text, as save_pretrained."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from lora_exp.tasks.e2e import format_mr

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    texts = [
        t for mr, refs in TRAIN + DEV + TEST for t in [format_mr(mr), *(" " + r for r in refs)]
    ]
    bpe.train_from_iterator(texts, trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    out = tmp_path_factory.mktemp("bpe")
    wrapped.save_pretrained(str(out))
    return out


def _task(data_dir, *extra):
    return compose(["task=e2e", f"task.data_dir={data_dir}", *extra]).task


# --- data: files, grouping, formatting ---------------------------------------------------------


def test_fixture_files_have_the_challenge_layout(e2e_dir):
    with open(e2e_dir / "trainset.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["mr", "ref"]
    assert len(rows) == 1 + 9 and all(len(r) == 2 for r in rows)
    raw = (e2e_dir / "trainset.csv").read_text(encoding="utf-8")
    assert '"name[The Eagle], eatType[coffee shop], near[Burger King]"' in raw  # commas: quoted


def test_loader_reads_rows_and_groups_references_per_mr(e2e_dir):
    from lora_exp.tasks import load_splits
    from lora_exp.tasks.e2e_metrics import group_references

    splits = load_splits(_task(e2e_dir))
    assert {k: len(v) for k, v in splits.items()} == {"train": 9, "validation": 3, "test": 6}
    assert splits["train"].column_names == ["mr", "context", "ref"]
    mrs, refs = group_references(list(splits["test"]["mr"]), list(splits["test"]["ref"]))
    assert mrs == [mr for mr, _ in TEST]
    assert refs == [r for _, r in TEST]
    assert [len(r) for r in refs] == [3, 1, 2]
    assert splits["validation"]["ref"][2] == "Blue Spice is a restaurant in the city centre."
    assert splits["train"]["ref"][6] == "Zizzi, a restaurant costing £20-25, is family friendly."


def test_mr_formats():
    from lora_exp.tasks.e2e import format_mr

    mr = "name[Zizzi], eatType[restaurant], priceRange[£20-25], customer rating[5 out of 5]"
    assert format_mr(mr) == (
        "name : Zizzi | Type : restaurant | price : £20-25 | customer rating : 5 out of 5"
    )
    assert format_mr(mr, "raw") == mr
    with pytest.raises(UserError, match="cannot parse"):
        format_mr("no slots here")


def test_bad_files_fail_with_one_message(e2e_dir, tmp_path):
    from lora_exp.tasks.e2e import check_source

    for name in FILES:
        shutil.copy(e2e_dir / name, tmp_path / name)
    (tmp_path / "devset.csv").write_text("meaning,text\nx,y\n")
    with pytest.raises(UserError, match="lacks the column mr or ref"):
        check_source(_task(tmp_path))
    (tmp_path / "devset.csv").unlink()
    with pytest.raises(UserError, match=r"devset\.csv") as err:
        check_source(_task(tmp_path))
    assert "\n" not in str(err.value)


def test_offline_without_data_dir_fails_at_once_naming_the_files(monkeypatch):
    import socket

    from lora_exp.checks.inputs import preflight

    def no_network(*args, **kwargs):
        raise AssertionError("offline mode must not touch the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HF_DATASETS_CACHE", "/nonexistent")
    start = time.perf_counter()
    with pytest.raises(UserError) as err:
        preflight(compose(["task=e2e", "model=tiny-gpt2"]))
    assert time.perf_counter() - start < 0.5
    message = str(err.value)
    assert "\n" not in message and "is not reachable" in message
    for part in ("task.data_dir=DIR", "DIR/trainset.csv", "DIR/devset.csv",
                 "DIR/testset_w_refs.csv", "mr,ref"):  # fmt: skip
        assert part in message, part


def test_offline_cli_run_fails_within_five_seconds(tmp_path):
    start = time.time()
    result = run_cli(["task=e2e", "model=tiny-gpt2", f"hydra.run.dir={tmp_path}",
                      f"records_root={tmp_path}"])  # fmt: skip
    elapsed = time.time() - start
    assert result.returncode == 2, result.stderr[-2000:]
    assert "DIR/testset_w_refs.csv" in result.stderr
    assert elapsed < 5.0, elapsed


def test_missing_java_fails_with_one_message_unless_skipped(e2e_dir, monkeypatch, tmp_path):
    from lora_exp.tasks.e2e import check_source
    from lora_exp.tasks.e2e_metrics import score_e2e

    monkeypatch.setenv("PATH", str(tmp_path))  # no java on it
    with pytest.raises(UserError) as err:
        check_source(_task(e2e_dir))
    message = str(err.value)
    assert "needs Java" in message and "default-jre-headless" in message
    assert "task.generation.skip_meteor=true" in message and "\n" not in message
    check_source(_task(e2e_dir, "task.generation.skip_meteor=true"))
    with pytest.raises(UserError, match="needs Java"):
        score_e2e(["a b"], [["a b"]])
    scores = score_e2e(["the cat sat"], [["the cat sat"]], skip_meteor=True)
    assert set(scores) == {"bleu", "nist", "rouge_l", "cider", "ptb_java"}
    assert scores["ptb_java"] == 0.0


# --- metrics on hand-made outputs ----------------------------------------------------------------

HYPS = [
    "The Eagle is a coffee shop near Burger King, it's family-friendly.",
    "Zizzi is a cheap restaurant with prices of £20-25 near the river.",
    "Strada is a restaurant.",
]
REFS = [
    ["The Eagle is a coffee shop near Burger King.",
     "Near Burger King is a family-friendly coffee shop."],
    ["Zizzi is a family-friendly restaurant with prices of £20-25.",
     "Zizzi costs £20-25 and is cheap."],
    ["Strada is a cheap restaurant.", "The cheap restaurant Strada is near the river."],
]  # fmt: skip


def test_bleu_matches_sacrebleu():
    import sacrebleu

    from lora_exp.tasks.e2e_metrics import MTEvalScores

    stats = MTEvalScores()
    for hyp, refs in zip(HYPS, REFS, strict=True):
        stats.add(hyp, refs)
    streams = [list(r) for r in zip(*REFS, strict=True)]
    expected = sacrebleu.corpus_bleu(HYPS, streams, lowercase=True, tokenize="13a").score / 100
    assert stats.bleu() == pytest.approx(expected, abs=1e-9)
    assert 0.3 < expected < 0.9  # a non-trivial value: some n-grams match, some do not
    # A short output: the brevity penalty (closest reference length) must agree too.
    short = MTEvalScores()
    short.add("The Eagle is a coffee shop near", REFS[0])
    ref = sacrebleu.corpus_bleu(["The Eagle is a coffee shop near"], [[REFS[0][0]], [REFS[0][1]]],
                                lowercase=True, tokenize="13a")  # fmt: skip
    assert ref.bp < 1 and short.bleu() == pytest.approx(ref.score / 100, abs=1e-9)


def test_mteval_tokenization_is_sacrebleus_13a():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    from lora_exp.tasks.e2e_metrics import mteval_tokenize

    for text in [*HYPS, *(r for group in REFS for r in group)]:
        assert mteval_tokenize(text) == Tokenizer13a()(text).split()


def test_nist_hand_worked():
    """Corpus: (hyp "a b", refs "a b" | "a c") and (hyp "c", ref "c a b d").

    Reference counts over the corpus: 8 words; a 3, b 2, c 2, d 1; (a,b) 2. Matches: a, b, (a,b) in
    segment 1, c in segment 2. info(a) = log2(8/3), info(b) = info(c) = log2(8/2) = 2, info(a b) =
    log2(count(a) / count(a b)) = log2(3/2). Unigram term: (log2(8/3) + 2 + 2) / 3 output unigrams;
    bigram term: log2(3/2) / 1 output bigram. Output length 3, average reference length 2 + 4 = 6:
    penalty exp(-beta * ln(3/6)^2), beta = -ln(0.5) / ln(1.5)^2 (mteval-v13a).
    """
    from lora_exp.tasks.e2e_metrics import MTEvalScores

    stats = MTEvalScores()
    stats.add("a b", ["a b", "a c"])
    stats.add("c", ["c a b d"])
    beta = -math.log(0.5) / math.log(1.5) ** 2
    expected = ((math.log2(8 / 3) + 4) / 3 + math.log2(1.5)) * math.exp(-beta * math.log(0.5) ** 2)
    assert stats.nist() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.31524, abs=1e-4)


JAVA = shutil.which("java") is not None
needs_java = pytest.mark.skipif(not JAVA, reason="METEOR 1.5 and the PTB tokenizer need Java")


@needs_java
def test_rouge_l_hand_worked_and_the_coco_best_of_references_quirk():
    """hyp "the cat sat on the mat"; ref 1 "the cat is on the mat today": LCS 5, P 5/6, R 5/7;
    ref 2 "sat": LCS 1, P 1/6, R 1. COCO takes max P (5/6) and max R (1) over references, then
    F = (1 + 1.2^2) P R / (R + 1.2^2 P) = 0.92424. Second MR scores 0; the corpus is their mean."""
    from lora_exp.tasks.e2e_metrics import score_e2e

    scores = score_e2e(
        ["The cat sat on the mat.", "xyz"],
        [["The cat is on the mat today.", "Sat."], ["abc"]],
    )
    p, r = 5 / 6, 1.0
    assert scores["rouge_l"] == pytest.approx((1 + 1.44) * p * r / (r + 1.44 * p) / 2, abs=1e-12)


def _cider_d(hyps: list[list[str]], refs: list[list[list[str]]], n=4, sigma=6.0) -> float:
    """CIDEr-D written from the paper (Vedantam et al. 2015) and coco-caption's choices:
    document frequency over the reference sets, idf = ln(#MRs) - ln(max(1, df)), raw counts as tf,
    clipped hypothesis weights, Gaussian length penalty, mean over n, mean over references, x10."""

    def grams(tokens):
        return Counter(
            tuple(tokens[i : i + k]) for k in range(1, n + 1) for i in range(len(tokens) - k + 1)
        )

    df = Counter(g for group in refs for g in set().union(*(grams(r) for r in group)))
    log_n = math.log(len(refs))

    def vectors(tokens):
        vec = [{} for _ in range(n)]
        for g, tf in grams(tokens).items():
            vec[len(g) - 1][g] = tf * (log_n - math.log(max(1.0, df[g])))
        return vec

    total = 0.0
    for hyp, group in zip(hyps, refs, strict=True):
        vh, score = vectors(hyp), 0.0
        for ref in group:
            vr = vectors(ref)
            for k in range(n):
                dot = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
                norms = math.sqrt(sum(w * w for w in vh[k].values())) * math.sqrt(
                    sum(w * w for w in vr[k].values())
                )
                sim = dot / norms if norms else 0.0
                score += sim * math.exp(-((len(hyp) - len(ref)) ** 2) / (2 * sigma**2)) / n
        total += 10 * score / len(group)
    return total / len(hyps)


@needs_java
def test_cider_matches_an_independent_implementation():
    from lora_exp.tasks.e2e_metrics import ptb_tokenize, score_e2e

    scores = score_e2e(HYPS, REFS)
    hyps = [ptb_tokenize({0: [h]})[0][0].split() for h in HYPS]
    refs = [[s.split() for s in ptb_tokenize({0: group})[0]] for group in REFS]
    assert scores["cider"] == pytest.approx(_cider_d(hyps, refs), rel=1e-9)
    assert scores["cider"] > 0.5


@needs_java
def test_meteor_hand_worked():
    """Output "on the mat the cat sat", reference "the cat sat on the mat": all 6 words match
    exactly, so P = R = 1 and Fmean = 1; they align in 2 chunks ("on the mat", "the cat sat"), so
    METEOR 1.5 = Fmean * (1 - gamma * (chunks / matches)^beta) with the English defaults gamma 0.60,
    beta 0.20: 1 - 0.6 * (2/6)^0.2. (An output identical to a reference scores exactly 1: METEOR
    1.5 drops the fragmentation penalty then.)"""
    from lora_exp.tasks.e2e_metrics import score_e2e

    scores = score_e2e(["on the mat the cat sat"], [["the cat sat on the mat", "a dog"]])
    assert scores["meteor"] == pytest.approx(1 - 0.6 * (2 / 6) ** 0.2, abs=1e-4)


@needs_java
def test_all_five_metrics_on_perfect_and_empty_outputs():
    from lora_exp.tasks.e2e_metrics import score_e2e

    perfect = score_e2e([r[0] for r in REFS], REFS)
    assert perfect["bleu"] == pytest.approx(1.0) and perfect["rouge_l"] == pytest.approx(1.0)
    assert perfect["meteor"] == pytest.approx(1.0)  # METEOR 1.5: no fragmentation penalty then
    assert perfect["nist"] > 2 and perfect["cider"] > 1
    empty = score_e2e(["", "", ""], REFS)  # an untrained model may stop at once
    assert empty["bleu"] < 1e-6 and empty["rouge_l"] == 0 and empty["cider"] == 0


@needs_java
def test_python_ptb_approximation_matches_the_java_tokenizer_on_e2e_text():
    from lora_exp.tasks.e2e_metrics import ptb_tokenize, simple_ptb_tokenize

    texts = [
        *HYPS,
        *(r for group in REFS for r in group),
        *(r for _, refs in TRAIN + DEV + TEST for r in refs),
    ]
    java = ptb_tokenize({i: [t] for i, t in enumerate(texts)})
    assert [java[i][0] for i in range(len(texts))] == [simple_ptb_tokenize(t) for t in texts]


# --- sequence layout, loss, decoding -------------------------------------------------------------


def test_sequence_layout_masks_the_context(bpe_dir):
    from transformers import AutoTokenizer

    from lora_exp.tasks.lm_data import encode_pair, encode_prompt

    tok = AutoTokenizer.from_pretrained(str(bpe_dir))
    eos = tok.eos_token_id
    row = encode_pair(tok, "name : Aromi", "Aromi is nice.", 512)
    ctx = tok("name : Aromi", add_special_tokens=False)["input_ids"]
    text = tok(" Aromi is nice.", add_special_tokens=False)["input_ids"]
    assert row["input_ids"] == [*ctx, eos, *text, eos]
    assert row["labels"] == [-100] * (len(ctx) + 1) + [*text, eos]
    assert encode_prompt(tok, "name : Aromi", 512) == [*ctx, eos]
    assert tok.decode(text).strip() == "Aromi is nice."


def test_label_smoothed_loss_is_the_official_formula_on_targets_only():
    import torch

    from lora_exp.generation_module import masked_lm_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, 1], [-100, 2, 6, -100, -100]])
    eps = 0.1
    logp = logits.log_softmax(-1)
    terms = []
    for b in range(2):
        for t in range(1, 5):  # position t - 1 predicts token t
            if labels[b, t] >= 0:
                nll = -logp[b, t - 1, labels[b, t]]
                terms.append((1 - eps) * nll + eps * (-logp[b, t - 1].mean()))
    expected = torch.stack(terms).mean()
    assert masked_lm_loss(logits, labels, eps).item() == pytest.approx(expected.item(), rel=1e-6)
    changed = logits.clone()
    changed[0, 0] += 5.0  # predicts a masked (context) token: must not matter
    assert masked_lm_loss(changed, labels, eps).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(UserError, match="inserts positions"):  # prefix tuning adds positions
        masked_lm_loss(torch.randn(2, 9, 7), labels, eps)


def test_left_padded_beam_search_equals_one_prompt_at_a_time(bpe_dir):
    import torch
    from omegaconf import OmegaConf

    from lora_exp.fit_generation import load_causal_lm, load_generation_tokenizer
    from lora_exp.generation_module import GenerationModule
    from lora_exp.methods import build_method
    from lora_exp.tasks.lm_data import encode_prompt, pad_batch

    cfg = compose(["model=tiny-gpt2", f"model.tokenizer={bpe_dir}", "task=e2e"])
    tok = load_generation_tokenizer(cfg.model)
    torch.manual_seed(0)
    model = load_causal_lm(cfg.model, tok).eval()
    gen = OmegaConf.merge(cfg.task.generation, {"num_beams": 3, "max_new_tokens": 6})
    task = OmegaConf.merge(cfg.task, {"generation": gen})
    module = GenerationModule(model, build_method(cfg.method), task, {}, tok, tok.eos_token_id,
                              tok.eos_token_id, [])  # fmt: skip
    prompts = [encode_prompt(tok, c, 64) for c in ["name : Aromi", "name : The Mill | Type : pub"]]
    batch = pad_batch([{"input_ids": p} for p in prompts], tok.eos_token_id, left=True)
    together = module.generate(batch["input_ids"], batch["attention_mask"])
    alone = [module.generate(torch.tensor([p]), torch.ones(1, len(p), dtype=torch.long))[0]
             for p in prompts]  # fmt: skip
    assert together == alone


# --- Table 11 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt2-medium", "gpt2-large"])
def test_table11_hparams(model):
    cfg = compose([f"model={model}", "method=lora", "task=e2e"])
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.rank, cfg.alpha) == (2e-4, 8, 5, 4, 32)
    assert list(cfg.targets) == ["q", "v"] and cfg.weight_decay == 0.01
    assert cfg.method.dropout == 0.1 and cfg.task.label_smoothing == 0.1
    assert cfg.task.warmup_steps == 500
    g = cfg.task.generation
    assert (g.num_beams, g.length_penalty, g.no_repeat_ngram_size) == (10, 0.9, 4)
    header = (Path(__file__).parents[1] / "conf/hparams" / model / "lora/e2e.yaml").read_text()
    assert "Table 11" in header and "0.8" in header  # names the official README's difference


# --- a tiny run through run.py -------------------------------------------------------------------


# Every causal-LM family of the family matrix (tests/family_cases.py).
DECODERS = [row.model for row in FAMILY_CASES if row.causal_lm]


@pytest.mark.slow  # ~40 s on 2 cores: Lightning's import, training, METEOR's paraphrase table
@needs_java
@pytest.mark.parametrize("model", DECODERS)
def test_tiny_run_writes_a_record_with_the_e2e_metrics(e2e_dir, bpe_dir, tmp_path, model):
    # LoRA r=8 on q and v: r (d + d) + r (d + d_kv) per block (grouped queries: W_v is d -> d_kv)
    trainable = lora_count(Arch.of(compose([f"model={model}"])), 8, ("q", "v"))
    run_dir = tmp_path / "run"
    result = run_cli([
        f"model={model}", f"model.tokenizer={bpe_dir}", "method=lora", "task=e2e",
        f"task.data_dir={e2e_dir}", "task.max_seq_len=96", "task.generation.num_beams=2",
        "task.generation.max_new_tokens=8", "lr=1e-2", "batch_size=4", "epochs=2",
        "trainer.enable_progress_bar=false", "logger=csv",
        f"hydra.run.dir={run_dir}", f"records_root={tmp_path}",
    ])  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "success"
    assert set(record["test"]) == {
        f"test/{m}" for m in ("bleu", "nist", "meteor", "rouge_l", "cider")
    }
    assert all(math.isfinite(v) and v >= 0 for v in record["test"].values())
    assert [h["epoch"] for h in record["history"]] == [0, 1]
    assert all("val/loss" in h for h in record["history"])
    assert record["best"]["val/loss"] == min(h["val/loss"] for h in record["history"])
    assert record["task"]["test_inputs"] == 3 and record["task"]["ptb_tokenizer"] == "java"
    assert record["task"]["split_sizes_used"] == {"train": 9, "validation": 3, "test": 6}
    assert record["params"]["params/trainable"] == trainable
    assert record_keys.key_paths(record) == record_keys.GENERATION  # as before fit_result.py
    hyp = (run_dir / "predictions" / "test_hyp.txt").read_text().splitlines()
    refs = (run_dir / "predictions" / "test_ref.txt").read_text().split("\n\n")
    assert len(hyp) == 3 and [len(g.strip().splitlines()) for g in refs] == [3, 1, 2]
    measured = record["measurements"]  # every run measures itself, generation too (issue 5)
    assert measured["latency/ms"] > 0 and measured["throughput/tokens_per_s"] > 0
    assert measured["checkpoint/saved_bytes"] > 0 and measured["memory/peak_bytes"] > 0


def test_dry_run_counts_the_causal_lm():
    from lora_exp.dry_run import dry_counts

    counts, _ = dry_counts(compose(["model=gpt2-medium", "method=lora", "task=e2e"]))
    assert counts["params/trainable"] == 24 * 2 * 2 * 1024 * 4  # r=4 on q and v (Table 11)
    assert counts["params/base"] == 354_823_168  # GPT2LMHeadModel, lm_head tied to the embedding

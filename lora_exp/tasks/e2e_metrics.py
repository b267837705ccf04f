"""The E2E NLG Challenge's five metrics, computed as its official script `measure_scores.py` does.

The challenge's evaluation (tuetschek/e2e-metrics, the script the paper's Table 3 comes from via
microsoft/LoRA `examples/NLG/eval/e2e/measure_scores.py`) scores a corpus of system outputs, one
per meaning representation (MR), against all of that MR's human references:

    bleu      BLEU-4, corpus level, mteval-v13a tokenisation, lower-cased, closest reference length
    nist      NIST-5, corpus level, information weights from the references of the whole corpus
    meteor    METEOR 1.5 (`-l en -norm`), the Java program, with its English paraphrase table
    rouge_l   ROUGE-L F (beta = 1.2, best precision and recall over the references), MR average
    cider     CIDEr-D (tf-idf over the corpus' references, clipping, Gaussian length penalty, x10)

Where the pieces come from, and why:

* BLEU and NIST: the official script computes them with its own module `pymteval` (a Python port
  of mteval-v13a.pl), which is not on PyPI. sacrebleu has no NIST, and NLTK's NIST weighs n-grams
  and lengths differently from mteval, so both accumulators are written here (`MTEvalScores`), and
  the tests check BLEU against sacrebleu and NIST against a hand-worked example.
* METEOR, ROUGE-L, CIDEr: `pycocoevalcap` (the MS-COCO caption evaluation the official script
  vendors) runs them on text tokenised by its bundled Stanford PTB tokenizer (Java, lower-cased,
  punctuation removed), as the official script does. METEOR 1.5 and the tokenizer ship inside the
  pycocoevalcap wheel (`meteor-1.5.jar` and its paraphrase table, `stanford-corenlp-3.4.1.jar`), so
  nothing is downloaded at run time; they need a Java runtime (`java` on PATH).

Without Java, scoring fails with one message, unless `skip_meteor=True`: then METEOR is left out
and ROUGE-L and CIDEr use `simple_ptb_tokenize`, a Python approximation of the PTB tokenizer
(identical on the test fixtures, not guaranteed on every text; the result says which was used).

Values are fractions (BLEU 0.704 for the paper's 70.4; tables print x100) except NIST and CIDEr,
which have no fixed range and are reported as the paper does.
"""

from __future__ import annotations

import math
import re
import shutil
from collections import Counter, defaultdict

from lora_exp.errors import UserError

METRIC_NAMES = ("bleu", "nist", "meteor", "rouge_l", "cider")
JAVA_HINT = (
    "install a Java runtime (Debian/Ubuntu: `apt-get install -y default-jre-headless`; "
    "scripts/setup.sh does it when it runs as root)"
)


# --- BLEU and NIST, the mteval way ---------------------------------------------------------------


def mteval_tokenize(text: str) -> list[str]:
    """mteval-v13a's tokenisation (no international mode), as the official script applies it."""
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    text = text.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
    text = text.replace("&gt;", ">")
    text = f" {text} "
    text = re.sub(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])", r" \1 ", text)  # punctuation, symbols
    text = re.sub(r"([^0-9])([\.,])", r"\1 \2 ", text)  # period/comma unless after a digit
    text = re.sub(r"([\.,])([^0-9])", r" \1 \2", text)  # period/comma unless before a digit
    text = re.sub(r"([0-9])(-)", r"\1 \2 ", text)  # dash after a digit
    return text.split()


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


class MTEvalScores:
    """Corpus-level BLEU-4 and NIST-5 over multiple references, accumulated segment by segment.

    Follows mteval-v13a as the E2E script's `pymteval` does: case-insensitive; BLEU clips each
    hypothesis n-gram by its largest count in any one reference and takes, per segment, the
    reference length closest to the hypothesis (the shorter on ties); NIST weighs a matched n-gram
    w1..wn by info = log2(count(w1..wn-1) / count(w1..wn)), counts over every reference of the
    corpus (the 0-gram count is the number of reference words), and penalises with the average
    reference length: exp(-beta * log(min(1, sys_len / ref_len))^2), beta = -ln 0.5 / ln(1.5)^2.
    Zero BLEU precisions are floored at 1e-15 (pymteval's "forced smoothing"), so BLEU is defined.
    """

    BLEU_N, NIST_N = 4, 5
    NIST_BETA = -math.log(0.5) / math.log(1.5) ** 2

    def __init__(self) -> None:
        self.bleu_hits = [0] * self.BLEU_N
        self.bleu_lens = [0] * self.BLEU_N
        self.bleu_ref_len = 0
        self.ref_counts: list[Counter] = [Counter() for _ in range(self.NIST_N + 1)]
        self.nist_hits: list[list[Counter]] = [[] for _ in range(self.NIST_N)]
        self.nist_lens = [0] * self.NIST_N
        self.avg_ref_len = 0.0

    def add(self, hypothesis: str, references: list[str]) -> None:
        """Add one segment: a system output and all references of its MR."""
        if not references:
            raise ValueError("every hypothesis needs at least one reference")
        hyp = [t.lower() for t in mteval_tokenize(hypothesis)]
        refs = [[t.lower() for t in mteval_tokenize(r)] for r in references]
        for n in range(1, self.NIST_N + 1):
            hyp_ngrams = _ngrams(hyp, n)
            best_ref = Counter()  # per n-gram, its largest count in any single reference
            for ref in refs:
                best_ref |= _ngrams(ref, n)
                self.ref_counts[n].update(_ngrams(ref, n))
            clipped = hyp_ngrams & best_ref  # min(hypothesis count, best reference count)
            # mteval adds len - n + 1 even when negative (a hypothesis shorter than n).
            if n <= self.BLEU_N:
                self.bleu_hits[n - 1] += sum(clipped.values())
                self.bleu_lens[n - 1] += len(hyp) - n + 1
            self.nist_hits[n - 1].append(clipped)
            self.nist_lens[n - 1] += len(hyp) - n + 1
        self.bleu_ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
        ref_words = sum(len(r) for r in refs)
        self.ref_counts[0][()] += ref_words
        self.avg_ref_len += ref_words / len(refs)

    def bleu(self) -> float:
        log_precision = 0.0
        for hits, total in zip(self.bleu_hits, self.bleu_lens, strict=True):
            log_precision += math.log(max(hits, 1e-15) / max(total, 1e-9))
        sys_len = self.bleu_lens[0]
        brevity = 1.0
        if sys_len <= self.bleu_ref_len:
            brevity = math.exp(1.0 - self.bleu_ref_len / (sys_len if sys_len else 1e-5))
        return brevity * math.exp(log_precision / self.BLEU_N)

    def _info(self, ngram: tuple) -> float:
        count = self.ref_counts[len(ngram)].get(ngram, 0)
        if not count:
            return 0.0
        return math.log2(self.ref_counts[len(ngram) - 1][ngram[:-1]] / count)

    def nist(self) -> float:
        total = 0.0
        for n in range(self.NIST_N):
            info = sum(
                self._info(ngram) * hits
                for segment in self.nist_hits[n]
                for ngram, hits in segment.items()
            )
            total += info / self.nist_lens[n] if self.nist_lens[n] > 0 else 0.0
        ratio = self.nist_lens[0] / self.avg_ref_len if self.avg_ref_len else 0.0
        if ratio >= 1:
            penalty = 1.0
        elif ratio <= 0:
            penalty = 0.0
        else:
            penalty = math.exp(-self.NIST_BETA * math.log(ratio) ** 2)
        return penalty * total


# --- the COCO metrics ---------------------------------------------------------------------------

# The punctuation tokens pycocoevalcap's PTBTokenizer removes after tokenising.
PTB_PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ","}
PTB_PUNCTUATION |= {":", "-", "--", "...", ";"}


def java_available() -> bool:
    return shutil.which("java") is not None


def require_java(what: str = "E2E evaluation") -> None:
    """Raise one UserError when `java` is missing (METEOR 1.5 and the PTB tokenizer are Java)."""
    if not java_available():
        raise UserError(
            f"{what} needs Java: METEOR 1.5 and the PTB tokenizer that the E2E challenge's "
            f"official evaluation uses are Java programs (bundled in pycocoevalcap). Either "
            f"{JAVA_HINT}, or pass task.generation.skip_meteor=true to leave METEOR out (ROUGE-L "
            f"and CIDEr then use a Python approximation of the PTB tokenizer)"
        )


def simple_ptb_tokenize(text: str) -> str:
    """Python approximation of PTBTokenizer -preserveLines -lowerCase, punctuation removed."""
    text = text.lower().replace("\n", " ")
    text = text.replace("£", " # ").replace("€", " $ ").replace("$", " $ ")  # PTB's currencies
    text = re.sub(r"([.,!?;:()\[\]{}\"])", r" \1 ", text)  # split punctuation off words
    text = re.sub(r"(\w)('s|'re|'ve|'ll|'d|'m|n't)\b", r"\1 \2", text)  # PTB clitics
    tokens = [t for t in text.split() if t not in PTB_PUNCTUATION and t not in '()[]{}"']
    return " ".join(tokens)


def ptb_tokenize(texts: dict[int, list[str]]) -> dict[int, list[str]]:
    """pycocoevalcap's PTBTokenizer (Java) on {segment id: [sentences]}; same keys and order."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = {key: [{"caption": s} for s in sentences] for key, sentences in texts.items()}
    return PTBTokenizer().tokenize(captions)


_METEOR = None


def meteor_score(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    """Corpus METEOR 1.5 from pycocoevalcap's wrapper of the bundled jar (stats aggregated).

    The jar loads its paraphrase table for about ten seconds at start, so one process is kept
    for the life of this Python process (it exits when its input closes).
    """
    global _METEOR
    from pycocoevalcap.meteor.meteor import Meteor

    if _METEOR is None or _METEOR.meteor_p.poll() is not None:
        _METEOR = Meteor()
    score, _ = _METEOR.compute_score(gts, res)
    return float(score)


def score_e2e(
    hypotheses: list[str], references: list[list[str]], skip_meteor: bool = False
) -> dict[str, float]:
    """The five E2E metrics of a corpus: one hypothesis per MR, all of that MR's references.

    Args:
        hypotheses: system outputs, one per MR.
        references: per MR, its human references (at least one each).
        skip_meteor: leave METEOR out instead of failing when Java is missing.

    Returns:
        {"bleu", "nist", "meteor" (unless skipped), "rouge_l", "cider"}; plus "ptb_java" = 1.0 when
        ROUGE-L/CIDEr used the official (Java) tokenizer, 0.0 for the Python approximation.
    """
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference groups")
    if not hypotheses:
        raise ValueError("nothing to score")
    if not skip_meteor:
        require_java()
    mteval = MTEvalScores()
    for hyp, refs in zip(hypotheses, references, strict=True):
        mteval.add(hyp, list(refs))
    scores = {"bleu": mteval.bleu(), "nist": mteval.nist()}

    res_raw = {i: [h] for i, h in enumerate(hypotheses)}
    gts_raw = {i: list(refs) for i, refs in enumerate(references)}
    java = java_available()
    if java:  # one JVM start for outputs and references together
        both = ptb_tokenize({**{2 * i: v for i, v in res_raw.items()},
                             **{2 * i + 1: v for i, v in gts_raw.items()}})  # fmt: skip
        res = {i: both[2 * i] for i in res_raw}
        gts = {i: both[2 * i + 1] for i in gts_raw}
    else:
        res = {i: [simple_ptb_tokenize(s) for s in v] for i, v in res_raw.items()}
        gts = {i: [simple_ptb_tokenize(s) for s in v] for i, v in gts_raw.items()}
    if not skip_meteor:
        scores["meteor"] = meteor_score(gts, res)
    scores["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    scores["cider"] = float(Cider().compute_score(gts, res)[0])
    scores["ptb_java"] = 1.0 if java else 0.0
    return scores


def group_references(mrs: list[str], refs: list[str]) -> tuple[list[str], list[list[str]]]:
    """Rows (mr, ref) -> unique MRs in order of first appearance and each MR's references."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for mr, ref in zip(mrs, refs, strict=True):
        grouped[mr].append(ref)
    return list(grouped), list(grouped.values())

"""xlspt on a GPU: engine speed, a reduced study sweep, and cached == naive on CUDA, in one run.

    python benchmarks/gpu_study.py --data ../shared/sib200 --json     # on the GPU machine (at most ~8 min)
    python benchmarks/gpu_study.py --data ../shared/sib200 --allow-cpu --json   # tiny smoke run on a CPU

Runs from the repository root with or without ``pip install -e .``: the repository's ``src/``
is put first on the import path, so the code measured is this checkout's. It needs no
network and no model weights: the model has **Gemma 3 270M's configuration with random
weights** (18 layers, d 640, 4 query heads and 1 key/value head of 256, 262,144-token
vocabulary and LM head, sliding window 512 with every 6th layer global, rotary bases 10k and
1M), which is what the timings depend on. The real Gemma tokenizer is not there either, so
a word-level tokenizer is built from the SIB-200 text read (as ``build_tokenizer`` in
``tests/conftest.py``), with two changes so that sentences get about as many tokens as the
real tokenizer gives them: words are cut into pieces of at most three characters, and CJK
ideographs are split one by one. Over the study's 52 languages Gemma 3 averages 47.6 tokens
per test sentence and this tokenizer 48.6, so the sweep's evaluation reads about as much text
as with the real model; English gets 46.4 tokens where Gemma gives it 27.6, so the English
training step and evaluation read 1.7x more text than they would (the run prints both). The label words
(``geography, science, entertainment, politics, health, travel, sports``) stay whole tokens.
Model and tokenizer are saved to a temporary directory and loaded with
``xlspt.load_model(path, dtype=..., device="cuda")``, the path real models take.

Phases, each timed (elapsed printed as it goes, on standard error):

1. setup: read the data, build the tokenizer, build and save the model, load it in float32
   and bfloat16.
2. check: the cached-text engine against the naive full pass on CUDA in float32, on real
   texts of several languages and lengths (left padding, truncation): the read-out hidden
   states of prompts of lengths 1, 4 and 16, several prompts packed into one pass, the
   label-word logits of ``xlspt.evaluate.label_logits`` (cached vs naive), and one training
   step's loss and prompt gradient (lengths 1, 4, 16, and 4 with reparameterization). Passes
   when every maximum difference is at most ``--tolerance`` (1e-4) of the reference's largest
   magnitude.
3. timing: one training step (8 English texts, prompt length 4, forward, backward and AdamW,
   as ``train_prompts`` takes it) with the cached and the naive engine, in bfloat16 and
   float32; scoring the 204 English test sentences with 1 prompt and with 8 prompts
   (bfloat16, ``label_logits``). After warm-up, with ``torch.cuda.synchronize``, the fastest
   of a few repetitions.
4. sweep: a reduced study grid through ``xlspt.study.expand`` / ``run_sweep`` (local
   executor, a ``ResultStore`` in a temporary directory, dtype ``auto`` = bfloat16 on the GPU):
   freezing on and off x prompt lengths 1, 4, 16 x seeds 0, 1 = 12 runs, trained on 8 English
   examples per class for 5 epochs and each evaluated on the study's 52 languages. Reports the
   wall time and runs per minute.

Output: a table on standard output and, with ``--json``, one final JSON line (``gpu``,
``torch``, ``train_step_cached_bf16_s``, ``train_step_naive_bf16_s``, ``eval_1_prompt_s``,
``eval_8_prompts_s``, ``sweep_runs``, ``sweep_seconds``, ``cached_equals_naive_fp32``, the
maximum relative differences, ...). ``--budget-s`` (450) guards the 8 minutes: a phase that
would start past it is skipped (and said so), and the sweep stops starting new work when the
longest piece of work seen so far would end past it (finished runs are kept and counted).

Exit status: 0 when everything ran and passed; 1 when the equivalence check failed or a sweep
run failed; 2 when no CUDA device is present (unless ``--allow-cpu``) or the data is missing.
With ``--allow-cpu`` and no GPU (or with ``--smoke``) a tiny version runs: 2 layers, the
vocabulary cut to the tokenizer's, 2 languages, 1 epoch, one CPU thread (on a busy 2-core
machine two threads stall on each other); it checks the script, not the speed, in about a
minute on the project's 2-core CPU.
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if (REPO / "src" / "xlspt").is_dir():  # measure this checkout, installed or not
    sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Gemma 3 270M (google/gemma-3-270m config.json; the embedded model's converted config agrees).
GEMMA3_270M = dict(
    vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
    num_key_value_heads=1, head_dim=256, sliding_window=512, max_position_embeddings=32768,
    query_pre_attn_scalar=256, rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh",
    final_logit_softcapping=None, attn_logit_softcapping=None, tie_word_embeddings=True,
    attention_bias=False, attention_dropout=0.0,
)
ROPE_THETA_GLOBAL = 1_000_000.0  # full-attention layers
ROPE_THETA_LOCAL = 10_000.0  # sliding-window layers
GLOBAL_EVERY = 6
#: Tokens per SIB-200 test sentence with the real Gemma 3 tokenizer (BOS included), measured once.
GEMMA_TOKENS_ENGLISH = 27.6
GEMMA_TOKENS_52 = 47.6

LABEL_WORDS = {
    "geography": "geography", "science/technology": "science", "entertainment": "entertainment",
    "politics": "politics", "health": "health", "travel": "travel", "sports": "sports",
}
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
PIECE_CHARS = 3
CHECK_LANGS = ("eng_Latn", "fra_Latn", "zho_Hans", "arb_Arab", "yor_Latn", "mya_Mymr")
TRAIN_TEXTS = 8
STEP_PROMPT_LENGTH = 4
EVAL_LANG = "eng_Latn"
SWEEP_LENGTHS = (1, 4, 16)
SWEEP_SEEDS = (0, 1)


def elapsed() -> float:
    return time.perf_counter() - START


def log(message: str) -> None:
    print(f"[{elapsed():6.1f} s] {message}", file=sys.stderr, flush=True)


def quiet_libraries() -> None:
    warnings.filterwarnings("ignore")
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


# --------------------------------------------------------------------------- model and tokenizer


def layer_types(n_layers: int) -> list[str]:
    """Every 6th layer global, the others sliding; a stack shorter than 6 gets its last layer global."""
    types = ["full_attention" if (i + 1) % GLOBAL_EVERY == 0 else "sliding_attention" for i in range(n_layers)]
    if "full_attention" not in types:
        types[-1] = "full_attention"
    return types


def gemma3_config(vocab_size: int = GEMMA3_270M["vocab_size"], num_hidden_layers: int = GEMMA3_270M["num_hidden_layers"]):
    """``Gemma3TextConfig`` with Gemma 3 270M's values, in this transformers version's parameter names."""
    from transformers import Gemma3TextConfig

    params = inspect.signature(Gemma3TextConfig.__init__).parameters
    values = {**GEMMA3_270M, "vocab_size": vocab_size, "num_hidden_layers": num_hidden_layers,
              "layer_types": layer_types(num_hidden_layers), "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if "rope_parameters" in params:  # transformers 5: one rotary setting per layer type
        values["rope_parameters"] = {
            "full_attention": {"rope_type": "default", "rope_theta": ROPE_THETA_GLOBAL},
            "sliding_attention": {"rope_type": "default", "rope_theta": ROPE_THETA_LOCAL},
        }
    else:  # transformers 4.x
        values.update(rope_theta=ROPE_THETA_GLOBAL, rope_local_base_freq=ROPE_THETA_LOCAL, rope_scaling=None)
    if "use_bidirectional_attention" in params:
        values["use_bidirectional_attention"] = False
    return Gemma3TextConfig(**values)


def tokenizer_parts():
    """The normalizer and pre-tokenizer: lower case, CJK ideographs split, words cut into <= 3-character pieces.

    The label words come first in the pattern, so they stay one token wherever they occur.
    """
    from tokenizers import Regex, normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                            lowercase=True)
    words = sorted(set(LABEL_WORDS.values()), key=len, reverse=True)
    pattern = "|".join(re.escape(w) for w in words) + r"|\w{1,%d}|[^\w\s]" % PIECE_CHARS
    pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
    ])
    return normalizer, pre_tokenizer


def build_tokenizer(texts: list[str], max_vocab: int):
    """A word-level tokenizer over the pieces of ``texts`` (most frequent first), BOS prepended."""
    from tokenizers import Tokenizer, models, processors, trainers
    from transformers import PreTrainedTokenizerFast

    normalizer, pre_tokenizer = tokenizer_parts()
    counter = Tokenizer(models.WordLevel(unk_token="<unk>"))
    counter.normalizer = normalizer
    counter.pre_tokenizer = pre_tokenizer
    trainer = trainers.WordLevelTrainer(vocab_size=max_vocab, min_frequency=0, special_tokens=SPECIALS,
                                        show_progress=False)
    counter.train_from_iterator(texts, trainer=trainer)
    learned = sorted(counter.get_vocab().items(), key=lambda item: item[1])
    vocab = {token: i for i, (token, _) in enumerate(learned)}
    for word in LABEL_WORDS.values():  # a label word the texts lack still needs its token
        vocab.setdefault(word, len(vocab))
    assert [vocab[s] for s in SPECIALS] == [0, 1, 2, 3], "special tokens must be ids 0-3 (the model config's)"
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")


def save_random_model(directory: Path, tokenizer, vocab_size: int, num_hidden_layers: int) -> dict:
    """Gemma 3 270M's architecture with seeded random weights, saved with the tokenizer; returns its shape."""
    import torch
    from transformers import Gemma3ForCausalLM

    config = gemma3_config(vocab_size, num_hidden_layers)
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config)
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    del model
    gc.collect()
    return {"layers": num_hidden_layers, "vocab_size": vocab_size, "parameters": parameters}


# --------------------------------------------------------------------------- measuring


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_seconds(fn, device: str, *, repeats: int, inner: int = 1, warmup: int = 1) -> float:
    """Fastest of ``repeats`` timings of ``inner`` calls (per call), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    best = math.inf
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        for _ in range(inner):
            fn()
        synchronize(device)
        best = min(best, (time.perf_counter() - started) / inner)
    return best


def relative_difference(reference, other) -> float:
    """``max |reference - other| / max |reference|``: the largest difference against the tensor's scale."""
    reference, other = reference.detach().double().cpu(), other.detach().double().cpu()
    scale = reference.abs().max().item()
    return (reference - other).abs().max().item() / max(scale, 1e-30)


# --------------------------------------------------------------------------- phases


@dataclass
class Context:
    args: argparse.Namespace
    device: str
    smoke: bool
    data: object = None
    data_dir: Path | None = None
    langs: list[str] = field(default_factory=list)
    model_dir: Path | None = None
    model_info: dict = field(default_factory=dict)
    fp32: object = None
    bf16: object = None
    out: dict = field(default_factory=dict)
    phases: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def phase_setup(ctx: Context, workdir: Path) -> None:
    import xlspt
    from xlspt.engine import encode_texts

    ctx.data = xlspt.Sib200.resolve(ctx.data_dir)
    available = ctx.data.languages()
    ctx.langs = xlspt.resolve_languages(ctx.args.sweep_langs, available)
    texts = [t for lang in ctx.langs for split in ("train", "dev", "test") for t in ctx.data.split(lang, split)["text"]]
    log(f"read {len(texts)} sentences of {len(ctx.langs)} languages")
    full_vocab = GEMMA3_270M["vocab_size"]
    tokenizer = build_tokenizer(texts, max_vocab=full_vocab - 64)
    vocab_size = full_vocab if not ctx.smoke else 128 * math.ceil(len(tokenizer) / 128)
    layers = GEMMA3_270M["num_hidden_layers"] if not ctx.smoke else 2
    log(f"tokenizer: {len(tokenizer)} tokens; building the model ({layers} layers, vocabulary {vocab_size})")
    ctx.model_dir = workdir / "gemma-3-270m-random"
    ctx.model_info = save_random_model(ctx.model_dir, tokenizer, vocab_size, layers)
    log(f"saved {ctx.model_info['parameters'] / 1e6:.0f}M parameters to {ctx.model_dir}; loading float32 and bfloat16")
    ctx.fp32 = xlspt.load_model(str(ctx.model_dir), dtype="float32", device=ctx.device)
    ctx.bf16 = xlspt.load_model(str(ctx.model_dir), dtype="bfloat16", device=ctx.device)
    assert ctx.fp32.vocab_size == vocab_size and str(ctx.fp32.device).startswith(ctx.device)
    per_lang = {lang: encode_texts(ctx.fp32, ctx.data.split(lang, "test")["text"].tolist(), STEP_PROMPT_LENGTH)
                for lang in ctx.langs}
    mean = lambda ids: sum(len(x) for x in ids) / len(ids)  # noqa: E731
    ctx.out["tokens_per_sentence_eng"] = round(mean(per_lang[EVAL_LANG]), 1) if EVAL_LANG in per_lang else None
    ctx.out["tokens_per_sentence_all"] = round(sum(mean(v) for v in per_lang.values()) / len(per_lang), 1)
    ctx.out["tokenizer_size"] = len(tokenizer)
    ctx.out["model"] = {**ctx.model_info, "config": "gemma-3-270m" if not ctx.smoke else "gemma-3-270m, 2 layers (smoke)"}


def phase_check(ctx: Context) -> None:
    """Cached engine == naive full pass in float32 on this device (hidden states, label logits, loss, gradient)."""
    import torch

    import xlspt
    from xlspt.engine import CachedTextEngine, NaiveEngine, encode_texts
    from xlspt.engine import ReadoutConfig
    from xlspt.evaluate import label_logits
    from xlspt.train import readout_loss

    loaded = ctx.fp32
    verbalizer = xlspt.build_verbalizer(loaded, LABEL_WORDS)
    texts, labels = [], []
    for lang in [lang for lang in CHECK_LANGS if lang in ctx.langs] or ctx.langs[:2]:
        frame = ctx.data.split(lang, "test").iloc[:6]
        texts += frame["text"].tolist()
        labels += frame["label"].tolist()
    texts.append(" ".join(["science"] * 300))  # truncated differently for each prompt length
    labels.append("science/technology")
    d = loaded.hidden_size
    generator = torch.Generator().manual_seed(7)
    prompts = [torch.empty(n, d).uniform_(-0.5, 0.5, generator=generator) for n in (1, 4, 16, 4, 4)]
    naive, cached = NaiveEngine(loaded), CachedTextEngine(loaded, encode_batch_size=16)
    diffs: dict[str, float] = {"hidden": 0.0, "packed": 0.0, "label_logits": 0.0, "loss": 0.0, "grad": 0.0}
    with torch.no_grad():
        for prompt in prompts[:3]:
            ids = encode_texts(loaded, texts, prompt.shape[0])
            a = naive.readout_hidden(ids, prompt)
            b = cached.readout_hidden(cached.encode(ids), prompt)
            diffs["hidden"] = max(diffs["hidden"], relative_difference(a, b))
        ids4 = encode_texts(loaded, texts, 4)
        stacked = torch.stack([prompts[1], prompts[3], prompts[4]])  # the three of length 4, packed into one pass
        together = cached.readout_hidden_many(cached.encode_batch(ids4), stacked)
        for p in range(stacked.shape[0]):
            diffs["packed"] = max(diffs["packed"], relative_difference(naive.readout_hidden(ids4, stacked[p]), together[p]))
        reference = label_logits(loaded, verbalizer, prompts, texts, ReadoutConfig(batch_size=8, engine="naive"))
        fast = label_logits(loaded, verbalizer, prompts, texts, ReadoutConfig(batch_size=8, engine="cached"))
        diffs["label_logits"] = relative_difference(reference, fast)
        agree = (reference.argmax(-1) == fast.argmax(-1)).float().mean().item()
    for n, reparam in ((1, None), (4, None), (16, None), (4, 64)):
        prompt = xlspt.SoftPrompt(xlspt.PromptConfig(length=n, reparam_hidden=reparam), d,
                                  generator=torch.Generator().manual_seed(3)).to(loaded.device)
        ids = encode_texts(loaded, texts, n)
        results = []
        for engine in (naive, cached):
            inputs = engine.prepare(ids)
            prompt.zero_grad(set_to_none=True)
            loss = readout_loss(engine, verbalizer, inputs, labels, prompt())
            loss.backward()
            results.append((loss.detach(), [p.grad.detach().clone() for p in prompt.parameters()]))
        (loss_a, grads_a), (loss_b, grads_b) = results
        diffs["loss"] = max(diffs["loss"], relative_difference(loss_a, loss_b))
        for ga, gb in zip(grads_a, grads_b):
            diffs["grad"] = max(diffs["grad"], relative_difference(ga, gb))
    passed = all(v <= ctx.args.tolerance for v in diffs.values()) and all(math.isfinite(v) for v in diffs.values())
    ctx.out["cached_equals_naive_fp32"] = passed
    for key, value in diffs.items():
        ctx.out[f"max_rel_diff_{key}"] = float(f"{value:.3g}")
    ctx.out["check_prediction_agreement"] = round(agree, 4)
    ctx.out["check_texts"] = len(texts)
    if not passed:
        worst = max(diffs, key=diffs.get)
        ctx.problems.append(f"cached != naive in float32: {worst} differs by {diffs[worst]:.2g} "
                            f"(tolerance {ctx.args.tolerance:g})")
    log("check: " + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()) + f" -> {'PASS' if passed else 'FAIL'}")


def phase_timing(ctx: Context) -> None:
    import torch

    import xlspt
    from xlspt.data import sample_few_shot
    from xlspt.engine import CachedTextEngine, NaiveEngine, encode_texts
    from xlspt.evaluate import label_logits
    from xlspt.train import readout_loss

    repeats = 2 if ctx.smoke else 5
    inner = 2 if ctx.smoke else 10
    train = sample_few_shot(ctx.data, "eng_Latn", 8, seed=0).train.iloc[:TRAIN_TEXTS]
    texts, labels = train["text"].tolist(), train["label"].tolist()
    for name, loaded in (("bf16", ctx.bf16), ("fp32", ctx.fp32)):
        verbalizer = xlspt.build_verbalizer(loaded, LABEL_WORDS)
        ids = encode_texts(loaded, texts, STEP_PROMPT_LENGTH)
        for engine_name, engine in (("cached", CachedTextEngine(loaded)), ("naive", NaiveEngine(loaded))):
            encode_s = best_seconds(lambda: engine.prepare(ids), ctx.device, repeats=repeats, warmup=1)
            inputs = engine.prepare(ids)
            weight = torch.empty(STEP_PROMPT_LENGTH, loaded.hidden_size).uniform_(
                -0.5, 0.5, generator=torch.Generator().manual_seed(0))
            prompt = torch.nn.Parameter(weight.to(loaded.device))
            optimizer = torch.optim.AdamW([prompt], lr=5e-3)

            def step():
                loss = readout_loss(engine, verbalizer, inputs, labels, prompt)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            seconds = best_seconds(step, ctx.device, repeats=repeats, inner=inner, warmup=3)
            ctx.out[f"train_step_{engine_name}_{name}_s"] = round(seconds, 5)
            if engine_name == "cached":
                ctx.out[f"train_encode_once_{name}_s"] = round(encode_s, 5)
            log(f"train step {engine_name} {name}: {1000 * seconds:.1f} ms")
        ctx.out[f"train_naive_over_cached_{name}"] = round(
            ctx.out[f"train_step_naive_{name}_s"] / ctx.out[f"train_step_cached_{name}_s"], 2)
    loaded = ctx.bf16
    verbalizer = xlspt.build_verbalizer(loaded, LABEL_WORDS)
    lang = EVAL_LANG if EVAL_LANG in ctx.langs else ctx.langs[0]
    eval_texts = ctx.data.split(lang, "test")["text"].tolist()
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.empty(STEP_PROMPT_LENGTH, loaded.hidden_size).uniform_(-0.5, 0.5, generator=generator)
               for _ in range(8)]
    one = best_seconds(lambda: label_logits(loaded, verbalizer, prompts[0], eval_texts), ctx.device,
                       repeats=2 if ctx.smoke else 3)
    eight = best_seconds(lambda: label_logits(loaded, verbalizer, prompts, eval_texts), ctx.device,
                         repeats=2 if ctx.smoke else 3)
    ctx.out.update(eval_language=lang, eval_sentences=len(eval_texts), eval_dtype="bfloat16",
                   eval_1_prompt_s=round(one, 4), eval_8_prompts_s=round(eight, 4), eval_8_over_1=round(eight / one, 3))
    log(f"evaluation {lang} ({len(eval_texts)} sentences, bfloat16): 1 prompt {one:.3f} s, 8 prompts {eight:.3f} s")


class BudgetExceeded(BaseException):
    """Raised from the sweep's log to stop it between pieces of work (not an ``Exception``: runs catch those)."""


class SweepGuard(logging.Handler):
    """A handler of xlspt's log lines during the sweep: prints them with the elapsed time, and stops the sweep before
    work that would end past the budget.

    A piece of work starts with a ``training ...`` or ``scoring ...`` line; the longest gap seen
    between such lines is the estimate of the next piece. Records are written before their line
    is logged, and no piece is interrupted, so every finished run stays in the store. (An exception raised in a
    handler's ``emit`` reaches the code that logged the line.)
    """

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline
        self.last_start: float | None = None
        self.longest = 0.0
        self.stopped = False

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        log(f"sweep: {message}")
        if not message.startswith(("training ", "scoring ")):
            return
        now = elapsed()
        if self.last_start is not None:
            self.longest = max(self.longest, now - self.last_start)
        self.last_start = now
        if now + self.longest > self.deadline:
            self.stopped = True
            raise BudgetExceeded(f"{now:.0f} s elapsed, the next piece of work may take {self.longest:.0f} s")


def phase_sweep(ctx: Context, workdir: Path) -> None:
    from xlspt.logs import muted
    from xlspt.study import ResultStore, RunStatus, expand, run_sweep, sweep_status

    values = {
        "model": str(ctx.model_dir), "dtype": "auto", "data": str(ctx.data_dir), "train_lang": "eng_Latn",
        "shots": ctx.args.sweep_shots, "epochs": ctx.args.sweep_epochs, "prompt_length": list(SWEEP_LENGTHS),
        "freeze": [True, False], "seed": list(SWEEP_SEEDS), "langs": ctx.args.sweep_langs,
        "label_words": ",".join(f"{k}={v}" for k, v in LABEL_WORDS.items()),
    }
    spec = expand(values, source="gpu_study")
    store = ResultStore(workdir / "store")
    guard = SweepGuard(ctx.args.budget_s)
    started = time.perf_counter()
    xlspt_logger = logging.getLogger("xlspt")
    xlspt_logger.addHandler(guard)
    try:
        with muted():  # the guard prints the lines, with the time
            run_sweep(spec, store, executor="local", device=ctx.device, progress=False)
    except BudgetExceeded as exc:
        log(f"sweep stopped by the budget guard: {exc}")
        ctx.skipped.append(f"sweep: stopped early ({exc})")
    finally:
        xlspt_logger.removeHandler(guard)
    seconds = time.perf_counter() - started
    status = sweep_status(spec, store)
    done, failed = status.count(RunStatus.DONE), status.count(RunStatus.FAILED)
    records = [r for r in store.records() if r.status == RunStatus.DONE.value]
    per_kind = {}
    for frozen in (True, False):
        times = [r.timings.get("total", 0.0) for r in records if r.config.get("freeze") is frozen]
        per_kind["frozen" if frozen else "model_trained"] = round(sum(times) / len(times), 2) if times else None
    accuracies = [x["accuracy"] for r in records for x in r.results]
    dtypes = sorted({r.device.get("dtype") for r in records if r.device})
    ctx.out.update(
        sweep_runs=done, sweep_runs_total=len(status.runs), sweep_failed=failed, sweep_seconds=round(seconds, 1),
        sweep_runs_per_minute=round(60 * done / seconds, 2) if seconds > 0 else None,
        sweep_complete=done == len(status.runs), sweep_languages=len(ctx.langs), sweep_shots=ctx.args.sweep_shots,
        sweep_epochs=ctx.args.sweep_epochs, sweep_dtype=",".join(d for d in dtypes if d) or None,
        sweep_seconds_per_run=per_kind,
        sweep_mean_accuracy=round(sum(accuracies) / len(accuracies), 4) if accuracies else None,
    )
    for run_id, error in status.errors.items():
        ctx.problems.append(f"sweep run {run_id} failed: {error.splitlines()[0]}")
    log(f"sweep: {done}/{len(status.runs)} runs done, {failed} failed, {seconds:.1f} s")


# --------------------------------------------------------------------------- report


def finite(value):
    """JSON-ready: NaN and infinities become null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def fmt_s(value) -> str:
    if value is None:
        return "-"
    return f"{1000 * value:.1f} ms" if value < 1 else f"{value:.2f} s"


def report(ctx: Context) -> str:
    o = ctx.out
    where = o.get("gpu") or ("the CPU, smoke version" if ctx.device == "cpu" else ctx.device)
    lines = [f"xlspt GPU study on {where} ({o.get('device')}; torch {o.get('torch')}, "
             f"transformers {o.get('transformers')}, CUDA {o.get('cuda')})"]
    if ctx.model_info:
        lines.append(f"model: {o['model']['config']} configuration, random weights, {ctx.model_info['parameters'] / 1e6:.0f}M "
                     f"parameters, vocabulary {ctx.model_info['vocab_size']}; tokenizer: {o.get('tokenizer_size')} word pieces, "
                     f"{o.get('tokens_per_sentence_eng')} tokens per English test sentence (Gemma 3: {GEMMA_TOKENS_ENGLISH}), "
                     f"{o.get('tokens_per_sentence_all')} over the {len(ctx.langs)} languages "
                     f"(Gemma 3 over the 52: {GEMMA_TOKENS_52})")
    lines.append("")
    lines.append("phase      seconds")
    for name, seconds in ctx.phases.items():
        lines.append(f"{name:<10} {seconds:7.1f}")
    lines.append(f"{'total':<10} {o.get('elapsed_s', 0):7.1f}")
    if "cached_equals_naive_fp32" in o:
        lines.append("")
        verdict = "yes" if o["cached_equals_naive_fp32"] else "NO"
        lines.append(f"cached engine == naive full pass (float32, {ctx.device}, {o['check_texts']} texts, tolerance "
                     f"{ctx.args.tolerance:g}): {verdict}")
        lines.append("  max relative difference: " + ", ".join(
            f"{k} {o[f'max_rel_diff_{k}']:.2g}" for k in ("hidden", "packed", "label_logits", "loss", "grad"))
            + f"; predictions agree on {100 * o['check_prediction_agreement']:.1f}%")
    if "train_step_cached_bf16_s" in o:
        lines.append("")
        lines.append(f"training step ({TRAIN_TEXTS} English texts, prompt length {STEP_PROMPT_LENGTH}, fwd+bwd+AdamW)"
                     "   bfloat16     float32")
        for engine in ("cached", "naive"):
            bf16, fp32 = fmt_s(o[f"train_step_{engine}_bf16_s"]), fmt_s(o[f"train_step_{engine}_fp32_s"])
            lines.append(f"  {engine:<68}{bf16:>10}  {fp32:>10}")
        lines.append(f"  {'cached: one-off text encoding':<68}{fmt_s(o['train_encode_once_bf16_s']):>10}  "
                     f"{fmt_s(o['train_encode_once_fp32_s']):>10}")
        lines.append(f"  {'naive / cached':<68}{o['train_naive_over_cached_bf16']:>9}x  {o['train_naive_over_cached_fp32']:>9}x")
        lines.append(f"evaluation, {o['eval_language']} {o['eval_sentences']} test sentences, bfloat16: 1 prompt "
                     f"{fmt_s(o['eval_1_prompt_s'])}, 8 prompts {fmt_s(o['eval_8_prompts_s'])} ({o['eval_8_over_1']}x)")
    if "sweep_runs" in o:
        lines.append("")
        lines.append(f"sweep (freeze on/off x prompt lengths {','.join(map(str, SWEEP_LENGTHS))} x seeds "
                     f"{','.join(map(str, SWEEP_SEEDS))}; {o['sweep_shots']} shots, {o['sweep_epochs']} epochs, "
                     f"{o['sweep_languages']} languages, {o['sweep_dtype']}): {o['sweep_runs']}/{o['sweep_runs_total']} runs "
                     f"done, {o['sweep_failed']} failed in {o['sweep_seconds']:.1f} s = {o['sweep_runs_per_minute']} runs/min")
        per = o["sweep_seconds_per_run"]
        lines.append(f"  seconds per run (shared work split evenly): frozen {per['frozen']}, model trained too "
                     f"{per['model_trained']}; mean accuracy {o['sweep_mean_accuracy']} (random weights: chance is 0.143)")
    if "peak_gpu_memory_mb" in o:
        lines.append(f"peak GPU memory allocated: {o['peak_gpu_memory_mb']} MB")
    for item in ctx.skipped:
        lines.append(f"SKIPPED {item}")
    for item in ctx.problems:
        lines.append(f"PROBLEM {item}")
    return "\n".join(lines)


def default_data() -> str:
    for candidate in (os.environ.get("XLSPT_DATA"), REPO.parent / "shared" / "sib200", REPO / "shared" / "sib200"):
        if candidate and (Path(candidate) / "eng_Latn" / "test.tsv").is_file():
            return str(candidate)
    return str(REPO.parent / "shared" / "sib200")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=default_data(), help="SIB-200 directory (<lang>/{train,dev,test}.tsv)")
    parser.add_argument("--json", action="store_true", help="end with the figures as one JSON line")
    parser.add_argument("--allow-cpu", action="store_true", help="without a CUDA device, run the tiny smoke version on the CPU")
    parser.add_argument("--smoke", action="store_true", help="the tiny version (2 layers, 2 languages, 1 epoch) on any device")
    parser.add_argument("--budget-s", type=float, default=450.0, help="skip phases that would start past this many seconds")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="cached vs naive: largest difference / largest value")
    parser.add_argument("--sweep-shots", type=int, default=None, help="training examples per class (8)")
    parser.add_argument("--sweep-epochs", type=int, default=None, help="epochs per run (5; smoke 1)")
    parser.add_argument("--sweep-langs", default=None, help='target languages ("52"; smoke eng_Latn,fra_Latn)')
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of the smoke version on a CPU (default 1: on a busy 2-core machine "
                             "two threads stall on each other)")
    parser.add_argument("--skip", default="", help="comma-separated phases to skip: check, timing, sweep")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print("error: no CUDA device: this study measures xlspt on a GPU (torch.cuda.is_available() is False, "
              f"torch {torch.__version__}, CUDA build {torch.version.cuda}); run it on the GPU machine, or pass "
              "--allow-cpu for the tiny smoke version on the CPU", file=sys.stderr)
        return 2
    smoke = args.smoke or not cuda
    args.sweep_shots = args.sweep_shots or 8
    args.sweep_epochs = args.sweep_epochs or (1 if smoke else 5)
    args.sweep_langs = args.sweep_langs or ("eng_Latn,fra_Latn" if smoke else "52")
    data_dir = Path(args.data).expanduser().resolve()
    if not (data_dir / "eng_Latn" / "test.tsv").is_file():
        print(f"error: SIB-200 not found at {data_dir}: pass --data DIR with <lang>/{{train,dev,test}}.tsv", file=sys.stderr)
        return 2
    quiet_libraries()
    try:
        import transformers

        import xlspt
        import xlspt.study  # noqa: F401
    except ImportError as exc:
        print(f"error: cannot import xlspt or its dependencies ({exc}): install them (pip install -e . needs "
              "transformers, tokenizers, safetensors, pandas, scikit-learn, scipy, tqdm, pyyaml)", file=sys.stderr)
        return 2

    device = "cuda" if cuda else "cpu"
    if not cuda:
        torch.set_num_threads(args.threads or 1)
    ctx = Context(args=args, device=device, smoke=smoke, data_dir=data_dir)
    ctx.out.update(
        gpu=torch.cuda.get_device_name(0) if cuda else None, device=device, smoke=smoke,
        torch=torch.__version__, transformers=transformers.__version__, cuda=torch.version.cuda,
        xlspt=xlspt.__version__, python=platform.python_version(),
        float32_matmul_precision=torch.get_float32_matmul_precision(),
    )
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 (the default; said explicitly)
        ctx.out["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    log(f"device {device} ({ctx.out['gpu'] or platform.processor() or platform.machine()}), torch {torch.__version__}, "
        f"transformers {transformers.__version__}{', smoke version' if smoke else ''}; budget {args.budget_s:.0f} s")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if not skip <= {"check", "timing", "sweep"}:
        print(f"error: --skip takes check, timing and sweep (got {args.skip!r})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="xlspt-gpu-study-") as tmp:
        workdir = Path(tmp)
        phases = [("setup", lambda: phase_setup(ctx, workdir)), ("check", lambda: phase_check(ctx)),
                  ("timing", lambda: phase_timing(ctx)), ("sweep", lambda: phase_sweep(ctx, workdir))]
        for name, run in phases:
            if name in skip:
                ctx.skipped.append(f"{name}: --skip")
                continue
            if elapsed() > args.budget_s:
                ctx.skipped.append(f"{name}: {elapsed():.0f} s elapsed, past the budget of {args.budget_s:.0f} s")
                log(f"skipping {name}: past the budget")
                continue
            if name == "sweep":  # the sweep loads its own model: let the two copies go first
                ctx.fp32 = ctx.bf16 = None
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
            started = time.perf_counter()
            log(f"phase {name}")
            try:
                run()
            except Exception as exc:  # one failing phase is reported; the others still run
                import traceback

                traceback.print_exc()
                ctx.problems.append(f"{name} failed: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                if name == "setup":
                    ctx.phases[name] = round(time.perf_counter() - started, 1)
                    break
            ctx.phases[name] = round(time.perf_counter() - started, 1)
            log(f"phase {name} took {ctx.phases[name]:.1f} s")
    if cuda:
        ctx.out["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    ctx.out["elapsed_s"] = round(elapsed(), 1)
    ctx.out["phase_seconds"] = ctx.phases
    ctx.out["skipped"] = ctx.skipped
    ctx.out["problems"] = ctx.problems
    print(report(ctx), flush=True)
    if args.json:
        print(json.dumps(finite(ctx.out), allow_nan=False, default=str), flush=True)
    return 1 if ctx.problems else 0


if __name__ == "__main__":
    sys.exit(main())

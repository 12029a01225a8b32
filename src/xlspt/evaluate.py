"""Zero-shot evaluation on target languages and prediction for new text.

Prediction is the argmax over the label words' logits at the read-out position; metrics
per language are accuracy and macro-F1 on the full test split.

Several prompts are scored from one pass over the text: each batch's text states are
computed once (:class:`~xlspt.engine.CachedTextEngine`) and every prompt then runs only its
own ``n`` positions. Prompts of different lengths truncate the text to different budgets;
since the model is causal, the states of a truncated text are a prefix of the states of the
longer text, so they are shared too. Only one batch of states is held at a time.
"""

from __future__ import annotations

import sys
from typing import Sequence

import pandas as pd
import torch
from sklearn.metrics import accuracy_score, f1_score

from .data.sib200 import Sib200
from .engine import DEFAULT_MAX_LENGTH, CachedTextEngine, NaiveEngine, batches_by_length, encode_texts
from .engine.store import TextStateStore
from .models.loading import LoadedModel
from .progress import interactive, progress_bar
from .verbalizer import Verbalizer

RESULT_COLUMNS = ["language", "accuracy", "macro_f1", "n"]
#: Prompts of one length scored in one pass over the weights, up to this many (prompt, text) rows.
_ROWS_PER_PASS = 256


@torch.no_grad()
def label_logits(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    prompts: torch.Tensor | Sequence[torch.Tensor],
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    max_length: int = DEFAULT_MAX_LENGTH,
    engine: str = "auto",
    store: TextStateStore | None = None,
    special_tokens: str = "tokenizer",
) -> torch.Tensor:
    """Label-word logits at the read-out position, float32 on the CPU.

    Args:
        prompts: one ``[n, d]`` prompt, or a sequence of prompts (lengths may differ).
        texts: ``N`` texts.
        engine: ``"cached"`` (text states computed once for all prompts), ``"naive"`` (a full pass
            per prompt, the reference path), or ``"auto"``: naive for one prompt (one pass over text
            and prompt together is the least work), cached for several.
        store: keep the text states on disk and reuse them in later calls (implies the cached engine).
        special_tokens: ``"tokenizer"`` or ``"reference"`` (see :func:`~xlspt.engine.encode_texts`).

    Returns:
        ``[N, C]`` for one prompt, ``[P, N, C]`` for a sequence of ``P`` prompts.
    """
    single = isinstance(prompts, torch.Tensor)
    prompt_list = [prompts] if single else list(prompts)
    out = torch.empty(len(prompt_list), len(texts), len(verbalizer.labels))
    # Token ids per distinct prompt length; the shortest prompt leaves the longest text budget.
    ids_by_length = {n: encode_texts(loaded, texts, n, max_length, special_tokens) for n in sorted({p.shape[0] for p in prompt_list})}
    if engine == "naive" or (engine == "auto" and len(prompt_list) == 1 and store is None):
        _naive_logits(loaded, verbalizer, prompt_list, ids_by_length, batch_size, out)
    else:
        _cached_logits(loaded, verbalizer, prompt_list, ids_by_length, batch_size, store, out)
    return out[0] if single else out


def _label_rows(loaded: LoadedModel, verbalizer: Verbalizer, hidden: torch.Tensor) -> torch.Tensor:
    label_ids = torch.tensor(verbalizer.token_ids, device=hidden.device)
    return loaded.adapter.logits(loaded.model, hidden, label_ids).float().cpu()


def _naive_logits(loaded, verbalizer, prompts, ids_by_length, batch_size, out) -> None:
    """A full pass per prompt and batch (the reference path)."""
    naive = NaiveEngine(loaded)
    for j, prompt in enumerate(prompts):
        ids = ids_by_length[prompt.shape[0]]
        for batch in batches_by_length([len(x) for x in ids], batch_size):
            out[j, batch] = _label_rows(loaded, verbalizer, naive.readout_hidden([ids[i] for i in batch], prompt))


def _cached_logits(loaded, verbalizer, prompts, ids_by_length, batch_size, store, out) -> None:
    """Each batch's text once; then the prompts, as many as fit together in one pass.

    Where the model takes explicit positions, prompts of any lengths are packed into one pass,
    each reading its own truncation of the text (a prefix of the states). ALiBi models run the
    prompts of one length side by side.
    """
    base_ids = ids_by_length[min(ids_by_length)]
    prefix_ok = {n: all(ids == full[: len(ids)] for ids, full in zip(group, base_ids)) for n, group in ids_by_length.items()}
    cached = CachedTextEngine(loaded, encode_batch_size=batch_size)
    mixed = loaded.adapter.takes_position_ids
    for batch in batches_by_length([len(x) for x in base_ids], batch_size):
        chosen_ids = [base_ids[i] for i in batch]
        base_states = store.encode_batch(cached, chosen_ids) if store else cached.encode_batch(chosen_ids)
        groups: dict[object, list[int]] = {}  # prompts that run together on the batch's states
        rows = None
        for j, prompt in enumerate(prompts):
            n = prompt.shape[0]
            ids = ids_by_length[n]
            if mixed and prefix_ok[n]:
                groups.setdefault("mixed", []).append(j)
            elif all(len(ids[i]) == len(base_ids[i]) for i in batch):
                groups.setdefault(n, []).append(j)
            else:
                if prefix_ok[n]:  # rows truncated further: their states are prefixes of the longer text's
                    rows = rows or base_states.rows()
                    states = [s.prefix(len(ids[i])) for s, i in zip(rows, batch)]
                else:  # a tokenizer that adds a suffix token: truncation is not a prefix, encode again
                    states = cached.encode_batch([ids[i] for i in batch])
                out[j, batch] = _label_rows(loaded, verbalizer, cached.readout_hidden(states, prompt))
        per_pass = max(1, _ROWS_PER_PASS // len(batch))
        for key, group in groups.items():
            for start in range(0, len(group), per_pass):
                chosen = group[start : start + per_pass]
                if key == "mixed":
                    reads = torch.tensor([[len(ids_by_length[prompts[j].shape[0]][i]) for j in chosen] for i in batch])
                    hidden = torch.stack(cached.readout_hidden_mixed(base_states, [prompts[j] for j in chosen], reads))
                else:
                    hidden = cached.readout_hidden_many(base_states, torch.stack([prompts[j] for j in chosen]))
                logits = _label_rows(loaded, verbalizer, hidden.flatten(0, 1))
                for k, j in enumerate(chosen):
                    out[j, batch] = logits[k * len(batch) : (k + 1) * len(batch)]


def predict(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    prompt: torch.Tensor,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    max_length: int = DEFAULT_MAX_LENGTH,
    engine: str = "auto",
    special_tokens: str = "tokenizer",
) -> list[str]:
    """The predicted class of each text."""
    if not texts:
        return []
    logits = label_logits(
        loaded, verbalizer, prompt, texts, batch_size=batch_size, max_length=max_length, engine=engine,
        special_tokens=special_tokens,
    )
    return [verbalizer.labels[i] for i in logits.argmax(dim=1).tolist()]


def score(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=list(labels), average="macro", zero_division=0)),
    }


def evaluate_prompts(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    prompts: Sequence[torch.Tensor],
    data: Sib200,
    languages: Sequence[str],
    *,
    split: str = "test",
    batch_size: int = 32,
    max_length: int = DEFAULT_MAX_LENGTH,
    engine: str = "auto",
    store: TextStateStore | None = None,
    special_tokens: str = "tokenizer",
    progress: bool = True,
) -> list[pd.DataFrame]:
    """Per-language results of several prompts, reading each language's text once.

    Returns one ``language, accuracy, macro_f1, n`` table per prompt, in the order given.
    """
    rows: list[list[dict]] = [[] for _ in prompts]
    bar = progress_bar(languages, desc="evaluating", unit="lang", disable=not progress)
    for lang in bar:
        bar.set_postfix(lang=lang)
        frame = data.split(lang, split)
        gold = frame["category"].tolist()
        logits = label_logits(
            loaded, verbalizer, list(prompts), frame["text"].tolist(),
            batch_size=batch_size, max_length=max_length, engine=engine, store=store, special_tokens=special_tokens,
        )
        for j in range(len(prompts)):
            predicted = [verbalizer.labels[i] for i in logits[j].argmax(dim=1).tolist()]
            rows[j].append({"language": lang, **score(gold, predicted, verbalizer.labels), "n": len(frame)})
        if progress and not interactive() and len(languages) > 1:  # no bar in a log file: a line per language
            mean = sum(r[-1]["accuracy"] for r in rows) / len(rows)
            print(f"evaluated {lang} ({len(rows[0])}/{len(languages)}): accuracy {100 * mean:.1f}%"
                  f"{' (mean of the prompts)' if len(rows) > 1 else ''}", file=sys.stderr, flush=True)
    return [pd.DataFrame(r, columns=RESULT_COLUMNS) for r in rows]


def evaluate_languages(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    prompt: torch.Tensor,
    data: Sib200,
    languages: Sequence[str],
    **kwargs,
) -> pd.DataFrame:
    """Accuracy and macro-F1 of one ``prompt`` per language: columns ``language, accuracy, macro_f1, n``."""
    return evaluate_prompts(loaded, verbalizer, [prompt], data, languages, **kwargs)[0]

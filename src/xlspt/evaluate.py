"""Zero-shot evaluation on target languages and prediction for new text.

Prediction is the argmax over the label words' logits at the read-out position;
metrics per language are accuracy and macro-F1 on the full test split.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch
from sklearn.metrics import accuracy_score, f1_score
from tqdm.auto import tqdm

from .data.sib200 import Sib200
from .engine import DEFAULT_MAX_LENGTH, NaiveEngine, batches_by_length, encode_texts
from .models.loading import LoadedModel
from .verbalizer import Verbalizer

RESULT_COLUMNS = ["language", "accuracy", "macro_f1", "n"]


@torch.no_grad()
def label_logits(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    prompt: torch.Tensor,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> torch.Tensor:
    """``[len(texts), n_classes]`` logits of the label words at the read-out position (float32, CPU)."""
    engine = NaiveEngine(loaded)
    ids = encode_texts(loaded, texts, prompt.shape[0], max_length)
    label_ids = torch.tensor(verbalizer.token_ids, device=loaded.device)
    out = torch.empty(len(ids), len(verbalizer.labels))
    for batch in batches_by_length([len(x) for x in ids], batch_size):
        hidden = engine.readout_hidden([ids[i] for i in batch], prompt)
        out[batch] = loaded.adapter.logits(loaded.model, hidden, label_ids).float().cpu()
    return out


def predict(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    prompt: torch.Tensor,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> list[str]:
    """The predicted class of each text."""
    if not texts:
        return []
    logits = label_logits(loaded, verbalizer, prompt, texts, batch_size=batch_size, max_length=max_length)
    return [verbalizer.labels[i] for i in logits.argmax(dim=1).tolist()]


def score(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=list(labels), average="macro", zero_division=0)),
    }


def evaluate_languages(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    prompt: torch.Tensor,
    data: Sib200,
    languages: Sequence[str],
    *,
    split: str = "test",
    batch_size: int = 32,
    max_length: int = DEFAULT_MAX_LENGTH,
    progress: bool = True,
) -> pd.DataFrame:
    """Accuracy and macro-F1 of ``prompt`` on each language's ``split``: columns ``language, accuracy, macro_f1, n``."""
    rows = []
    bar = tqdm(languages, desc="evaluating", unit="lang", disable=not progress, dynamic_ncols=True)
    for lang in bar:
        bar.set_postfix(lang=lang)
        frame = data.split(lang, split)
        predicted = predict(
            loaded, verbalizer, prompt, frame["text"].tolist(), batch_size=batch_size, max_length=max_length
        )
        rows.append({"language": lang, **score(frame["category"].tolist(), predicted, verbalizer.labels), "n": len(frame)})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)

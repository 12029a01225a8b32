"""The verbalizer: one label word per class, each a single token of the model's vocabulary.

Training reads the cross-entropy of the label word's token over the full vocabulary;
prediction is the argmax over the label words' logits only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data.sib200 import CATEGORIES
from .errors import XlsptError


@dataclass(frozen=True)
class Verbalizer:
    """Label words and their token ids, in a fixed class order.

    Attributes:
        labels: class names, e.g. the seven SIB-200 categories.
        words: one label word per class, tokenized exactly as written.
        token_ids: the vocabulary id of each word's (single, or first) token.
    """

    labels: tuple[str, ...]
    words: tuple[str, ...]
    token_ids: tuple[int, ...]

    @classmethod
    def build(
        cls,
        tokenizer,
        words: dict[str, str],
        labels: tuple[str, ...] = CATEGORIES,
        allow_first_subtoken: bool = False,
    ) -> "Verbalizer":
        """Tokenize ``words`` (label -> word) and check each is one token.

        With ``allow_first_subtoken`` a word of several tokens is represented by its first,
        as the study's reference code did; otherwise it is an error.
        """
        missing = [label for label in labels if label not in words]
        if missing:
            raise XlsptError(f"no label word for the class {missing[0]!r}: give one word per class")
        ids = []
        for label in labels:
            word = words[label]
            pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
            if not pieces:
                raise XlsptError(f"the label word {word!r} for {label!r} is empty after tokenization: choose another word")
            if len(pieces) > 1 and not allow_first_subtoken:
                shown = [tokenizer.convert_ids_to_tokens(i) for i in pieces]
                raise XlsptError(
                    f"the label word {word!r} for {label!r} is not a single token of this tokenizer ({shown}): "
                    "choose another word, or pass --allow-subword-labels to use its first token"
                )
            ids.append(int(pieces[0]))
        if len(set(ids)) != len(ids):
            raise XlsptError("two label words share the same token: give every class a distinct word")
        return cls(labels=tuple(labels), words=tuple(words[label] for label in labels), token_ids=tuple(ids))

    def label_index(self, labels) -> torch.Tensor:
        """``[B]`` class indices for a sequence of class names."""
        position = {label: i for i, label in enumerate(self.labels)}
        return torch.tensor([position[label] for label in labels], dtype=torch.long)

    def target_token_ids(self, labels) -> torch.Tensor:
        """``[B]`` vocabulary ids of the label words, the training targets."""
        ids = torch.tensor(self.token_ids, dtype=torch.long)
        return ids[self.label_index(labels)]

    def as_dict(self) -> dict[str, str]:
        return dict(zip(self.labels, self.words))


def parse_label_words(spec: str, labels: tuple[str, ...] = CATEGORIES) -> dict[str, str]:
    """``"geography=earth,sports=play"`` or seven comma-separated words in class order -> label -> word."""
    parts = [p for p in spec.split(",")]
    if all("=" in p for p in parts):
        words = {}
        for part in parts:
            label, word = part.split("=", 1)
            if label.strip() not in labels:
                raise XlsptError(f"unknown class {label.strip()!r} in --label-words: classes are {', '.join(labels)}")
            words[label.strip()] = word
        return words
    if len(parts) != len(labels):
        raise XlsptError(
            f"--label-words needs {len(labels)} words in the class order {', '.join(labels)} "
            f"(or class=word pairs); got {len(parts)}"
        )
    return dict(zip(labels, parts))

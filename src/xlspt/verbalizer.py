"""The verbalizer: label words per class, each a single token of the model's vocabulary.

A class has one word (the study's) or several, written ``word1|word2``. Training reads the
cross-entropy over the full vocabulary of the class's words together (``-log`` of the sum of
their probabilities); prediction takes the argmax over the classes, a class's logit being the
log-sum-exp of its words' logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from .data.sib200 import CATEGORIES
from .errors import XlsptError

if TYPE_CHECKING:
    from .models.loading import LoadedModel


@dataclass(frozen=True)
class Verbalizer:
    """Label words and their token ids, in a fixed class order.

    Attributes:
        labels: class names, e.g. the seven SIB-200 categories.
        words: the label word(s) of each class as given (``"sports"`` or ``"sports|football"``).
        token_ids: the vocabulary id of every word's (single, or first) token, class by class.
        word_class: the class index of each entry of ``token_ids``.
    """

    labels: tuple[str, ...]
    words: tuple[str, ...]
    token_ids: tuple[int, ...]
    word_class: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.word_class:
            object.__setattr__(self, "word_class", tuple(range(len(self.token_ids))))

    @property
    def single_words(self) -> bool:
        """One word per class (the study's verbalizer)."""
        return len(self.token_ids) == len(self.labels)

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
        ids, owner = [], []
        for c, label in enumerate(labels):
            for word in words[label].split("|"):
                pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
                if not pieces:
                    raise XlsptError(f"the label word {word!r} for {label!r} is empty after tokenization: choose another word")
                if len(pieces) > 1 and not allow_first_subtoken:
                    shown = [tokenizer.convert_ids_to_tokens(i) for i in pieces]
                    raise XlsptError(
                        f"the label word {word!r} for {label!r} is not a single token of this tokenizer ({shown}): "
                        "choose another word, or pass --allow-subword-labels to use its first token"
                    )
                if tokenizer.unk_token_id is not None and pieces[0] == tokenizer.unk_token_id:
                    raise XlsptError(f"the label word {word!r} for {label!r} is not in this tokenizer's vocabulary: choose another word")
                ids.append(int(pieces[0]))
                owner.append(c)
        if len(set(ids)) != len(ids):
            raise XlsptError("two label words share the same token: give every class distinct words")
        return cls(labels=tuple(labels), words=tuple(words[label] for label in labels), token_ids=tuple(ids),
                   word_class=tuple(owner))

    def class_logits(self, word_logits: torch.Tensor) -> torch.Tensor:
        """``[..., W]`` logits of the label-word tokens -> ``[..., C]`` class logits (log-sum-exp over a class's words)."""
        if self.single_words:
            return word_logits
        owner = torch.tensor(self.word_class, device=word_logits.device)
        return torch.stack([torch.logsumexp(word_logits[..., owner == c], dim=-1) for c in range(len(self.labels))], dim=-1)

    def label_index(self, labels) -> torch.Tensor:
        """``[B]`` class indices for a sequence of class names."""
        position = {label: i for i, label in enumerate(self.labels)}
        return torch.tensor([position[label] for label in labels], dtype=torch.long)

    def target_token_ids(self, labels) -> torch.Tensor:
        """The training targets: ``[B]`` vocabulary ids of the label words, or with several words per
        class ``[B, K]`` (a class's words, padded with ``-1``)."""
        index = self.label_index(labels)
        if self.single_words:
            return torch.tensor(self.token_ids, dtype=torch.long)[index]
        per_class = [[t for t, c in zip(self.token_ids, self.word_class) if c == k] for k in range(len(self.labels))]
        width = max(len(ids) for ids in per_class)
        table = torch.tensor([ids + [-1] * (width - len(ids)) for ids in per_class], dtype=torch.long)
        return table[index]

    def as_dict(self) -> dict[str, str]:
        return dict(zip(self.labels, self.words))


def parse_label_words(spec: str, labels: tuple[str, ...] = CATEGORIES) -> dict[str, str]:
    """``"geography=earth,sports=play"`` or one comma-separated word per class in class order -> label -> word.

    A class may have several words, separated by ``|`` (``sports=sports|football``). Pairs may
    name only some classes: the others keep their default (or proposed) words.
    """
    parts = [p for p in spec.split(",")]
    if all("=" in p for p in parts):
        words: dict[str, str] = {}
        for part in parts:
            label, word = part.split("=", 1)
            label = label.strip()  # the word stays as typed: its leading space is part of the token
            if label not in labels:
                raise XlsptError(f"unknown class {label!r} in --label-words: classes are {', '.join(labels)}")
            if label in words:
                raise XlsptError(f"the class {label!r} is given twice in --label-words: give each class once (word1|word2 for several words)")
            words[label] = _check_word(word, label)
        return words
    if len(parts) != len(labels):
        raise XlsptError(
            f"--label-words needs {len(labels)} words in the class order {', '.join(labels)} "
            f"(or class=word pairs); got {len(parts)}"
        )
    return {label: _check_word(word, label) for label, word in zip(labels, parts)}


def _check_word(word: str, label: str) -> str:
    if not word.strip() or any(not w.strip() for w in word.split("|")):
        raise XlsptError(f"the label word for {label!r} in --label-words is empty: give a word (class=word)")
    return word


def propose_label_words(tokenizer, labels: tuple[str, ...], given: dict[str, str] | None = None) -> dict[str, str]:
    """Label words for classes without one: a single token of ``tokenizer`` made from each label's name.

    Tried in order: the label with a leading space and without, lower-cased, then each of its
    words (``billing_issue`` -> ``billing``, ``issue``). A word another class already has is
    skipped. A label with no single-token word is an error that names what was tried and the
    single-token pieces it could use instead.
    """
    import regex

    words = dict(given or {})
    taken = {_first_id(tokenizer, w) for word in words.values() for w in word.split("|")}
    for label in labels:
        if label in words:
            continue
        pieces = [w for w in regex.split(r"[^\p{L}\p{N}]+", label) if w]
        bases = list(dict.fromkeys([label, label.lower(), *pieces, *(w.lower() for w in pieces)]))
        candidates = [c for base in bases for c in (f" {base}", base)]
        chosen = None
        for candidate in candidates:
            ids = tokenizer(candidate, add_special_tokens=False)["input_ids"]
            if len(ids) == 1 and ids[0] not in taken and ids[0] != tokenizer.unk_token_id:
                chosen = candidate
                break
        if chosen is None:
            options = []
            for base in bases:
                first = tokenizer.convert_ids_to_tokens(tokenizer(f" {base}", add_special_tokens=False)["input_ids"][:1])
                options += [tokenizer.convert_tokens_to_string(first)] if first else []
            options = [o for o in dict.fromkeys(options) if o.strip()]
            raise XlsptError(
                f"no single-token label word for the class {label!r} (tried {', '.join(repr(c) for c in candidates[:6])}): "
                f"pass --label-words {label}=WORD with a one-token word"
                + (f"; single-token candidates: {', '.join(repr(o) for o in options[:5])}" if options else "")
            )
        words[label] = chosen
        taken.add(_first_id(tokenizer, chosen))
    return words


def _first_id(tokenizer, word: str) -> int | None:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    return ids[0] if ids else None


def neighbour_words(tokenizer, embeddings: torch.Tensor, word: str, k: int, *, taken: set[int] = frozenset()) -> list[str]:
    """The ``k`` whole-word tokens nearest to ``word``'s first token in the model's input embedding table (cosine):
    concrete relatives of an abstract label name (``" leisure"`` -> ``" recreation"``...), proposed without data.

    A neighbour is a lower-case alphabetic word of three letters or more that is one token after a space (the token
    itself, as a label word reads it), none of ``taken`` (other classes' words), and not the same word in another
    form (its first four letters differ from ``word``'s). ``embeddings``: ``[V, d]``.
    """
    first = _first_id(tokenizer, word)
    if first is None:
        return []
    table = embeddings.float()
    similarity = torch.nn.functional.cosine_similarity(table, table[first].unsqueeze(0), dim=1)
    stem = word.strip().lower()[:4]
    out: list[str] = []
    for i in similarity.topk(min(400, len(similarity))).indices.tolist():
        bare = tokenizer.decode([i]).strip()
        if (i == first or i in taken or not bare.isalpha() or len(bare) < 3 or bare != bare.lower() or bare[:4] == stem
                or tokenizer(f" {bare}", add_special_tokens=False)["input_ids"] != [i]):
            continue
        out.append(f" {bare}")
        if len(out) == k:
            break
    return out


def proposed_candidates(tokenizer, embeddings: torch.Tensor, words: dict[str, str], neighbours: int = 2) -> list[dict[str, str]]:
    """Label-word sets worth scoring, from one set ``words`` (label -> word, as proposed or given): ``words`` itself,
    each class's word with its ``neighbours`` nearest whole-word tokens as several words (``w|n1|n2``), and each
    class's nearest neighbour alone in place of its word."""
    taken = {_first_id(tokenizer, w) for word in words.values() for w in word.split("|")}
    near = {}
    for label, word in words.items():
        near[label] = neighbour_words(tokenizer, embeddings, word.split("|")[0], neighbours, taken=taken)
        taken |= {_first_id(tokenizer, w) for w in near[label]}
    sets = [dict(words), {label: "|".join([words[label], *near[label]]) for label in words},
            {label: (near[label][0] if near[label] else words[label]) for label in words}]
    unique = []
    for candidate in sets:
        if candidate not in unique:
            unique.append(candidate)
    return unique


def build_verbalizer(
    loaded: LoadedModel, label_words: dict[str, str] | None = None, allow_first_subtoken: bool = False,
    labels: Sequence[str] = CATEGORIES,
) -> Verbalizer:
    """The user's label words for ``labels`` (in class order), checked against the model's tokenizer.

    Classes without a given word get the model family's default for SIB-200's seven topics, and
    for any other label set a single-token word proposed from the label's name.
    """
    labels = tuple(labels)
    words = dict(label_words or {})
    if labels == CATEGORIES:
        words = {**loaded.adapter.label_words, **words}
    elif len(words) < len(labels):
        words = propose_label_words(loaded.tokenizer, labels, words)
    return Verbalizer.build(loaded.tokenizer, words, labels, allow_first_subtoken=allow_first_subtoken)

"""Several prompts, of any lengths, read on the same texts: the one object that packs prompts for a pass.

Training (a step's rows, every prompt of a sample) and scoring (every text, every prompt of the
classifiers asked) both read through :class:`PromptPass`. A prompt of length ``n`` truncates the
text to ``max_length - n - 1`` tokens, so prompts of different lengths read different token ids;
since the model is causal, the states of a truncated text are a prefix of the states of the
longer text, so the cached engine encodes each text once, for the shortest prompt, and a longer
prompt reads a prefix of those states. Where truncation is not a prefix (a tokenizer that appends
a token) that prompt length gets states of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from ..models.loading import LoadedModel
from .batching import batches_by_length, encode_texts
from .cached import CachedTextEngine
from .naive import NaiveEngine
from .options import Engine, SpecialTokens

if TYPE_CHECKING:
    from .store import TextStateStore

#: Prompts of one length scored in one pass over the weights, up to this many (prompt, text) rows.
ROWS_PER_PASS = 256


class PromptPass:
    """The token ids of ``texts`` for every prompt length, and the read-out states of prompts on them.

    Args:
        loaded: the model.
        texts: ``N`` texts.
        lengths: the prompt lengths that will read them (one per prompt, or each distinct length once).
        max_length, special_tokens: how texts are truncated and tokenized (:class:`~xlspt.engine.ReadoutConfig`).

    Attributes:
        ids: prompt length -> ``N`` token-id lists (the text's truncation for that length).
        source: prompt length -> the length whose text states it reads (the shortest, where its ids are a
            prefix of the shortest's; else its own).
        inputs: after :meth:`prepare`: source length -> what the training engine made of its ids.
    """

    def __init__(self, loaded: LoadedModel, texts: Sequence[str], lengths: Sequence[int], *, max_length: int,
                 special_tokens: SpecialTokens | str):
        self.loaded = loaded
        self.lengths = list(lengths)
        self.ids = {n: encode_texts(loaded, texts, n, max_length, special_tokens) for n in sorted(set(self.lengths))}
        self.base = min(self.ids)  # the shortest prompt leaves the longest text budget
        base_ids = self.ids[self.base]
        self.source = {n: self.base if all(row == full[: len(row)] for row, full in zip(ids, base_ids)) else n
                       for n, ids in self.ids.items()}
        self.engine = None
        self.inputs: dict[int, list] = {}

    def __len__(self) -> int:
        return len(self.ids[self.base])

    # ------------------------------------------------------------ training: rows of prepared texts

    def prepare(self, engine: NaiveEngine | CachedTextEngine) -> "PromptPass":
        """Keep what ``engine`` makes of every text (the cached engine: its states, once for every step)."""
        self.engine = engine
        self.inputs = {n: engine.prepare(self.ids[n]) for n in set(self.source.values())}
        return self

    def hidden(self, rows: Sequence[int], prompts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One ``[len(rows), d]`` read-out per prompt (``prompts[p]`` has length ``self.lengths[p]``); differentiable
        (after :meth:`prepare`)."""
        engine = self.engine
        out: list[torch.Tensor | None] = [None] * len(prompts)
        if not isinstance(engine, CachedTextEngine):
            for p, prompt in enumerate(prompts):
                ids = self.ids[self.lengths[p]]
                out[p] = engine.readout_hidden([ids[i] for i in rows], prompt)
            return out  # type: ignore[return-value]
        for source, states in self.inputs.items():
            members = [p for p in range(len(prompts)) if self.source[self.lengths[p]] == source]
            if not members:
                continue
            batch_states = engine.stack([states[i] for i in rows])
            reads = torch.tensor([[len(self.ids[self.lengths[p]][i]) for p in members] for i in rows])
            for p, hidden in zip(members, engine.readout_hidden_mixed(batch_states, [prompts[p] for p in members], reads)):
                out[p] = hidden
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------ scoring: every text, batch by batch

    @torch.no_grad()
    def states(self, prompts: Sequence[torch.Tensor], engine: Engine | str = Engine.AUTO, batch_size: int = 32, *,
               store: "TextStateStore | None" = None) -> torch.Tensor:
        """``[P, N, d]`` final hidden states at the read-out position of ``P`` prompts, float32 on the CPU.

        ``engine``: ``naive`` (a full pass per prompt and batch, the reference path), ``cached`` (each batch's
        text once, then the prompts, as many as fit in one pass) or ``auto``
        (:meth:`~xlspt.engine.Engine.for_scoring`). ``store`` keeps the text states on disk (implies cached).
        Only one batch of text states is held at a time.
        """
        out = torch.empty(len(prompts), len(self), self.loaded.hidden_size)
        if Engine(engine).for_scoring(len(prompts), store is not None) is Engine.NAIVE:
            self._naive_states(list(prompts), batch_size, out)
        else:
            self._cached_states(list(prompts), batch_size, store, out)
        return out

    def _naive_states(self, prompts, batch_size, out) -> None:
        naive = NaiveEngine(self.loaded)
        for j, prompt in enumerate(prompts):
            ids = self.ids[prompt.shape[0]]
            for batch in batches_by_length([len(x) for x in ids], batch_size):
                out[j, batch] = naive.readout_hidden([ids[i] for i in batch], prompt).float().cpu()

    def _cached_states(self, prompts, batch_size, store, out) -> None:
        """Each batch's text once; then the prompts, as many as fit together in one pass.

        Where the model takes explicit positions, prompts of any lengths are packed into one pass,
        each reading its own truncation of the text (a prefix of the states). ALiBi models run the
        prompts of one length side by side.
        """
        ids_by_length, base_ids = self.ids, self.ids[self.base]
        cached = CachedTextEngine(self.loaded, encode_batch_size=batch_size)
        mixed = self.loaded.adapter.takes_position_ids
        for batch in batches_by_length([len(x) for x in base_ids], batch_size):
            chosen_ids = [base_ids[i] for i in batch]
            base_states = store.encode_batch(cached, chosen_ids) if store else cached.encode_batch(chosen_ids)
            groups: dict[object, list[int]] = {}  # prompts that run together on the batch's states
            rows = None
            for j, prompt in enumerate(prompts):
                n = prompt.shape[0]
                ids = ids_by_length[n]
                prefix = self.source[n] == self.base
                if mixed and prefix:
                    groups.setdefault("mixed", []).append(j)
                elif all(len(ids[i]) == len(base_ids[i]) for i in batch):
                    groups.setdefault(n, []).append(j)
                else:
                    if prefix:  # rows truncated further: their states are prefixes of the longer text's
                        rows = rows or base_states.rows()
                        states = [s.prefix(len(ids[i])) for s, i in zip(rows, batch)]
                    else:  # a tokenizer that adds a suffix token: truncation is not a prefix, encode again
                        states = cached.encode_batch([ids[i] for i in batch])
                    out[j, batch] = cached.readout_hidden(states, prompt).float().cpu()
            per_pass = max(1, ROWS_PER_PASS // len(batch))
            for key, group in groups.items():
                for start in range(0, len(group), per_pass):
                    chosen = group[start : start + per_pass]
                    if key == "mixed":
                        reads = torch.tensor([[len(ids_by_length[prompts[j].shape[0]][i]) for j in chosen] for i in batch])
                        hidden = torch.stack(cached.readout_hidden_mixed(base_states, [prompts[j] for j in chosen], reads))
                    else:
                        hidden = cached.readout_hidden_many(base_states, torch.stack([prompts[j] for j in chosen]))
                    for k, j in enumerate(chosen):
                        out[j, batch] = hidden[k].float().cpu()

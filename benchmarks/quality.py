"""Transfer quality, second round: candidate member groups chosen on development languages, scored on
the 52 target languages and on held-out languages.

Three fixed, disjoint language sets (``xlspt languages``; docs/cli.md#language-sets):

* the **development languages** (24 SIB-200 languages outside the 52): each dev split is cut in
  seeded halves (:func:`xlspt.data.sampling.split_in_halves`); the labelled half chooses settings,
  the other half's texts (labels unread) are that language's unlabeled text for protocol b;
* the **target languages**, the study's 52: their test splits give the headline; their dev texts,
  labels unread, are their unlabeled text for protocol b;
* the **held-out languages** (40 more): test splits scored like the 52's, dev texts as unlabeled
  text; nothing is ever chosen on them.

Steps: train every candidate group (each group's members side by side, seeds 0..K-1, each on its
own English sample unless the group shares one); read every prompt's read-out states on English
dev, the content-free inputs of each script and the development languages' dev splits; choose,
under two rules, the setting of each protocol (zero-shot; (a) no target-language data; (b)
unlabeled target text):

* *English dev*: the group with the best zero-shot accuracy on the English dev split, with each
  protocol's correction fixed as its most complete form (English dev cannot choose a correction
  meant for other languages);
* *development languages*: the (group, correction) with the best mean accuracy over the
  development languages' labelled halves.

Then read the states of the prompts those settings use on the 52's and the held-out languages'
test and dev splits, and score every chosen setting on both. Test labels are read for the table
only.

    python benchmarks/quality.py --data ../shared/sib200 [--json] [--dtype auto] [--smoke]
        [--groups NAME ...] [--no-self-training]

Groups of the ``lora`` method (third round) are members each with their own low-rank adapters on the
frozen model: each reads text through its adapters (one pass per member, no shared text states), so
they cost far more to score than frozen prompts; ``--groups`` keeps a few (the study-defaults and
reference groups are always kept). Beside quality, every candidate's cost is printed: training time,
scoring time per language, bytes stored per task, and whether it serves from one base model.

Prompts and states are cached under ``<cache>/bench/quality`` (``--fresh`` ignores the cache), so
an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import f1_score

import xlspt
from xlspt import calibration as cal
from xlspt.classifiers import LoraClassifier, PromptClassifier, SelfTrainingConfig, load_classifier, self_train
from xlspt.data.anchors import ANCHORS as PUBLISHED, SOURCE, anchor_mean
from xlspt.data.languages import language_sets
from xlspt.data.sampling import split_in_halves
from xlspt.engine import ReadoutConfig
from xlspt.evaluate import readout_states, states_to_logits
from xlspt.files import cache_dir, write_with_atomic
from xlspt.verbalizer import parse_label_words

#: The published anchors' mean accuracy on the 52 and on the held-out languages (the SIB-200 paper's Table 8, packaged
#: as src/xlspt/data/anchors.tsv), printed beside the chosen settings.
ANCHORS = {anchor.name: {name: anchor_mean(anchor, language_sets()[name])[0] for name in ("52", "held-out")}
           for anchor in PUBLISHED}
ENGLISH = "eng_Latn"
RULE_ENGLISH, RULE_DEVELOPMENT = "English dev", "development languages"


@dataclass(frozen=True)
class Group:
    """Member prompts trained alike, one per seed."""

    name: str
    shots: int = 8
    length: int = 4
    reparam: int | None = None
    members: int = 8
    shared_sample: bool = False
    epochs: int = 20
    label_words: str | None = None
    loss: str = "vocabulary"
    patience: int = 0
    method: str = "prompt"

    @property
    def lora(self) -> bool:
        return self.method == "lora"

    def key(self, seed: int) -> str:
        sample = "shared0" if self.shared_sample else f"own{seed}"
        words = f"-w{sum(map(ord, self.label_words)) % 10007}" if self.label_words else ""
        loss = "-lw" if self.loss == "label-words" else ""
        patience = f"-p{self.patience}" if self.patience else ""
        method = "lora-" if self.lora else ""
        return f"{method}s{self.shots}-l{self.length}-r{self.reparam or 0}-e{self.epochs}{words}{loss}{patience}-seed{seed}-{sample}"

    def keys(self) -> list[str]:
        return [self.key(seed) for seed in range(self.members)]


#: Several single-token words per class for Gemma 3 (each checked to be one token).
SEVERAL_WORDS = ("geography= geography| earth,science/technology= science| technology,"
                 "entertainment= entertainment| music| film,politics= politics| government,health= health| medicine,"
                 "travel= travel| tourism,sports= sports| football")

PLAIN = "8 shots"
GROUPS = [
    Group(PLAIN),
    Group("8 shots, reparameterized 64", reparam=64),
    Group("8 shots, reparameterized 200", reparam=200),
    Group("8 shots, reparameterized 800", reparam=800),
    Group("8 shots, reparameterized 200, 40 epochs", reparam=200, epochs=40),
    Group("8 shots, reparameterized 200, patience 3", reparam=200, patience=3),
    Group("8 shots, label-word loss", loss="label-words"),
    Group("8 shots, reparameterized 200, label-word loss", reparam=200, loss="label-words"),
    Group("8 shots, several label words", label_words=SEVERAL_WORDS),
    Group("8 shots, one shared sample", members=4, shared_sample=True),
    Group("32 shots", shots=32),
    Group("32 shots, reparameterized 200", shots=32, reparam=200),
    # third round: each member with its own low-rank adapters (LoraConfig's defaults, lr chosen on the dev languages)
    Group("LoRA, 8 shots, reparameterized 200", reparam=200, members=4, method="lora"),
    Group("LoRA, 32 shots, reparameterized 200", shots=32, reparam=200, members=4, method="lora"),
]
#: Groups every run keeps: the study's defaults and the reference prompt are read from them.
KEPT = (PLAIN, "8 shots, reparameterized 200")
#: Groups of mixed members (plain with reparameterized, member i of each on sample i), voting together: same
#: label words and read-out. Only mixes a run config can express are candidates (one number of shots).
MIXED = {
    "8 shots, plain and reparameterized 200": ["8 shots", "8 shots, reparameterized 200"],
    "8 shots, plain and reparameterized 800": ["8 shots", "8 shots, reparameterized 800"],
    "32 shots, plain and reparameterized 200": ["32 shots", "32 shots, reparameterized 200"],
}

#: The corrections of each protocol: (name, how the prior is made, how states are standardized).
#: prior: None, "content-free" (random tokens of any script), "script" (random tokens in the language's
#: script), "unlabeled" (the language's unlabeled texts); standardize: None, "script" (content-free inputs
#: of the language's script moved to those of English's), "unlabeled" (the unlabeled texts to English dev's).
CORRECTIONS = {
    "zero-shot": [("none", None, None)],
    "a": [("content-free prior", "content-free", None), ("content-free prior in the script", "script", None),
          ("content-free standardize + prior, in the script", "script", "script")],
    "b": [("prior from unlabeled text", "unlabeled", None), ("standardize on unlabeled text", None, "unlabeled"),
          ("standardize + prior from unlabeled text", "unlabeled", "unlabeled")],
}
#: What the English-dev rule uses for each protocol: the most complete form (the presets before this round).
FIXED_CORRECTION = {"zero-shot": "none", "a": "content-free prior in the script",
                    "b": "standardize + prior from unlabeled text"}
#: Self-training's settings here: few texts per class and language, few epochs (the shared prompt reads every
#: language's pseudo-labels); its pseudo-labels come from the quality-unlabeled preset's calibration.
SELF_TRAINING = SelfTrainingConfig(per_class=4, epochs=5)
PSEUDO_LABELLING = xlspt.CalibrationConfig("unlabeled", standardize=True)
PROTOCOL_NAMES = {"zero-shot": "zero-shot", "a": "a (no target data)", "b": "b (unlabeled target text)"}


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def train_groups(model, data, groups: list[Group], root: Path, fresh: bool) -> tuple[dict[str, PromptClassifier], dict]:
    """Every group's members (cached per member), trained side by side per group; and each group's training facts."""
    members: dict[str, PromptClassifier] = {}
    facts = {}
    for group in groups:
        folders = [root / "prompts" / key for key in group.keys()]
        kind = LoraClassifier if group.lora else PromptClassifier

        def train(seeds):
            clf = kind.train(
                model, data, shots=group.shots,
                prompt=xlspt.PromptConfig(length=group.length, reparam_hidden=group.reparam),
                training=xlspt.TrainConfig(seed=0, epochs=group.epochs, loss=group.loss, patience=group.patience),
                label_words=parse_label_words(group.label_words) if group.label_words else None,
                ensemble=seeds, shared_sample=group.shared_sample, progress=False, recipe="study",
            )
            return [clf.member(i) for i in range(clf.size)]

        if not kind.works_together:  # trained one after another anyway: each member saved as it is done
            for seed, folder in enumerate(folders):
                if fresh or not _saved(folder):
                    started = time.time()
                    [member] = train([seed])
                    member.save(folder)
                    log(f"trained {group.name}, member {seed + 1}/{group.members} in {time.time() - started:.0f} s")
            loaded = [load_classifier(folder, model) for folder in folders]
        elif not fresh and all(map(_saved, folders)):
            loaded = [load_classifier(folder, model) for folder in folders]
        else:
            started = time.time()
            loaded = train(group.members)
            for member, folder in zip(loaded, folders):
                member.save(folder)
            log(f"trained {group.name} ({group.members} members side by side) in {time.time() - started:.0f} s")
        epochs = [len(m.metadata.training.history) for m in loaded]
        facts[group.name] = {"seconds": sum(m.metadata.training.train_seconds or 0 for m in loaded),
                             "best_epochs": [m.metadata.training.best_epoch for m in loaded], "epochs_run": epochs,
                             "bytes_per_task": sum(_stored_bytes(folder) for folder in folders)}
        members.update(zip(group.keys(), loaded))
    return members, facts


def _saved(folder: Path) -> bool:
    return (folder / "prompt.json").exists() or (folder / "lora.json").exists()


def _stored_bytes(folder: Path) -> int:
    """What a member adds to a task on disk: its weights files (prompt, and adapters for LoRA)."""
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


class ReadTimes:
    """Seconds spent reading states per member and texts read, kept beside the cache so a resumed run still knows them."""

    def __init__(self, path: Path):
        self.path = path
        self.seen: dict[str, list[float]] = json.loads(path.read_text()) if path.exists() else {}

    def add(self, keys: list[str], seconds: float, texts: int) -> None:
        for key in keys:  # a shared pass is split evenly among the prompts that read it
            spent = self.seen.setdefault(key, [0.0, 0])
            spent[0] += seconds / len(keys)
            spent[1] += texts
        write_with_atomic(self.path, lambda tmp: tmp.write_text(json.dumps(self.seen)))

    def ms_per_text(self, keys: list[str]) -> float | None:
        """Milliseconds per text for all of ``keys`` together (None when a member's timing is unknown)."""
        if not all(self.seen.get(k, [0, 0])[1] for k in keys):
            return None
        return 1000 * sum(self.seen[k][0] / self.seen[k][1] for k in keys)


def cached_states(path: Path, keys: list[str], compute: Callable[[list[str]], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Read-out states per member key from ``path``, computing (in one text pass) those missing."""
    have = load_file(str(path)) if path.exists() else {}
    missing = [k for k in keys if k not in have]
    if missing:
        new = compute(missing)
        have.update({k: new[i].to(torch.float16).contiguous() for i, k in enumerate(missing)})
        path.parent.mkdir(parents=True, exist_ok=True)
        write_with_atomic(path, lambda tmp: save_file(have, str(tmp)))
    return {k: have[k].float() for k in keys}


@dataclass
class Language:
    """A language's states: those scored (with gold labels) and its unlabeled texts' (labels unread)."""

    code: str
    scored: dict[str, torch.Tensor]
    gold: np.ndarray
    unlabeled: dict[str, torch.Tensor]


class Scorer:
    """Every setting's accuracy from read-out states: members' log-probabilities, corrections, the vote."""

    def __init__(self, model, members: dict[str, PromptClassifier], english_dev: dict, content_free: dict, by_script: dict):
        self.model, self.members = model, members
        self.english_dev, self.content_free, self.by_script = english_dev, content_free, by_script

    def logp(self, states: dict[str, torch.Tensor], chosen: list[str]) -> torch.Tensor:
        """``[P, N, C]`` class log-probabilities of ``chosen`` members (all read the same label words)."""
        words = self.members[chosen[0]].verbalizer
        stacked = torch.stack([states[k] for k in chosen])
        return cal.log_probs(words.class_logits(states_to_logits(self.model, words, stacked)))

    def _stack(self, states: dict, chosen: list[str]) -> torch.Tensor:
        return torch.stack([states[k] for k in chosen])

    def predict(self, language: Language, chosen: list[str], protocol: str, correction: str) -> np.ndarray:
        _, prior_from, standardize = next(c for c in CORRECTIONS[protocol] if c[0] == correction)
        scored = self._stack(language.scored, chosen)
        # read only where used: the 52's and held-out languages' unlabeled states are computed for the settings of b
        unlabeled = self._stack(language.unlabeled, chosen) if "unlabeled" in (prior_from, standardize) else None
        if "script" in (prior_from, standardize):
            script = self._stack(self.by_script.get(cal.script_of(language.code), self.content_free), chosen)
        if standardize == "unlabeled":
            own = cal.StateStatistics.of(unlabeled)
            english = cal.StateStatistics.of(self._stack(self.english_dev, chosen))
            scored, unlabeled = own.standardize_to(scored, english), own.standardize_to(unlabeled, english)
        elif standardize == "script":
            own = cal.StateStatistics.of(script)
            english = cal.StateStatistics.of(self._stack(self.by_script["Latn"], chosen))
            scored, script = own.standardize_to(scored, english), own.standardize_to(script, english)
        scores = self.logp(dict(zip(chosen, scored)), chosen)
        prior = None
        if prior_from == "content-free":
            prior = cal.log_prior(self.logp(self.content_free, chosen))
        elif prior_from == "script":
            prior = cal.log_prior(self.logp(dict(zip(chosen, script)), chosen))
        elif prior_from == "unlabeled":
            prior = cal.log_prior(self.logp(dict(zip(chosen, unlabeled)), chosen))
        return cal.combine(scores, prior).argmax(-1).numpy()

    def accuracy(self, language: Language, chosen: list[str], protocol: str, correction: str) -> float:
        return float((self.predict(language, chosen, protocol, correction) == language.gold).mean())

    def measure(self, languages: list[Language], chosen: list[str], protocol: str, correction: str) -> dict:
        return self.measure_each([(language, chosen) for language in languages], protocol, correction)

    def measure_each(self, languages: list[tuple[Language, list[str]]], protocol: str, correction: str) -> dict:
        """Accuracy and macro-F1 per language, each language scored by its own prompts, and their summary."""
        accs, f1s = {}, {}
        for language, chosen in languages:
            predicted = self.predict(language, chosen, protocol, correction)
            accs[language.code] = float((predicted == language.gold).mean())
            f1s[language.code] = float(f1_score(language.gold, predicted, average="macro",
                                                labels=list(range(len(self.members[chosen[0]].labels))), zero_division=0))
        values = np.array(list(accs.values()))
        weakest = min(accs, key=accs.get)
        chance = 1 / len(self.members[languages[0][1][0]].labels)
        return {"mean": float(values.mean()), "sem": float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0,
                "macro_f1": float(np.mean(list(f1s.values()))), "below_chance": int((values < chance).sum()),
                "weakest": weakest, "weakest_accuracy": accs[weakest], "per_language": accs}


def _row(setting, rule, protocol, keys, english_dev, development, on_targets, held_out) -> dict:
    return {"setting": setting, "rule": rule, "protocol": protocol, "prompts": len(keys), "english_dev": english_dev,
            "development": development, "english": on_targets["per_language"].get(ENGLISH), "targets": on_targets,
            "held_out": held_out}


def candidates(groups: list[Group], members: dict[str, PromptClassifier]) -> dict[str, list[str]]:
    """Every candidate ensemble: each group, its first 4 members, and the mixed groups."""
    by_name = {g.name: g.keys() for g in groups}
    out = dict(by_name)
    for group in groups:
        if group.members > 4:
            out[f"{group.name}, first 4"] = group.keys()[:4]
    for name, parts in MIXED.items():
        if all(part in by_name for part in parts):
            out[name] = [k for part in parts for k in by_name[part]]
    return out


def candidate_summary(pool: dict[str, list[str]], english_scores: dict, development_scores: dict) -> dict:
    """Each candidate's English dev accuracy and, per protocol, its best mean over the development languages."""
    return {name: {"english_dev": english_scores[name],
                   **{protocol: max(v for k, v in development_scores.items() if k[0] == name and k[1] == protocol)
                      for protocol in CORRECTIONS}} for name in pool}


def candidate_costs(groups: list[Group], pool: dict[str, list[str]], training: dict, read_times: ReadTimes) -> dict:
    """Each candidate's training seconds, scoring milliseconds per text (all its members), stored bytes per task,
    and whether it serves from one base model (every candidate here: prompts and adapters both ride on it)."""
    group_of = {k: g for g in groups for k in g.keys()}
    out = {}
    for name, keys in pool.items():
        owners = [group_of[k] for k in keys]
        share = [1 / owner.members for owner in owners]  # a member's part of its group's training and bytes
        out[name] = {"prompts": len(keys), "lora": any(o.lora for o in owners),
                     "training_seconds": sum(s * training[o.name]["seconds"] for s, o in zip(share, owners)),
                     "scoring_ms_per_text": read_times.ms_per_text(keys),
                     "bytes_per_task": round(sum(s * training[o.name]["bytes_per_task"] for s, o in zip(share, owners))),
                     "one_base_model": True}
    return out


def print_candidates(pool: dict[str, list[str]], scorer: Scorer, development: list[Language], english_scores: dict,
                     development_scores: dict) -> None:
    """The candidates table: English dev, the development languages zero-shot, one member alone, and each protocol's
    best correction on the development languages."""
    print("\nCandidates (English dev: zero-shot accuracy; development languages: mean over their labelled dev halves)\n")
    print("| candidate | prompts | English dev | dev langs zero-shot | one member alone (mean ± sd over seeds) "
          "| dev langs (a), best correction | dev langs (b), best correction |")
    print("|---|---|---|---|---|---|---|")
    for name, keys in pool.items():
        alone = [np.mean([scorer.accuracy(lang, [k], "zero-shot", "none") for lang in development]) for k in keys]
        cells = []
        for protocol in ("a", "b"):
            options = {c: development_scores[(name, protocol, c)] for c, _, _ in CORRECTIONS[protocol]}
            best = max(options, key=options.get)
            cells.append(f"{100 * options[best]:.1f} ({best})")
        print(f"| {name} | {len(keys)} | {100 * english_scores[name]:.1f} | "
              f"{100 * development_scores[(name, 'zero-shot', 'none')]:.1f} | "
              f"{100 * np.mean(alone):.1f} ± {100 * np.std(alone, ddof=1) if len(alone) > 1 else 0:.1f} | {cells[0]} | {cells[1]} |")


def print_costs(costs: dict) -> None:
    print("\nCost per candidate (training: all members' seconds; scoring: all members reading one text, and a "
          "204-sentence test split; stored: the weights files per task)\n")
    print("| candidate | prompts | training s | scoring ms per text | s per language | stored per task | one base model |")
    print("|---|---|---|---|---|---|---|")
    for name, cost in costs.items():
        ms = cost["scoring_ms_per_text"]
        print(f"| {name} | {cost['prompts']} | {cost['training_seconds']:.0f} | {'-' if ms is None else f'{ms:.1f}'} | "
              f"{'-' if ms is None else f'{ms * 204 / 1000:.1f}'} | {cost['bytes_per_task'] / 1e6:.2f} MB | yes |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/sib200")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--fresh", action="store_true", help="ignore cached prompts and states")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="2 members, 2 epochs, 8 shots, 3 languages per set: checks the script only")
    parser.add_argument("--groups", nargs="+", metavar="NAME", choices=[g.name for g in GROUPS],
                        help=f"train and choose among these groups only (always with {' and '.join(KEPT)})")
    parser.add_argument("--choose-only", action="store_true",
                        help="stop once the settings are chosen: print the candidates (development languages) and their "
                             "costs, score nothing on the 52 or the held-out languages")
    parser.add_argument("--no-self-training", action="store_true",
                        help="leave self-training out (it is never tried on a LoRA group: it continues frozen prompts)")
    args = parser.parse_args()
    groups = [g for g in GROUPS if not args.groups or g.name in args.groups or g.name in KEPT]
    sets = {name: list(codes) for name, codes in language_sets().items()}
    if args.smoke:
        groups = ([replace(g, members=2, epochs=2, shots=8) for g in groups if g.shots == 8 and g.epochs == 20 and not g.lora][:4]
                  + [replace(g, members=2, epochs=2, shots=8) for g in groups if g.lora][:1])
        sets = {name: codes[:3] for name, codes in sets.items()}
        sets["52"] = [ENGLISH] + [c for c in sets["52"] if c != ENGLISH][:2]
    started = time.time()

    model = xlspt.load_model(dtype=args.dtype)
    data = xlspt.Sib200.resolve(args.data)
    dtype = str(model.dtype).removeprefix("torch.")
    root = cache_dir("bench", "quality", f"{model.name}-{dtype}" + ("-smoke" if args.smoke else ""))
    log(f"model {model.name} ({dtype}); cache {root}; {len(groups)} groups; languages: "
        + ", ".join(f"{len(codes)} {name}" for name, codes in sets.items()))

    members, training = train_groups(model, data, groups, root, args.fresh)
    train_seconds = time.time() - started
    first = members[groups[0].key(0)]

    cleared: set[str] = set()
    read_times = ReadTimes(root / "read-times.json")
    lora_keys = {k for g in groups if g.lora for k in g.keys()}

    def read(missing: list[str], texts: list[str]) -> torch.Tensor:
        """``[P, N, d]``: the frozen prompts in one cached pass, each LoRA member through its own adapters."""
        out = {}
        frozen = [k for k in missing if k not in lora_keys]
        if frozen:
            t0 = time.time()
            states = readout_states(model, [members[k].prompt for k in frozen], texts,
                                    ReadoutConfig(max_length=first.max_length, engine="cached"))
            read_times.add(frozen, time.time() - t0, len(texts))
            out.update(zip(frozen, states))
        for key in (k for k in missing if k in lora_keys):
            t0 = time.time()
            [out[key]] = members[key].read_states(texts, ReadoutConfig(max_length=first.max_length))
            read_times.add([key], time.time() - t0, len(texts))
        return torch.stack([out[k] for k in missing])

    def states_of(keys: list[str], texts: list[str], tag: str) -> dict[str, torch.Tensor]:
        path = root / "states" / f"{tag}.safetensors"
        if args.fresh and tag not in cleared:  # once: a later call for more prompts adds to what this run computed
            path.unlink(missing_ok=True)
            cleared.add(tag)
        return cached_states(path, keys, lambda missing: read(missing, texts))

    # ---------------------------------------------------------------- choosing: English dev and development languages
    every = list(members)
    english_dev_frame = data.split(ENGLISH, "dev")
    english_dev = states_of(every, english_dev_frame["text"].tolist(), f"{ENGLISH}.dev")
    content_free = states_of(every, cal.content_free_texts(model.tokenizer, 32, seed=0), "content-free")
    all_codes = [c for codes in sets.values() for c in codes]
    by_script = {script: states_of(every, cal.content_free_texts(model.tokenizer, 32, seed=0, script=script),
                                   f"content-free-{script}")
                 for script in sorted({cal.script_of(c) for c in all_codes} - {None})}
    scorer = Scorer(model, members, english_dev, content_free, by_script)

    def gold_of(frame, keys):
        return members[keys[0]].verbalizer.label_index(frame["label"]).numpy()

    english_as_language = Language(ENGLISH, english_dev, gold_of(english_dev_frame, every), english_dev)

    def development_language(code: str, keys: list[str]) -> Language:
        """The labelled half of ``code``'s dev split scored, the other half's texts its unlabeled text."""
        dev_frame = data.split(code, "dev")
        labelled, unlabeled = split_in_halves(dev_frame, seed=0)
        states = states_of(keys, dev_frame["text"].tolist(), f"{code}.dev")
        position = {index: row for row, index in enumerate(dev_frame.index)}

        def pick(frame):
            return {k: v[[position[j] for j in frame.index]] for k, v in states.items()}
        return Language(code, pick(labelled), gold_of(labelled, keys), pick(unlabeled))

    def scored_language(code: str, keys: list[str], unlabeled_keys: list[str] | None = None) -> Language:
        """``code``'s test split scored, its dev split's texts its unlabeled text (read for ``unlabeled_keys``,
        default all: the prompts of settings that use unlabeled text)."""
        test_frame, dev_frame = data.split(code, "test"), data.split(code, "dev")
        unlabeled_keys = keys if unlabeled_keys is None else unlabeled_keys
        return Language(code, states_of(keys, test_frame["text"].tolist(), f"{code}.test"), gold_of(test_frame, keys),
                        states_of(unlabeled_keys, dev_frame["text"].tolist(), f"{code}.dev"))

    development = []
    for i, code in enumerate(sets["dev"]):
        t0 = time.time()
        development.append(development_language(code, every))
        log(f"states {code} dev ({i + 1}/{len(sets['dev'])}) in {time.time() - t0:.0f} s")
    choose_seconds = time.time() - started - train_seconds

    pool = candidates(groups, members)
    english_scores = {name: scorer.accuracy(english_as_language, keys, "zero-shot", "none") for name, keys in pool.items()}
    development_scores = {
        (name, protocol, correction): float(np.mean([scorer.accuracy(lang, keys, protocol, correction) for lang in development]))
        for name, keys in pool.items() for protocol, forms in CORRECTIONS.items() for correction, _, _ in forms
    }
    english_pick = max(english_scores, key=english_scores.get)
    chosen = {(RULE_ENGLISH, protocol): (english_pick, FIXED_CORRECTION[protocol]) for protocol in CORRECTIONS}
    for protocol in CORRECTIONS:
        options = {k: v for k, v in development_scores.items() if k[1] == protocol}
        name, _, correction = max(options, key=options.get)
        chosen[(RULE_DEVELOPMENT, protocol)] = (name, correction)
    for (rule, protocol), (name, correction) in chosen.items():
        log(f"{rule} chose for {protocol}: {name}, {correction}")
    if args.choose_only:
        print_candidates(pool, scorer, development, english_scores, development_scores)
        costs = candidate_costs(groups, pool, training, read_times)
        print_costs(costs)
        print(f"\nchose in {time.time() - started:.0f} s (training {train_seconds:.0f} s); nothing scored on test splits",
              file=sys.stderr)
        if args.json:
            print(json.dumps({"selection": RULE_DEVELOPMENT, "chosen": {f"{rule}: {protocol}": {"group": name, "correction": correction}
                                                                       for (rule, protocol), (name, correction) in chosen.items()},
                              "candidates": candidate_summary(pool, english_scores, development_scores),
                              "training": training, "costs": costs}))
        return

    # ---------------------------------------------------------------- self-training (protocol b), chosen on development languages
    base_name, base_correction = chosen[(RULE_DEVELOPMENT, "b")]
    base_keys = pool[base_name]
    try_self_training = not args.no_self_training and not lora_keys & set(base_keys)

    def self_trained(unlabeled: dict[str, list[str]], scope: str, tag: str) -> dict[str | None, list[str]]:
        """The base ensemble's members trained on pseudo-labels of ``unlabeled``: their keys per language (``None``:
        shared by all), trained (and cached) where missing."""
        config = replace(SELF_TRAINING, scope=scope)
        names = {lang: [f"{k}+st-{tag if scope == 'shared' else lang}" for k in base_keys]
                 for lang in ([None] if scope == "shared" else unlabeled)}
        missing = {lang: keys for lang, keys in names.items()
                   if args.fresh or not all(_saved(root / "prompts" / k) for k in keys)}
        if missing:
            t0 = time.time()
            base = PromptClassifier.ensemble_of([members[k] for k in base_keys], calibration=PSEUDO_LABELLING)
            base.fit_reference(data)
            texts = unlabeled if scope == "shared" else {lang: unlabeled[lang] for lang in missing}
            try:
                tuned = self_train(base, texts, config, data=data, progress=False)
            except xlspt.XlsptError as exc:  # no language kept pseudo-labels: nothing trained
                log(f"self-training ({scope}, {tag}): {exc}")
                tuned = {}
            tuned = {None: tuned} if scope == "shared" and tuned else tuned
            for lang, clf in tuned.items():
                for i, key in enumerate(names[lang]):
                    clf.member(i).save(root / "prompts" / key)
            log(f"self-trained ({scope}, {tag}) {len(tuned)} prompt set(s) in {time.time() - t0:.0f} s")
        out = {}
        for lang, keys in names.items():
            if all((root / "prompts" / k / "prompt.json").exists() for k in keys):
                for key in keys:
                    members.setdefault(key, PromptClassifier.load(root / "prompts" / key, model))
                out[lang] = keys
        new_keys = [k for keys in out.values() for k in keys]
        if new_keys:  # standardizing reads English dev's statistics of every prompt
            english_dev.update(states_of(new_keys, english_dev_frame["text"].tolist(), f"{ENGLISH}.dev"))
        return out

    def own_keys(trained: dict[str | None, list[str]], code: str) -> list[str]:
        """The prompts that score ``code``: its own self-trained ones, the shared ones, or the base ensemble's."""
        return trained.get(code) or trained.get(None) or base_keys

    halves = {code: split_in_halves(data.split(code, "dev"), seed=0)[1]["text"].tolist() for code in sets["dev"]}
    self_training = {"none": float(np.mean([scorer.accuracy(lang, base_keys, "b", base_correction) for lang in development]))}
    trained_on_development = {}
    for scope in ("shared", "per-language") if try_self_training else ():
        trained_on_development[scope] = trained = self_trained(halves, scope, "dev")
        self_training[scope] = float(np.mean([
            scorer.accuracy(development_language(lang.code, own_keys(trained, lang.code)), own_keys(trained, lang.code),
                            "b", base_correction) for lang in development]))
    chosen_scope = max(self_training, key=self_training.get)
    log(f"self-training on the development languages (mean accuracy, b): {self_training}; chosen: {chosen_scope}")

    # ---------------------------------------------------------------- scoring the 52 and the held-out languages
    reparam_alone = next(g for g in groups if g.name == "8 shots, reparameterized 200")
    settings = [("study defaults (8 shots, seed 0)", "study defaults", "zero-shot", [groups[0].key(0)], "none"),
                ("one reparameterized prompt (200, seed 0)", "study defaults", "zero-shot", [reparam_alone.key(0)], "none"),
                (f"ensemble of {groups[0].members} plain prompts", "-", "zero-shot", groups[0].keys(), "none")]
    for (rule, protocol), (name, correction) in chosen.items():
        settings.append((f"{name} + {correction}" if correction != "none" else name, rule, protocol, pool[name], correction))
    needed = sorted({k for *_, keys, _ in settings for k in keys})
    unlabeled_needed = sorted({k for _, _, protocol, keys, correction in settings for k in keys
                               if "unlabeled" in next(c for c in CORRECTIONS[protocol] if c[0] == correction)[1:]})
    scored_sets: dict[str, list[Language]] = {"52": [], "held-out": []}
    self_trained_keys: dict[str, dict[str | None, list[str]]] = {}
    for set_name in scored_sets:
        if chosen_scope != "none":
            unlabeled = {code: data.split(code, "dev")["text"].tolist() for code in sets[set_name]}
            self_trained_keys[set_name] = self_trained(unlabeled, chosen_scope, set_name)
        for i, code in enumerate(sets[set_name]):
            t0 = time.time()
            extra = own_keys(self_trained_keys[set_name], code) if chosen_scope != "none" else []
            scored_sets[set_name].append(scored_language(code, sorted(set(needed) | set(extra)),
                                                         sorted(set(unlabeled_needed) | set(extra))))
            log(f"states {code} test and dev ({set_name}, {i + 1}/{len(sets[set_name])}) in {time.time() - t0:.0f} s")
    score_seconds = time.time() - started - train_seconds - choose_seconds

    table = []
    for setting, rule, protocol, keys, correction in settings:
        on_targets = scorer.measure(scored_sets["52"], keys, protocol, correction)
        held_out = scorer.measure(scored_sets["held-out"], keys, protocol, correction)
        development_mean = float(np.mean([scorer.accuracy(lang, keys, protocol, correction) for lang in development]))
        table.append(_row(setting, rule, protocol, keys, scorer.accuracy(english_as_language, keys, "zero-shot", "none"),
                          development_mean, on_targets, held_out))
    if chosen_scope != "none":
        def by_language(set_name):
            return [(lang, own_keys(self_trained_keys[set_name], lang.code)) for lang in scored_sets[set_name]]
        on_targets = scorer.measure_each(by_language("52"), "b", base_correction)
        held_out = scorer.measure_each(by_language("held-out"), "b", base_correction)
        table.append(_row(f"{base_name} + {base_correction} + self-training ({chosen_scope})", RULE_DEVELOPMENT, "b",
                          base_keys, None, self_training[chosen_scope], on_targets, held_out))
    for row in table:
        on_targets, held_out = row["targets"], row["held_out"]
        log(f"{row['setting']} [{row['rule']}, {row['protocol']}]: 52 {on_targets['mean']:.3f}, held-out {held_out['mean']:.3f}")

    print_candidates(pool, scorer, development, english_scores, development_scores)
    print("\nChosen settings, scored on test splits\n")
    print("| setting | chosen on | protocol | prompts | English dev | dev langs | English | 52-language mean (± s.e.) "
          "| weakest of the 52 | below chance | held-out mean (± s.e.) | held-out weakest |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in table:
        t, h = row["targets"], row["held_out"]
        print(f"| {row['setting']} | {row['rule']} | {PROTOCOL_NAMES[row['protocol']]} | {row['prompts']} | "
              f"{_percent(row['english_dev'])} | {100 * row['development']:.1f} | {100 * (row['english'] or 0):.1f} | "
              f"{100 * t['mean']:.1f} ± {100 * t['sem']:.1f} | {t['weakest']} {100 * t['weakest_accuracy']:.1f} | "
              f"{t['below_chance']} | {100 * h['mean']:.1f} ± {100 * h['sem']:.1f} | {h['weakest']} {100 * h['weakest_accuracy']:.1f} |")
    print(f"\nPublished anchors on the same test sentences ({SOURCE}): "
          + "; ".join(f"{name} {100 * means['52']:.1f} on the 52, {100 * means['held-out']:.1f} held out"
                      for name, means in ANCHORS.items()))
    base_row = next(r for r in table if r["rule"] == RULE_DEVELOPMENT and r["protocol"] == "b")
    self_trained_row = table[-1] if chosen_scope != "none" else None
    gains = {}
    print("\nSelf-training on the development languages (mean accuracy, protocol b): "
          + ", ".join(f"{scope} {100 * value:.1f}" for scope, value in self_training.items()) + f"; chosen: {chosen_scope}")
    if self_trained_row is not None:
        for set_name, key in (("52", "targets"), ("held-out", "held_out")):
            before, after = base_row[key]["per_language"], self_trained_row[key]["per_language"]
            gains[set_name] = {code: after[code] - before[code] for code in before}
            values = np.array(list(gains[set_name].values()))
            print(f"\nGain from self-training per language ({set_name}: mean {100 * values.mean():+.1f} points, "
                  f"{int((values > 0).sum())} up, {int((values < 0).sum())} down): "
                  + ", ".join(f"{code} {100 * gain:+.1f}" for code, gain in sorted(gains[set_name].items(), key=lambda kv: kv[1])))
    print("\nTraining per group (seconds for all members side by side; best epochs; epochs run)\n")
    for name, fact in training.items():
        print(f"- {name}: {fact['seconds']:.0f} s, best epochs {fact['best_epochs']}, epochs run {fact['epochs_run']}")
    costs = candidate_costs(groups, pool, training, read_times)
    print_costs(costs)
    total = time.time() - started
    print(f"\ntraining {train_seconds:.0f} s, choosing {choose_seconds:.0f} s, scoring {score_seconds:.0f} s, "
          f"total {total:.0f} s", file=sys.stderr)
    if args.json:
        def row_of(rule, protocol):
            return next(r for r in table if r["rule"] == rule and r["protocol"] == protocol)

        headline = {protocol: row_of(RULE_DEVELOPMENT, protocol) for protocol in CORRECTIONS}
        if self_trained_row is not None:
            headline["b"] = self_trained_row
        print(json.dumps({
            "selection": RULE_DEVELOPMENT,
            "english": headline["zero-shot"]["english"],
            "study_defaults_mean": table[0]["targets"]["mean"],
            "zero_shot_mean": headline["zero-shot"]["targets"]["mean"],
            "no_target_data_mean": headline["a"]["targets"]["mean"],
            "unlabeled_target_mean": headline["b"]["targets"]["mean"],
            "weakest_language": headline["b"]["targets"]["weakest_accuracy"],
            "weakest_language_code": headline["b"]["targets"]["weakest"],
            "held_out_study_defaults_mean": table[0]["held_out"]["mean"],
            "held_out_mean": headline["zero-shot"]["held_out"]["mean"],
            "held_out_no_target_mean": headline["a"]["held_out"]["mean"],
            "held_out_unlabeled_mean": headline["b"]["held_out"]["mean"],
            "chosen": {f"{rule}: {protocol}": {"group": name, "correction": correction}
                       for (rule, protocol), (name, correction) in chosen.items()},
            "english_dev_rule": {protocol: {"mean": row_of(RULE_ENGLISH, protocol)["targets"]["mean"],
                                            "held_out_mean": row_of(RULE_ENGLISH, protocol)["held_out"]["mean"]}
                                 for protocol in CORRECTIONS},
            "unlabeled_target_setting": headline["b"]["setting"],
            "self_training": {"development": self_training, "chosen": chosen_scope,
                              "mean_gain": {k: float(np.mean(list(v.values()))) for k, v in gains.items()},
                              "per_language_gain": gains},
            "seconds": round(total), "training": training, "costs": costs,
            "candidates": candidate_summary(pool, english_scores, development_scores),
        }))


if __name__ == "__main__":
    main()

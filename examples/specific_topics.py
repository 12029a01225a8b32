"""Make a second own task from SIB-200: four topics with their own label names, JSON Lines per language.

    python examples/specific_topics.py ../shared/sib200 specific-topics/

Writes one ``<lang>.jsonl`` per language (fields ``text``, ``topic``, ``split``): English to train
on and seven target languages of several scripts. Only four of SIB-200's topics are kept, renamed
to labels a practitioner might use (``technology``, ``medicine``, ``sport``, ``government``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

TOPICS = {"science/technology": "technology", "health": "medicine", "sports": "sport", "politics": "government"}
LANGUAGES = ("eng_Latn", "fra_Latn", "deu_Latn", "spa_Latn", "zho_Hans", "arb_Arab", "hin_Deva", "swh_Latn")


def make(sib200: Path, out: Path, languages=LANGUAGES) -> dict[str, int]:
    """Write the task's files under ``out``; returns the rows per language."""
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for lang in languages:
        frames = []
        for split in ("train", "dev", "test"):
            frame = pd.read_csv(sib200 / lang / f"{split}.tsv", sep="\t", keep_default_na=False, dtype=str)
            frame = frame[frame["category"].isin(TOPICS)]
            frames.append(pd.DataFrame({"text": frame["text"], "topic": frame["category"].map(TOPICS), "split": split}))
        table = pd.concat(frames, ignore_index=True)
        table.to_json(out / f"{lang}.jsonl", orient="records", lines=True, force_ascii=False)
        rows[lang] = len(table)
    return rows


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python examples/specific_topics.py SIB200_DIR OUT_DIR")
    written = make(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"wrote {len(written)} files to {sys.argv[2]}: {sum(written.values())} rows, topics {sorted(TOPICS.values())}")

"""Make a small task of your own from SIB-200: three coarse topics, own column names, one CSV.

    python examples/coarse_topics.py ../shared/sib200 coarse-topics.csv

The CSV has the columns ``sentence``, ``topic``, ``lang`` and ``split``: English (``eng_Latn``)
to train on, and French and Swahili as target languages. It stands in for the data a
practitioner brings (support tickets, reviews...) in the README's "Your own task" section.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

COARSE = {
    "science/technology": "science", "health": "science",
    "politics": "world", "geography": "world",
    "entertainment": "leisure", "travel": "leisure", "sports": "leisure",
}
LANGUAGES = ("eng_Latn", "fra_Latn", "swh_Latn")


def make(sib200: Path, languages=LANGUAGES) -> pd.DataFrame:
    frames = []
    for lang in languages:
        for split in ("train", "dev", "test"):
            frame = pd.read_csv(sib200 / lang / f"{split}.tsv", sep="\t", keep_default_na=False, dtype=str)
            frames.append(pd.DataFrame({"sentence": frame["text"], "topic": frame["category"].map(COARSE),
                                        "lang": lang, "split": split}))
    return pd.concat(frames, ignore_index=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python examples/coarse_topics.py SIB200_DIR OUT.csv")
    table = make(Path(sys.argv[1]))
    table.to_csv(sys.argv[2], index=False)
    print(f"wrote {sys.argv[2]}: {len(table)} rows, topics {sorted(table['topic'].unique())}, languages {list(LANGUAGES)}")

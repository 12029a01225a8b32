"""Make a small corpus to label: SIB-200 sentences of many languages, unlabelled, in Parquet shards.

    python examples/corpus_shards.py ../shared/sib200 corpus/ [--per-language 5] [--shards 4]

Each shard has the columns ``id``, ``text`` and ``lang``; the rows of all 205 languages (their test
sentences, labels dropped) are shuffled so that every shard holds many languages. It stands in for a crawl
or an archive a data team labels in the README's "Labelling a corpus" section.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def make(sib200: Path, out: Path, per_language: int = 5, shards: int = 4) -> int:
    frames = [pd.read_csv(folder / "test.tsv", sep="\t", keep_default_na=False, dtype=str)[["text"]].head(per_language)
              .assign(lang=folder.name) for folder in sorted(sib200.iterdir()) if (folder / "test.tsv").is_file()]
    rows = pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=0).reset_index(drop=True)
    rows.insert(0, "id", [f"doc-{i:06d}" for i in range(len(rows))])
    out.mkdir(parents=True, exist_ok=True)
    size = -(-len(rows) // shards)
    for k in range(shards):
        rows[k * size:(k + 1) * size].to_parquet(out / f"part-{k:04d}.parquet", index=False)
    return len(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sib200", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-language", type=int, default=5)
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()
    rows = make(args.sib200, args.out, args.per_language, args.shards)
    print(f"wrote {rows} rows in {args.shards} Parquet shards to {args.out} (columns id, text, lang)")

"""Answers, files and run ids of two versions of xlspt, compared: what a refactor must not change.

Three steps. ``models`` saves the tiny random-weight models of every family (the test suite's, from
``tests/conftest.py``). ``run`` runs the same commands with whichever xlspt is first on ``PYTHONPATH``:
for each model a single prompt, an ensemble and a probe (``xlspt run``), ``predict --format json`` with
every calibration, ``evaluate`` (results.csv, per_class.csv, summary.txt, members and several prompts
together), a server's answers (``TaskSet.score``), a two-run sweep, ``train`` and ``label``; each model's
``stderr.txt`` keeps the lines every command said (durations and rates masked, the output folder named ``<out>``).
``compare`` reads two such folders: numbers within a tolerance, text exactly, records apart from ``timings``,
``finished`` and ``versions``.

    python benchmarks/scoring_identity.py models WORK/models
    PYTHONPATH=OLD/src python benchmarks/scoring_identity.py run WORK/models WORK/old --data DIR
    python benchmarks/scoring_identity.py run WORK/models WORK/new --data DIR
    python benchmarks/scoring_identity.py compare WORK/old WORK/new [--allow README.md ...]

``--embedded`` adds the embedded model in bfloat16; its differences are counted (labels changed, the
largest probability difference) rather than refused, since bfloat16 results move with batch shapes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import re
import sys
from pathlib import Path

FAMILIES = ("gemma3", "xglm", "bloom", "llama")
TEXTS = ["The team won the final match in the last minute.", "Parliament voted on the new law on Tuesday.",
         "A new vaccine was tested on thousands of volunteers.", "The film opened in cinemas across the country.",
         "Le gouvernement a annoncé de nouvelles mesures.", "Die Mannschaft gewann das Spiel.",
         "El volcán entró en erupción la semana pasada.", "The team won the final match in the last minute."]
LANGS = "fra_Latn,deu_Latn,swh_Latn"
#: Keys of a run record that say when and with what it ran, not what it found.
VOLATILE = {"timings", "finished", "versions", "fit_seconds", "seconds", "started", "wall_seconds", "created",
            "train_seconds",
            "modified_ns", "fingerprint"}  # a label job's input file's time, and the job's fingerprint made with it


def make_models(out: Path) -> None:
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("conftest", Path(__file__).resolve().parents[1] / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    vocabulary = conftest.tiny_vocabulary()
    for i, family in enumerate(conftest.TINY_FAMILIES):
        torch.manual_seed(1234 + i)  # as the test fixture builds them
        tokenizer = conftest.build_tokenizer(vocabulary, add_bos=family in ("gemma3", "xglm", "llama"))
        model = conftest.build_tiny_model(family, len(tokenizer))
        model.save_pretrained(out / family)
        tokenizer.save_pretrained(out / family)
    print(f"tiny models in {out}")


#: What a command's lines may say that differs from one run to the next: durations, rates.
_VOLATILE_TEXT = re.compile(r"\d+(\.\d+)?(?= ?(s|ms|min|rows/s)\b)")
_said: list[str] = []


def _cli(args: list[str]) -> str:
    from xlspt.cli import main

    buffer, said = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(said):
        code = main(args)
    _said.append(f"$ xlspt {' '.join(args)}\n{said.getvalue()}")
    if code:
        raise SystemExit(f"xlspt {' '.join(args)} exited {code}:\n{said.getvalue()}")
    return buffer.getvalue()


def _write_said(folder: Path, out: Path) -> None:
    """The lines the model's commands said, comparable across runs and output folders."""
    text = _VOLATILE_TEXT.sub("#", "".join(_said)).replace(str(out), "<out>")
    (folder / "stderr.txt").write_text(text, encoding="utf-8")
    _said.clear()


def run(models: Path, out: Path, data: str, embedded: bool) -> None:
    import xlspt.cli

    study = ["--preset", "study"] if "study" in _run_presets() else []
    texts_file = out / "texts.txt"
    out.mkdir(parents=True, exist_ok=True)
    texts_file.write_text("\n".join(TEXTS * 4) + "\n", encoding="utf-8")  # batch calibration needs 32
    targets = [(f, str(models / f), "float32", 2) for f in FAMILIES]
    if embedded:
        targets.append(("embedded", "gemma-3-270m", "bfloat16", 1))
    for name, model, dtype, epochs in targets:
        folder = out / name
        common = ["--model", model, "--dtype", dtype, "--data", data, "--shots", "2", "--epochs", str(epochs), "--quiet"]
        _cli(["run", *study, *common, "--prompt-length", "3", "--langs", LANGS, "--out", str(folder / "prompt")])
        _cli(["run", *study, *common, "--prompt-length", "2", "--reparam-hidden", "16", "--ensemble", "3",
              "--calibration", "content-free", "--langs", LANGS, "--out", str(folder / "ensemble")])
        _cli(["run", *study, *common, "--method", "probe", "--langs", LANGS, "--out", str(folder / "probe")])
        answers = {}
        for kind in ("prompt", "ensemble", "probe"):
            answers[kind] = _cli(["predict", "--prompt", str(folder / kind), "--file", str(texts_file), "--format", "json",
                                  "--top-k", "2", "--min-confidence", "0.5", "--quiet"])
        for calibration in ("zero-shot", "content-free", "batch", "unlabeled"):
            extra = ["--unlabeled", str(texts_file)] if calibration == "unlabeled" else []
            extra += ["--lang", "fra_Latn"] if calibration == "content-free" else []
            answers[f"ensemble {calibration}"] = _cli(["predict", "--prompt", str(folder / "ensemble"), "--file",
                                                       str(texts_file), "--format", "json", "--calibration", calibration,
                                                       "--quiet", *extra])
        (folder / "predict.json").write_text(json.dumps({k: [json.loads(l) for l in v.splitlines() if l.strip()]
                                                         for k, v in answers.items()}, indent=1), encoding="utf-8")
        evaluate = ["--data", data, "--langs", LANGS, "--quiet"]
        _cli(["evaluate", "--prompt", str(folder / "ensemble"), "--members", *evaluate, "--out", str(folder / "eval-members")])
        _cli(["evaluate", "--prompt", str(folder / "ensemble"), "--calibration", "batch", *evaluate,
              "--out", str(folder / "eval-batch")])
        _cli(["evaluate", "--prompt", str(folder / "prompt"), "--prompt", str(folder / "ensemble"), *evaluate,
              "--out", str(folder / "eval-together")])
        _served(folder)
        spec = folder / "sweep.yaml"
        spec.write_text(f"model: {model}\ndata: {data}\ndtype: {dtype}\nshots: 2\nepochs: {epochs}\nprompt_length: [1, 3]\n"
                        f"langs: [{LANGS}]\n", encoding="utf-8")
        _cli(["sweep", str(spec), "--store", str(folder / "store"), "--quiet"])
        _cli(["train", *study, *common, "--prompt-length", "2", "--ensemble", "2", "--out", str(folder / "trained")])
        _cli(["label", "--task", f"prompt={folder / 'prompt'}", "--task", f"ensemble={folder / 'ensemble'}",
              "--input", str(texts_file), "--output", str(folder / "labelled"), "--output-format", "jsonl", "--lang", "fra_Latn", "--quiet"])
        _write_said(folder, out)
    print(f"answers of xlspt at {Path(xlspt.cli.__file__).parents[1]} in {out}")


def _run_presets() -> tuple[str, ...]:
    from xlspt.study.spec import RUN_PRESETS

    return tuple(RUN_PRESETS)


def _served(folder: Path) -> None:
    from xlspt.serve.tasks import Job, TaskSet

    tasks = TaskSet.load({"prompt": str(folder / "prompt"), "ensemble": str(folder / "ensemble")})
    jobs = [Job(TEXTS[:3], ["prompt", "ensemble"]), Job(TEXTS[2:], ["ensemble"], lang="fra_Latn", top_k=2),
            Job(TEXTS, ["prompt"], min_confidence=0.6)]
    answers = []
    for answer in tasks.score(jobs):
        answers.append({task: frame.to_dict(orient="records") for task, frame in answer.items()}
                       if isinstance(answer, dict) else str(answer))
    (folder / "served.json").write_text(json.dumps(answers, indent=1), encoding="utf-8")


class Differences:
    def __init__(self, tolerance: float):
        self.tolerance = tolerance
        self.largest = 0.0
        self.numbers = 0
        self.labels_changed = 0
        self.labels = 0
        self.other: list[str] = []

    def value(self, where: str, a, b) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            if set(a) - VOLATILE != set(b) - VOLATILE:
                self.other.append(f"{where}: keys {sorted(set(a) ^ set(b))}")
            for key in sorted(set(a) & set(b) - VOLATILE):
                self.value(f"{where}.{key}", a[key], b[key])
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                self.other.append(f"{where}: {len(a)} vs {len(b)} items")
            for i, (x, y) in enumerate(zip(a, b)):
                self.value(f"{where}[{i}]", x, y)
        elif isinstance(a, float) or isinstance(b, float):
            self.numbers += 1
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not (math.isnan(a) and math.isnan(b)):
                self.largest = max(self.largest, abs(a - b))
                if abs(a - b) > self.tolerance:
                    self.other.append(f"{where}: {a} vs {b}")
        elif where.endswith(".label"):
            self.labels += 1
            self.labels_changed += a != b
        elif a != b:
            self.other.append(f"{where}: {a!r} vs {b!r}")

    def file(self, where: str, a: Path, b: Path, roots: tuple[Path, Path]) -> None:
        # the two versions wrote under different folders: paths are compared below them
        text_a, text_b = (p.read_text(encoding="utf-8").replace(str(root), "<out>") if p.suffix != ".safetensors" else ""
                          for p, root in ((a, roots[0]), (b, roots[1])))
        if a.suffix == ".json":
            self.value(where, json.loads(text_a), json.loads(text_b))
        elif a.suffix == ".jsonl":
            self.value(where, [json.loads(l) for l in text_a.splitlines() if l.strip()],
                       [json.loads(l) for l in text_b.splitlines() if l.strip()])
        elif a.suffix == ".csv":
            import pandas as pd

            self.value(where, pd.read_csv(io.StringIO(text_a)).to_dict(orient="records"),
                       pd.read_csv(io.StringIO(text_b)).to_dict(orient="records"))
        elif a.suffix in (".txt", ".md", ".yaml"):
            if text_a != text_b:
                first = next((x, y) for x, y in zip(text_a.splitlines() + [""], text_b.splitlines() + [""]) if x != y)
                self.other.append(f"{where}: text differs, first at {first[0]!r} vs {first[1]!r}")
        elif a.suffix == ".safetensors":
            from safetensors.torch import load_file

            x, y = load_file(a), load_file(b)
            if set(x) != set(y):
                self.other.append(f"{where}: tensors {sorted(set(x) ^ set(y))}")
            for key in sorted(set(x) & set(y)):
                self.numbers += x[key].numel()
                diff = (x[key].float() - y[key].float()).abs().max().item() if x[key].numel() else 0.0
                self.largest = max(self.largest, diff)
                if diff > self.tolerance:
                    self.other.append(f"{where}:{key}: differs by {diff:.3g}")


def compare(a: Path, b: Path, allowed: tuple[str, ...] = ()) -> int:
    """Exit status 1 where a tiny model's answers, files or records differ beyond 1e-6, apart from differences at a
    place whose name contains one of ``allowed`` (changes meant by the newer version), which are counted."""
    failed = False
    for model in sorted(p.name for p in a.iterdir() if p.is_dir()):
        exact = model != "embedded"
        diff = Differences(1e-6 if exact else math.inf)
        files = sorted(p.relative_to(a / model) for p in (a / model).rglob("*") if p.is_file() and ".lock" not in p.name
                       and p.suffix != ".png" and "seconds" not in p.name)
        theirs = {p.relative_to(b / model) for p in (b / model).rglob("*") if p.is_file()}
        missing = [str(p) for p in files if p not in theirs]
        for path in files:
            if path in theirs:
                diff.file(f"{model}/{path}", a / model / path, b / model / path, (a, b))
        line = (f"{model}: {len(files)} files, {diff.numbers} numbers, largest difference {diff.largest:.3g}; "
                f"{diff.labels_changed} of {diff.labels} labels changed")
        meant = [item for item in diff.other if any(text in item.split(": ")[0] for text in allowed)]
        diff.other = [item for item in diff.other if item not in meant]
        if meant:
            line += f"; {len(meant)} differences where allowed"
        print(line + (f"; missing in {b}: {missing}" if missing else ""))
        if exact and (diff.other or missing or diff.labels_changed):
            failed = True
            for item in diff.other[:20]:
                print(f"  {item}")
        elif diff.other:
            print(f"  {len(diff.other)} other differences, e.g. {diff.other[:3]}")
    print("identical within the tolerance" if not failed else "DIFFERENT")
    return int(failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("models")
    p.add_argument("out", type=Path)
    p = sub.add_parser("run")
    p.add_argument("models", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--data", required=True)
    p.add_argument("--embedded", action="store_true")
    p = sub.add_parser("compare")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--allow", action="append", default=[], metavar="TEXT",
                   help="a difference at a place whose name contains TEXT is counted, not refused (repeatable)")
    args = parser.parse_args(argv)
    if args.step == "models":
        make_models(args.out)
        return 0
    if args.step == "run":
        run(args.models, args.out, args.data, args.embedded)
        return 0
    return compare(args.a, args.b, tuple(args.allow))


if __name__ == "__main__":
    sys.exit(main())

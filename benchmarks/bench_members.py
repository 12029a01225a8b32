"""An ensemble's members trained one after another against side by side, on the embedded model.

    python benchmarks/bench_members.py --data ../shared/sib200 [--members 4] [--shots 8] [--epochs 5] [--json]

Each member draws its own English sample (``--shots`` per class, seed = member) and trains a
length-4 prompt with the study's settings but ``--epochs``. "one after another" trains each
member alone (what the quality presets did before members trained side by side); "side by
side" trains them in one call of ``train_prompts``, every step reading all samples' batches in
one pass. Both run in this process, on the same model, interleaved over ``--rounds`` rounds
(fastest kept); the table gives the seconds, the speed-up and how far the prompts differ.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import xlspt
from xlspt.data import sample_few_shot
from xlspt.train import TrainConfig, train_prompt, train_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    loaded = xlspt.load_model(xlspt.EMBEDDED_DEFAULT, dtype=args.dtype)
    data = xlspt.TaskData.resolve(args.data)
    verbalizer = xlspt.build_verbalizer(loaded)
    seeds = list(range(args.members))
    samples = [sample_few_shot(data, "eng_Latn", args.shots, seed) for seed in seeds]
    prompt = xlspt.PromptConfig(length=4)
    configs = [TrainConfig(epochs=args.epochs, seed=seed) for seed in seeds]
    times: dict[str, float] = {"one after another": float("inf"), "side by side": float("inf")}
    results: dict[str, list] = {}
    for _ in range(args.rounds):
        started = time.perf_counter()
        results["one after another"] = [train_prompt(loaded, verbalizer, s, prompt, c, progress=False)
                                        for s, c in zip(samples, configs)]
        times["one after another"] = min(times["one after another"], time.perf_counter() - started)
        started = time.perf_counter()
        results["side by side"] = train_prompts(loaded, verbalizer, samples, [prompt] * len(seeds), configs,
                                                progress=False)
        times["side by side"] = min(times["side by side"], time.perf_counter() - started)
    alone, together = results["one after another"], results["side by side"]
    difference = max(float((a.prompt.export() - b.prompt.export()).abs().max()) for a, b in zip(alone, together))
    val_difference = max(abs(x["val_loss"] - y["val_loss"]) for a, b in zip(alone, together)
                         for x, y in zip(a.history, b.history))
    same_epochs = all(a.best_epoch == b.best_epoch for a, b in zip(alone, together))
    speedup = times["one after another"] / times["side by side"]
    print(f"{args.members} members, {args.shots} shots, length 4, {args.epochs} epochs, {str(loaded.dtype).removeprefix('torch.')}, "
          f"{torch.get_num_threads()} threads, fastest of {args.rounds} rounds")
    print("| training | seconds |")
    print("|---|---|")
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.1f} |")
    print(f"side by side is {speedup:.2f}x faster; prompts differ by at most {difference:.2e}, validation losses by "
          f"{val_difference:.2e}; best epochs {'equal' if same_epochs else 'differ'}")
    if args.json:
        print(json.dumps({"members": args.members, "shots": args.shots, "epochs": args.epochs, "dtype": str(loaded.dtype),
                          "seconds": times, "speedup": speedup, "max_prompt_difference": difference,
                          "max_val_loss_difference": val_difference, "best_epochs_equal": same_epochs}))


if __name__ == "__main__":
    main()

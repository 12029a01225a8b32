"""The study's findings as tests on a grid of runs, and the matched comparisons behind the figures.

A comparison only ever sets configurations against each other that agree on every config field
except the one studied (and, for model freezing, the fields that follow from it: the engine, the
model's learning rate and whether model weights are saved). Languages are the units of every
test: transfer languages only (not the training language), accuracy averaged over seeds first,
then over a model's matched comparisons, so that each language counts once.

The four findings (design notes, section 2):

1. *Freezing the model helps transfer*: Wilcoxon signed-rank tests over languages of
   accuracy(frozen) - accuracy(not frozen).
2. *Shorter prompts transfer better*: Page's trend test with languages as blocks and prompt lengths
   from longest to shortest (the alternative: accuracy rises as the prompt gets shorter); with two
   lengths only, which Page's test does not take, a Wilcoxon test of shortest - longest.
3. *Reparameterization helps some languages and hurts others*: the shares of languages whose
   accuracy rises and falls with it, each with a 95% Wilson interval.
4. *Distant languages gain most from freezing* (and so reduces the bias toward languages like the
   training language): Spearman's rho over languages between the gain from freezing and the
   language's typological distance from the training language, one-sided; beside it, the slopes of
   accuracy against distance with and without MF, with 95% intervals, and their difference (the slope
   of the gain); flatter with MF means the frozen slope is the smaller in size, which for two falling
   slopes is a positive difference.
"""

from __future__ import annotations

import json
from itertools import product
from typing import Any, Callable, Iterator

import pandas as pd
from scipy.stats import binomtest, linregress, page_trend_test, spearmanr, t, wilcoxon

from .distance import distances_from
from .grid import FOLLOWS_FROM_FREEZE, Grid

ALPHA = 0.05
MIN_SHARE = 0.10  # a "some languages" share: below it, reparameterization moves (nearly) all languages one way
ALL_MODELS = "all models"

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
CONTRADICTED = "contradicted"
NOT_ENOUGH_RUNS = "not enough runs"

FREEZING = "freezing the model helps transfer"
SHORT_PROMPTS = "shorter prompts transfer better"
REPARAMETERIZATION = "reparameterization helps some languages and hurts others"
DISTANCE = "distant languages gain most from freezing"

DISTANCE_STEP = 0.1  # slopes are given in points of accuracy per 0.1 of cosine distance

COLUMNS = [
    "finding", "model", "verdict", "effect", "effect_unit", "n_languages", "n_comparisons", "test",
    "p_value", "p_value_opposite", "helped_share", "helped_ci_low", "helped_ci_high",
    "hurt_share", "hurt_ci_low", "hurt_ci_high", "slope_mf", "slope_mf_ci_low", "slope_mf_ci_high",
    "slope_no_mf", "slope_no_mf_ci_low", "slope_no_mf_ci_high", "detail",
]


# ----------------------------------------------------------------------------- matched configurations


def _key(grid: Grid, config_id: str, columns: list[str]) -> str:
    return json.dumps([grid.configs.at[config_id, c] for c in columns], default=str)


def matched_pairs(
    grid: Grid, field: str, treated: Callable[[Any], bool], ignore: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """``(control, treatment)`` configuration ids that agree on every config field but ``field``
    (and ``ignore``); ``treated(value)`` tells the treatment arm's values of ``field``."""
    columns = [c for c in grid.config_columns if c != field and c not in ignore]
    groups: dict[str, list[str]] = {}
    for config_id in grid.configs.index:
        groups.setdefault(_key(grid, config_id, columns), []).append(config_id)
    pairs = []
    for members in groups.values():
        controls = [c for c in members if not treated(grid.configs.at[c, field])]
        treatments = [c for c in members if treated(grid.configs.at[c, field])]
        pairs += list(product(controls, treatments))
    return pairs


def sweep_lines(grid: Grid, field: str) -> list[dict[Any, str]]:
    """Groups of configurations that agree on everything but ``field``: ``{value of field: config id}``,
    sorted by value, one dict per group (a group may hold a single configuration)."""
    columns = [c for c in grid.config_columns if c != field]
    lines: dict[str, dict[Any, str]] = {}
    for config_id in grid.configs.index:
        lines.setdefault(_key(grid, config_id, columns), {})[grid.configs.at[config_id, field]] = config_id
    return [dict(sorted(line.items())) for line in lines.values()]


def model_of(grid: Grid, config_id: str) -> str:
    return grid.configs.at[config_id, "model_name"]


def _per_model(grid: Grid, items: list, model_of: Callable[[Any], str]) -> Iterator[tuple[str, list]]:
    """(model, its items) for every model of the store, then (all models, every item) with several models."""
    models = list(dict.fromkeys(grid.configs["model_name"]))
    for model in models:
        yield model, [item for item in items if model_of(item) == model]
    if len(models) > 1:
        yield ALL_MODELS, items


def paired_changes(grid: Grid, pairs: list[tuple[str, str]], relative: bool) -> pd.Series:
    """Per transfer language: treatment minus control accuracy (percentage points, or % of the
    control's accuracy when ``relative``), averaged over ``pairs``; a language missing from either arm
    of a pair is left out of that pair."""
    columns = []
    for control, treatment in pairs:
        base, other = grid.accuracy_by_language(control), grid.accuracy_by_language(treatment)
        common = base.index.intersection(other.index)
        base, other = base[common], other[common]
        if relative:
            change = 100 * (other - base) / base.where(base > 0)  # no relative change from zero accuracy
        else:
            change = 100 * (other - base)
        columns.append(change.rename(f"{control}->{treatment}"))
    if not columns:
        return pd.Series(dtype=float)
    return pd.concat(columns, axis=1).mean(axis=1, skipna=True).dropna()


# ----------------------------------------------------------------------------- verdicts


def _row(finding: str, model: str, **values: Any) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(finding=finding, model=model, **values)
    return row


def _verdict(p_value: float, p_opposite: float) -> str:
    if p_value < ALPHA:
        return SUPPORTED
    if p_opposite < ALPHA:
        return CONTRADICTED
    return NOT_SUPPORTED


def _wilcoxon_both_ways(differences: pd.Series) -> tuple[float, float]:
    """One-sided Wilcoxon p-values for "differences > 0" and "< 0"; 1, 1 when every difference is zero."""
    if not (differences != 0).any():
        return 1.0, 1.0
    greater = wilcoxon(differences, alternative="greater").pvalue
    less = wilcoxon(differences, alternative="less").pvalue
    return float(greater), float(less)


def _present_values(grid: Grid, model: str, field: str) -> list:
    rows = grid.configs if model == ALL_MODELS else grid.configs[grid.configs["model_name"] == model]
    return sorted({v for v in rows[field]}, key=str)


# ----------------------------------------------------------------------------- 1. model freezing


def freeze_pairs(grid: Grid) -> list[tuple[str, str]]:
    """(not frozen, frozen) configurations that agree on everything else."""
    if "freeze" not in grid.config_columns:
        return []
    return matched_pairs(grid, "freeze", treated=bool, ignore=FOLLOWS_FROM_FREEZE)


def freezing_finding(grid: Grid) -> list[dict]:
    """Finding 1, per model: frozen minus unfrozen accuracy per language, one-sided Wilcoxon tests."""
    rows = []
    pairs = freeze_pairs(grid)
    for model, model_pairs in _per_model(grid, pairs, lambda pair: model_of(grid, pair[0])):
        if not model_pairs:
            values = _present_values(grid, model, "freeze") if "freeze" in grid.config_columns else []
            detail = (
                f"only runs with freeze={values[0]}" if len(values) == 1 else
                "no frozen and unfrozen configurations that agree on every other setting"
            ) if values else "no freeze field in the records"
            rows.append(_row(FREEZING, model, verdict=NOT_ENOUGH_RUNS, detail=detail))
            continue
        differences = paired_changes(grid, model_pairs, relative=False)
        if len(differences) < 2:
            rows.append(_row(FREEZING, model, verdict=NOT_ENOUGH_RUNS, n_comparisons=len(model_pairs),
                             n_languages=len(differences), detail="fewer than 2 transfer languages in both arms"))
            continue
        p_greater, p_less = _wilcoxon_both_ways(differences)
        rows.append(_row(
            FREEZING, model, verdict=_verdict(p_greater, p_less), effect=float(differences.mean()),
            effect_unit="points (MF - no MF)", n_languages=len(differences), n_comparisons=len(model_pairs),
            test="Wilcoxon signed-rank over languages", p_value=p_greater, p_value_opposite=p_less,
            detail=f"MF better on {int((differences > 0).sum())} of {len(differences)} languages",
        ))
    return rows


# ----------------------------------------------------------------------------- 2. prompt length


def _length_matrix(grid: Grid, lines: list[dict[Any, str]]) -> tuple[pd.DataFrame, int]:
    """Languages x prompt lengths (longest first) of accuracy averaged over lines, and how many lines.

    Every length must average the same lines, or a length could look better only because other
    configurations stand behind it. So: the lines that have every length seen, if any; else all
    lines at the lengths they share, if at least two; else the line with the most lengths alone.
    """
    every_length = set().union(*lines)
    complete = [line for line in lines if set(line) == every_length]
    shared = set.intersection(*(set(line) for line in lines))
    if complete:
        lines, lengths = complete, every_length
    elif len(shared) >= 2:
        lengths = shared
    else:
        lines = [max(lines, key=len)]
        lengths = set(lines[0])
    lengths = sorted(lengths, reverse=True)
    per_line = [
        pd.concat({length: grid.accuracy_by_language(line[length]) for length in lengths}, axis=1).dropna()
        for line in lines
    ]
    # A language counts only where every used line evaluated it at every length.
    languages = set.intersection(*(set(frame.index) for frame in per_line))
    stacked = pd.concat([frame.loc[sorted(languages)] for frame in per_line])
    return stacked.groupby(level=0).mean()[lengths], len(lines)


def prompt_length_finding(grid: Grid) -> list[dict]:
    """Finding 2, per model: does accuracy rise as the prompt gets shorter?"""
    rows = []
    lines = sweep_lines(grid, "prompt_length") if "prompt_length" in grid.config_columns else []
    lines = [line for line in lines if len(line) >= 2]
    for model, model_lines in _per_model(grid, lines, lambda line: model_of(grid, next(iter(line.values())))):
        if not model_lines:
            values = _present_values(grid, model, "prompt_length") if "prompt_length" in grid.config_columns else []
            detail = (f"only prompt length {values[0]}" if len(values) == 1 else
                      "no two prompt lengths with every other setting equal")
            rows.append(_row(SHORT_PROMPTS, model, verdict=NOT_ENOUGH_RUNS, detail=detail))
            continue
        matrix, n_lines = _length_matrix(grid, model_lines)
        lengths = list(matrix.columns)
        if len(matrix) < 2:
            rows.append(_row(SHORT_PROMPTS, model, verdict=NOT_ENOUGH_RUNS, n_comparisons=n_lines,
                             n_languages=len(matrix), detail="fewer than 2 transfer languages at every length"))
            continue
        shortest_minus_longest = 100 * (matrix[lengths[-1]] - matrix[lengths[0]])
        if len(lengths) >= 3:
            # Columns longest -> shortest: Page's alternative is accuracy rising along the columns.
            p_shorter = float(page_trend_test(matrix.to_numpy()).pvalue)
            p_longer = float(page_trend_test(matrix.to_numpy()[:, ::-1]).pvalue)
            test = "Page's trend test (languages as blocks)"
        else:
            p_shorter, p_longer = _wilcoxon_both_ways(shortest_minus_longest)
            test = "Wilcoxon signed-rank over languages"
        rows.append(_row(
            SHORT_PROMPTS, model, verdict=_verdict(p_shorter, p_longer),
            effect=float(shortest_minus_longest.mean()),
            effect_unit=f"points (length {lengths[-1]} - length {lengths[0]})",
            n_languages=len(matrix), n_comparisons=n_lines, test=test,
            p_value=p_shorter, p_value_opposite=p_longer,
            detail=f"lengths {', '.join(str(n) for n in sorted(lengths))}, averaged over {n_lines} matched series",
        ))
    return rows


# ----------------------------------------------------------------------------- 3. reparameterization


def reparam_pairs(grid: Grid) -> list[tuple[str, str]]:
    """(no reparameterization, reparameterized) configurations that agree on everything else."""
    if "reparam_hidden" not in grid.config_columns:
        return []
    return matched_pairs(grid, "reparam_hidden", treated=lambda hidden: bool(hidden) and hidden > 0)


def _wilson(successes: int, trials: int) -> tuple[float, float]:
    interval = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def reparameterization_finding(grid: Grid) -> list[dict]:
    """Finding 3, per model: shares of languages helped and hurt, with Wilson intervals."""
    rows = []
    pairs = reparam_pairs(grid)
    for model, model_pairs in _per_model(grid, pairs, lambda pair: model_of(grid, pair[0])):
        if not model_pairs:
            values = _present_values(grid, model, "reparam_hidden") if "reparam_hidden" in grid.config_columns else []
            detail = (f"only runs with reparam_hidden={values[0]}" if len(values) == 1 else
                      "no runs with and without reparameterization that agree on every other setting")
            rows.append(_row(REPARAMETERIZATION, model, verdict=NOT_ENOUGH_RUNS, detail=detail))
            continue
        changes = paired_changes(grid, model_pairs, relative=True)
        n = len(changes)
        if n == 0:
            rows.append(_row(REPARAMETERIZATION, model, verdict=NOT_ENOUGH_RUNS, n_comparisons=len(model_pairs),
                             n_languages=0, detail="no transfer language in both arms"))
            continue
        helped, hurt = int((changes > 0).sum()), int((changes < 0).sum())
        helped_low, helped_high = _wilson(helped, n)
        hurt_low, hurt_high = _wilson(hurt, n)
        if helped_low >= MIN_SHARE and hurt_low >= MIN_SHARE:
            verdict = SUPPORTED
        elif helped_high < MIN_SHARE or hurt_high < MIN_SHARE:
            verdict = CONTRADICTED  # (nearly) every language moves the same way
        else:
            verdict = NOT_SUPPORTED
        rows.append(_row(
            REPARAMETERIZATION, model, verdict=verdict, effect=float(changes.mean()),
            effect_unit="% mean relative change", n_languages=n, n_comparisons=len(model_pairs),
            test="shares of languages helped / hurt, 95% Wilson intervals",
            helped_share=helped / n, helped_ci_low=helped_low, helped_ci_high=helped_high,
            hurt_share=hurt / n, hurt_ci_low=hurt_low, hurt_ci_high=hurt_high,
            detail=(f"helped {helped}/{n} ({100 * helped_low:.0f}-{100 * helped_high:.0f}%), "
                    f"hurt {hurt}/{n} ({100 * hurt_low:.0f}-{100 * hurt_high:.0f}%)"),
        ))
    return rows


# ----------------------------------------------------------------------------- 4. freezing and distance


def freezing_distance_table(grid: Grid) -> pd.DataFrame:
    """Per model and transfer language: its typological ``distance`` from the training language, its
    seed-averaged accuracy (%) with MF (``frozen``) and without (``unfrozen``), each averaged over the
    model's matched freezing pairs, and the ``gain`` (frozen - unfrozen, the numbers finding 1 tests).
    Languages unknown to URIEL are left out."""
    columns = ["model", "language", "distance", "frozen", "unfrozen", "gain"]
    frames = []
    for unfrozen, frozen in freeze_pairs(grid):
        base, other = grid.accuracy_by_language(unfrozen), grid.accuracy_by_language(frozen)
        distances = distances_from(grid.configs.at[frozen, "train_lang"], list(base.index.intersection(other.index)))
        languages = list(distances)
        frames.append(pd.DataFrame({
            "model": model_of(grid, frozen), "language": languages, "distance": [distances[lang] for lang in languages],
            "frozen": 100 * other[languages].to_numpy(dtype=float), "unfrozen": 100 * base[languages].to_numpy(dtype=float),
        }))
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames).groupby(["model", "language"], sort=False).mean().reset_index()
    table["gain"] = table["frozen"] - table["unfrozen"]
    return table[columns]


def distance_slope(distance: pd.Series, accuracy: pd.Series) -> tuple[float, float, float]:
    """Least-squares slope of accuracy (points) per :data:`DISTANCE_STEP` of distance, with its 95% interval."""
    fit = linregress(distance.to_numpy(dtype=float) / DISTANCE_STEP, accuracy.to_numpy(dtype=float))
    half = float(t.ppf(0.975, len(distance) - 2)) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half)


def _distance_row(model: str, table: pd.DataFrame, n_pairs: int) -> dict:
    rho = spearmanr(table["distance"], table["gain"], alternative="greater")
    p_opposite = float(spearmanr(table["distance"], table["gain"], alternative="less").pvalue)
    slopes = {arm: distance_slope(table["distance"], table[arm]) for arm in ("frozen", "unfrozen", "gain")}
    difference = slopes["gain"]  # slope(frozen) - slope(unfrozen): OLS is linear in the accuracies
    flatter = abs(slopes["frozen"][0]) < abs(slopes["unfrozen"][0])

    def shown(slope: tuple[float, float, float]) -> str:
        return f"{slope[0]:+.1f} [{slope[1]:+.1f}, {slope[2]:+.1f}]"

    return _row(
        DISTANCE, model, verdict=_verdict(float(rho.pvalue), p_opposite), effect=float(rho.statistic),
        effect_unit="Spearman's rho (gain from MF vs distance)", n_languages=len(table), n_comparisons=n_pairs,
        test="Spearman's rank correlation over languages", p_value=float(rho.pvalue), p_value_opposite=p_opposite,
        slope_mf=slopes["frozen"][0], slope_mf_ci_low=slopes["frozen"][1], slope_mf_ci_high=slopes["frozen"][2],
        slope_no_mf=slopes["unfrozen"][0], slope_no_mf_ci_low=slopes["unfrozen"][1], slope_no_mf_ci_high=slopes["unfrozen"][2],
        detail=(f"accuracy per {DISTANCE_STEP} of distance: MF {shown(slopes['frozen'])}, no MF {shown(slopes['unfrozen'])} "
                f"points (95% intervals); {'flatter' if flatter else 'steeper'} with MF, "
                f"difference {shown(difference)}"),
    )


def freezing_distance_finding(grid: Grid) -> list[dict]:
    """Finding 4, per model: does the gain from freezing rise with the distance from the training language?"""
    rows = []
    pairs = freeze_pairs(grid)
    table = freezing_distance_table(grid)
    for model, model_pairs in _per_model(grid, pairs, lambda pair: model_of(grid, pair[0])):
        languages = table if model == ALL_MODELS else table[table["model"] == model]
        if model == ALL_MODELS:  # each language once: its numbers averaged over the models
            languages = languages.drop(columns="model").groupby("language", sort=False).mean().reset_index()
        if not model_pairs:
            rows.append(_row(DISTANCE, model, verdict=NOT_ENOUGH_RUNS,
                             detail="no frozen and unfrozen configurations that agree on every other setting"))
        elif len(languages) < 3:
            rows.append(_row(DISTANCE, model, verdict=NOT_ENOUGH_RUNS, n_comparisons=len(model_pairs),
                             n_languages=len(languages), detail="fewer than 3 transfer languages with a known distance in both arms"))
        else:
            rows.append(_distance_row(model, languages, len(model_pairs)))
    return rows


def findings_table(grid: Grid) -> pd.DataFrame:
    """One row per finding and model (and pooled over models), columns :data:`COLUMNS`."""
    rows = (freezing_finding(grid) + prompt_length_finding(grid) + reparameterization_finding(grid)
            + freezing_distance_finding(grid))
    return pd.DataFrame(rows, columns=COLUMNS)

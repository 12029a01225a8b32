"""``languages`` and ``models``: what xlspt knows, as tables."""

from __future__ import annotations

import logging

from ..data import DataConfig, TaskData
from .flags import DATA, add_config_flags, data_config

logger = logging.getLogger(__name__)


def add_languages(sub) -> None:
    p = sub.add_parser("languages", help="list the languages of the data and the study's 52")
    add_config_flags(p, {k: None for k in DATA if k != "langs"})
    p.add_argument("--study", action="store_true", help="only the study's 52 target languages (no data needed)")


def add_models(sub) -> None:
    sub.add_parser("models", help="list the embedded model, the study's models and the supported architectures")


def cmd_languages(args) -> int:
    table, closing = languages_table(None if args.study else data_config(args))
    print(table)
    logger.info(closing)
    return 0


def cmd_models(args) -> int:
    print(models_table())
    return 0


def languages_table(data: DataConfig | None = None) -> tuple[str, str]:
    """The languages of ``data`` (``None``: the study's 52) with names and pretraining shares, and a closing line."""
    from ..data.languages import STUDY_SET, language_info, language_sets

    sets = language_sets()
    member = {code: name for name, codes in sets.items() for code in codes}
    task = TaskData.resolve(data) if data is not None else None
    codes = list(sets[STUDY_SET]) if task is None else task.languages()
    lines = [f"{'code':<10} {'name':<22} {'set':>8} {'XGLM %':>7} {'BLOOM %':>7}"]
    for code in codes:
        info = language_info(code)
        xglm = f"{100 * info.xglm_share:.2f}" if info.xglm_share is not None else "-"
        bloom = f"{100 * info.bloom_share:.2f}" if info.bloom_share is not None else "-"
        lines.append(f"{code:<10} {(info.name or '')[:22]:<22} {member.get(code, ''):>8} {xglm:>7} {bloom:>7}")
    where = f" in {task.description}" if task is not None else ""
    return "\n".join(lines), (f"{len(codes)} languages{where}; 'set' names the --langs set a language is in: 52 (the "
                               "study's, target languages), dev (for choosing settings on their dev splits), held-out "
                               "(never chosen on); shares are of pretraining data")


def models_table() -> str:
    """The embedded model, the study's models and the supported architectures with their default label words."""
    import json

    from ..models import ADAPTERS, EMBEDDED_DEFAULT, EMBEDDED_MODELS, STUDY_MODELS

    lines = ["Embedded (no download):"]
    lines += [f"  {name:<24} {text}{'  [default]' if name == EMBEDDED_DEFAULT else ''}" for name, text in EMBEDDED_MODELS.items()]
    lines.append("The study's models (Hugging Face Hub):")
    lines += [f"  {name:<24} {text}" for name, text in STUDY_MODELS.items()]
    lines.append("Any causal LM of these architectures (Hub id, local directory or .gguf file), with default label words:")
    for adapter in ADAPTERS:
        words = ", ".join(json.dumps(w) for w in adapter.label_words.values())
        lines.append(f"  {adapter.family:<8} model_type {', '.join(adapter.model_types):<18} {words}")
    return "\n".join(lines)

"""Low-rank adapters through PEFT on tiny models of every family: attached only inside the block, and the shared
base model exactly as it was afterwards."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from xlspt.errors import ConfigError
from xlspt.lora import LoraConfig, attached_lora, lora_weights

pytest.importorskip("peft")


def logits(loaded, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return loaded.model(input_ids=ids).logits


def test_adapters_change_the_model_only_inside_the_block(tiny):
    ids = torch.tensor([[2, 10, 11, 12, 13]])
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    grads = {k: p.requires_grad for k, p in tiny.model.named_parameters()}
    plain = logits(tiny, ids)
    config = LoraConfig(rank=2, alpha=4)
    with attached_lora(tiny, config, seed=0) as params:
        assert params and all(p.requires_grad for p in params.values())
        assert {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in params} == set(tiny.adapter.lora_targets)
        torch.testing.assert_close(logits(tiny, ids), plain, rtol=0, atol=0)  # B starts at zero
        with torch.no_grad():
            for p in params.values():
                p.add_(torch.randn_like(p) * 0.5)
        changed = logits(tiny, ids)
        saved = lora_weights(tiny)
    assert not torch.allclose(changed, plain)
    assert tiny.model.state_dict().keys() == before.keys()
    assert all(torch.equal(tiny.model.state_dict()[k], v) for k, v in before.items())
    assert {k: p.requires_grad for k, p in tiny.model.named_parameters()} == grads
    torch.testing.assert_close(logits(tiny, ids), plain, rtol=0, atol=0)
    with attached_lora(tiny, config, saved):  # saved weights give the same model back
        torch.testing.assert_close(logits(tiny, ids), changed, rtol=0, atol=0)
    torch.testing.assert_close(logits(tiny, ids), plain, rtol=0, atol=0)


def test_an_error_inside_the_block_still_removes_the_adapters(tiny_models):
    loaded = tiny_models["llama"]
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"):
        with attached_lora(loaded, LoraConfig(), seed=0):
            raise RuntimeError("boom")
    assert loaded.model.state_dict().keys() == before.keys()


def test_settings_are_checked_and_name_their_field(tiny_models):
    with pytest.raises(ConfigError, match="rank"):
        LoraConfig(rank=0)
    with pytest.raises(ConfigError, match="dropout"):
        LoraConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="target_modules.*no linear layer"):
        with attached_lora(tiny_models["bloom"], LoraConfig(target_modules=("q_proj",))):
            pass
    assert LoraConfig.from_dict(LoraConfig(rank=4, target_modules=("q_proj",)).to_dict()) == LoraConfig(rank=4, target_modules=("q_proj",))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_adapters_train_with_the_prompt_and_leave_the_base_model_as_it_was(tiny_model_dirs, data, dtype):
    import xlspt
    from xlspt.classifiers.prompt import build_verbalizer
    from xlspt.train import train_prompts

    loaded = xlspt.load_model(str(tiny_model_dirs["gemma3"]), dtype=dtype)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    verbalizer = build_verbalizer(loaded)
    examples = xlspt.sample_few_shot(data, "eng_Latn", 2, 0)
    config = xlspt.TrainConfig(epochs=4, batch_size=4, lr=5e-2, model_lr=5e-2)
    with attached_lora(loaded, LoraConfig(rank=2), seed=0) as adapters:
        start = {name: p.detach().clone() for name, p in adapters.items()}
        [result] = train_prompts(loaded, verbalizer, examples, [xlspt.PromptConfig(length=2)], [config],
                                 adapters=list(adapters.values()), progress=False)
        trained = lora_weights(loaded)
        assert not any(p.grad is not None for p in adapters.values())
    assert any(not torch.equal(trained[k.replace(".default", "")], start[k]) for k in start)
    assert result.best_epoch >= 1 and len(result.history) == 4
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in before.items())
    assert not any(p.requires_grad for p in loaded.model.parameters())
    with pytest.raises(ValueError, match="one prompt on a frozen model"):
        train_prompts(loaded, verbalizer, examples, [None], [dataclasses.replace(config, freeze_model=False)],
                      adapters=[], progress=False)

"""Precision choice: bf16 autocast where asked for and supported, fp32 as the CPU reference."""

from __future__ import annotations

import pytest
import torch

from glode.device import autocast, cpu_supports_bf16, use_bf16

CPU = torch.device("cpu")


def test_cpu_precision_choices():
    assert not use_bf16(CPU, "auto")  # fp32 is the CPU reference unless bf16 is asked for
    assert not use_bf16(CPU, "fp32")
    assert use_bf16(CPU, "bf16") == cpu_supports_bf16()
    with pytest.raises(ValueError, match="precision must be one of"):
        use_bf16(CPU, "fp16")


def test_autocast_on_the_cpu():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast(CPU, "auto"):
        assert (a @ b).dtype == torch.float32
    with autocast(CPU, "bf16"):
        assert (a @ b).dtype == (torch.bfloat16 if cpu_supports_bf16() else torch.float32)


def test_options_refuse_an_unknown_precision():
    from glode.pseudo_label import PseudoLabelOptions
    from glode.train_source import SourceTrainingOptions

    with pytest.raises(ValueError, match="--precision"):
        SourceTrainingOptions(precision="half").validate()
    with pytest.raises(ValueError, match="--precision"):
        PseudoLabelOptions(precision="half").validate()
    with pytest.raises(ValueError, match="--cache-frozen-layers needs --train-top-layers"):
        SourceTrainingOptions(cache_frozen_layers=True).validate()

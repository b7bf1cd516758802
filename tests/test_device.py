"""The one device and precision rule, with the hardware injected so that every branch runs on any machine."""

from __future__ import annotations

import pytest

from rewardkit.device import Hardware, Placement, choose_placement, component_placement, cpu_has_bf16_units
from rewardkit.errors import RewardkitError

AMX_CPU = Hardware(cpu_bf16_units=True, cpu_name="Xeon")
AVX2_CPU = Hardware(cpu_bf16_units=False, cpu_name="EPYC")
BF16_GPU = Hardware(cuda_devices=2, cuda_bf16=True)
FP16_GPU = Hardware(cuda_devices=1, cuda_bf16=False)
MAC = Hardware(mps=True)


@pytest.mark.parametrize("hardware, device, precision", [
    (BF16_GPU, "cuda", "bf16"),        # a GPU wins over any CPU, in bf16 where it has it
    (FP16_GPU, "cuda", "fp16"),        # else fp16, with loss scaling
    (AMX_CPU, "cpu", "bf16"),          # bf16 matrix units: bf16 is several times faster than fp32
    (AVX2_CPU, "cpu", "fp32"),         # no bf16 units: bf16 would be slower than fp32
    (MAC, "cpu", "fp32"),              # MPS only when asked for
])
def test_auto_picks_the_device_and_precision_the_hardware_runs_fastest(hardware, device, precision):
    placement = choose_placement("auto", "auto", hardware)
    assert (placement.device, placement.precision) == (device, precision)
    assert placement.reason.startswith("auto")


def test_auto_precision_follows_the_device_that_was_asked_for():
    assert choose_placement("cpu", "auto", BF16_GPU).precision == "fp32"   # a GPU machine's CPU has no AMX here
    assert choose_placement("cpu", "auto", AMX_CPU).precision == "bf16"
    assert choose_placement("cuda:1", "auto", BF16_GPU).device == "cuda:1"
    assert choose_placement("mps", "auto", MAC).precision == "fp32"


def test_an_explicit_precision_is_kept():
    placement = choose_placement("cpu", "bf16", AVX2_CPU)
    assert (placement.device, placement.precision, placement.reason) == ("cpu", "bf16", "as asked")
    assert choose_placement("cuda", "fp32", BF16_GPU).precision == "fp32"
    assert choose_placement("cuda", "fp16", BF16_GPU).loss_scaling


@pytest.mark.parametrize("device, precision, hardware, message", [
    ("cuda", "auto", AVX2_CPU, "no CUDA GPU"),
    ("cuda:2", "auto", BF16_GPU, "only 2 CUDA GPU"),
    ("mps", "auto", AVX2_CPU, "MPS is not available"),
    ("cpu", "fp16", AMX_CPU, "fp16 needs a GPU"),
    ("cuda", "bf16", FP16_GPU, "does not support bf16"),
    ("tpu", "auto", AVX2_CPU, "--device must be"),
    ("cpu", "int8", AVX2_CPU, "--precision must be"),
])
def test_impossible_choices_are_one_line_user_errors(device, precision, hardware, message):
    with pytest.raises(RewardkitError, match=message):
        choose_placement(device, precision, hardware)


def test_placement_dtypes_and_autocast():
    import torch

    fp32 = choose_placement("cpu", "fp32", AVX2_CPU)
    bf16 = choose_placement("cpu", "bf16", AVX2_CPU)
    assert fp32.weights_dtype is torch.float32 and not fp32.mixed
    assert bf16.weights_dtype is torch.bfloat16 and bf16.mixed and not bf16.loss_scaling
    with bf16.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.bfloat16
    with fp32.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.float32
    assert bf16.as_dict() == {"device": "cpu", "precision": "bf16", "reason": "as asked"}


def test_cpu_bf16_units_are_read_from_the_flags():
    assert cpu_has_bf16_units("processor : 0\nflags : fpu sse2 avx2 amx_bf16 amx_tile amx_int8\n")
    assert cpu_has_bf16_units("flags : fpu sse2 avx2 avx512f avx512_bf16\n")   # bf16 dot products (AMD EPYC Zen 4)
    assert not cpu_has_bf16_units("flags : fpu sse2 avx2 avx512f\n")
    assert not cpu_has_bf16_units("model name : AMD EPYC\n")


def test_the_cpu_bf16_choice_is_a_measurement_kept_per_machine(tmp_path, monkeypatch):
    from rewardkit import device

    seconds = {"torch.float32": 4.0, "torch.bfloat16": 1.0}
    monkeypatch.setattr(device, "_time_matmul", lambda dtype: seconds[str(dtype)])
    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path))
    monkeypatch.delenv(device.CPU_BF16_ENV, raising=False)
    device.cpu_bf16_speedup.cache_clear()
    try:
        assert device.cpu_bf16_speedup() == 4.0 and device.cpu_has_bf16_units()
        device.cpu_bf16_speedup.cache_clear()
        seconds["torch.bfloat16"] = 8.0  # a later process reads the machine's measurement, it does not measure again
        assert device.cpu_bf16_speedup() == 4.0
        (tmp_path / "cpu_bf16.json").unlink()
        device.cpu_bf16_speedup.cache_clear()
        assert device.cpu_bf16_speedup() == 0.5 and not device.cpu_has_bf16_units()
        seconds["torch.bfloat16"] = 2.5  # 1.6x: below the margin, fp32 stays
        (tmp_path / "cpu_bf16.json").unlink()
        device.cpu_bf16_speedup.cache_clear()
        assert not device.cpu_has_bf16_units()
        monkeypatch.setenv(device.CPU_BF16_ENV, "1")
        assert device.cpu_has_bf16_units()
    finally:
        device.cpu_bf16_speedup.cache_clear()


@pytest.mark.parametrize("command", ["train-rm", "eval-rm", "score", "serve", "rl", "best-of-n"])
def test_every_command_takes_device_and_precision(command):
    import dataclasses

    from rewardkit.cli import COMMANDS, resolve

    fields = {f.name: f for f in dataclasses.fields(resolve(COMMANDS[command][0]))}
    assert fields["device"].default == "auto" and fields["precision"].default == "auto"
    assert fields["precision"].metadata["choices"] == ("auto", "fp32", "bf16", "fp16")


def test_a_gpu_that_only_emulates_bf16_gets_fp16(monkeypatch):
    import torch

    # a V100 (compute capability 7): torch emulates bf16 there unless asked for native support only
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    hardware = Hardware.detect()
    assert hardware.cuda_devices == 1 and not hardware.cuda_bf16


def test_a_component_takes_the_commands_placement_for_what_its_spec_leaves_at_auto():
    command = Placement("cpu", "bf16", "the command's reason")
    assert component_placement("auto", "auto", command) is command  # kept whole, reason and all
    own = component_placement("auto", "fp32", command)
    assert (own.device, own.precision, own.reason) == ("cpu", "fp32", "as asked")
    assert component_placement("cpu", "auto", command).precision == "bf16"  # the command's precision, as asked
    alone = component_placement("auto", "auto", None)  # a library caller: the rule every command uses
    assert (alone.device, alone.precision) == (choose_placement().device, choose_placement().precision)

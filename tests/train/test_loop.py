"""The training loop shared by both networks (lgdiff/_train/loop.py): non-finite data, losses and models are
refused, and a checkpoint resumes only on the data it was trained on (issue #15 items 2 and 3)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from lgdiff import U1, Lattice, LinkField
from lgdiff._io.checkpoint import METADATA_KEY, CheckpointError, load_checkpoint, save_checkpoint
from lgdiff._models.lcnn import LCNNConfig
from lgdiff._models.ncsnpp import NCSNppConfig
from lgdiff._sde.group import GroupVE
from lgdiff._sde.ve import VESDE
from lgdiff._train.dsm import TrainConfig, load_ncsnpp, train_ncsnpp
from lgdiff._train.gauge import GaugeTrainConfig, load_lcnn, train_lcnn

LAT = Lattice(shape=(4, 4))


def _scalar_data(generator: torch.Generator) -> torch.Tensor:
    return torch.randn(8, *LAT.shape, generator=generator)


def _links(generator: torch.Generator) -> LinkField:
    return LinkField.random(U1(), LAT, batch=8, generator=generator)


def _train_scalar(data, out, theory="phi4", progress=None, **config):
    return train_ncsnpp(data, out, config=TrainConfig(**{"steps": 2, "batch_size": 4, **config}),
                        arch=NCSNppConfig(dim=2, channels=4, multipliers=(1, 2), time_features=8), sde=VESDE(),
                        provenance={"theory": theory}, dtype=torch.float64, progress=progress)


def _train_gauge(data, out, theory="u1", progress=None, **config):
    return train_lcnn(data, out, config=GaugeTrainConfig(**{"steps": 2, "batch_size": 4, **config}),
                      arch=LCNNConfig(group=U1(), dim=2, channels=2, blocks=1), process=GroupVE(),
                      provenance={"theory": theory}, progress=progress)


KINDS = {"scalar": (_scalar_data, _train_scalar), "links": (_links, _train_gauge)}


def _poison(data, index: int) -> None:
    """Make configuration ``index`` non-finite in place (a LinkField is checked at construction only)."""
    raw = data.data if isinstance(data, LinkField) else data
    raw[index].reshape(-1)[3] = float("nan")


# ---- issue #15 item 2: non-finite data, losses and models -----------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_training_data_is_refused_naming_the_configuration(kind, tmp_path, generator):
    make, train = KINDS[kind]
    data = make(generator)
    _poison(data, 5)
    out = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="training configuration 5 of 8 is not finite"):
        train(data, out)
    assert not out.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_a_diverging_run_stops_with_a_clear_error_and_keeps_its_last_finite_checkpoint(kind, tmp_path, generator):
    make, train = KINDS[kind]
    out = tmp_path / "m.safetensors"
    # an absurd learning rate: Adam moves every weight by ~lr in the first step and the loss overflows
    with pytest.raises(ValueError, match=r"the training loss became (nan|inf) at step 2; .*m.safetensors keeps step 1"):
        train(make(generator), out, steps=10, checkpoint_every=1, lr=1e30)
    tensors, meta = load_checkpoint(out)  # what is on disk is finite (load refuses anything else)
    assert meta["step"] == 1 and all(bool(torch.isfinite(v).all()) for v in tensors.values())


def _write_raw_model(path, tensors, meta) -> None:
    """A model file written without save_checkpoint's checks (another tool, an older lgdiff)."""
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={METADATA_KEY: json.dumps(meta)})


@pytest.mark.parametrize(("kind", "load"), [("scalar", load_ncsnpp), ("links", load_lcnn)])
def test_a_model_file_with_non_finite_weights_is_refused_on_load(kind, load, tmp_path, generator):
    make, train = KINDS[kind]
    train(make(generator), tmp_path / "m.safetensors", steps=1)
    tensors, meta = load_checkpoint(tmp_path / "m.safetensors")
    name = sorted(k for k in tensors if k.startswith("ema."))[-1]
    tensors[name].reshape(-1)[0] = float("inf")
    _write_raw_model(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match=f"bad.safetensors: tensor '{name}' is not finite"):
        load(tmp_path / "bad.safetensors")


def test_save_checkpoint_never_writes_a_non_finite_model(tmp_path):
    path = tmp_path / "m.safetensors"
    with pytest.raises(CheckpointError, match="m.safetensors was not written: tensor 'ema.w' is not finite"):
        save_checkpoint(path, {"ema.b": torch.zeros(2), "ema.w": torch.tensor([1.0, float("nan")])}, {"kind": "x"})
    assert not path.exists()


# ---- issue #15 item 3: the training data's identity -----------------------------------------------------------

class _Stop(Exception):
    pass


def _stop_at_3(step: int, loss: float) -> None:
    if step == 3:
        raise _Stop


@pytest.mark.parametrize("kind", KINDS)
def test_a_checkpoint_resumes_only_on_the_data_it_was_trained_on(kind, tmp_path, generator):
    make, train = KINDS[kind]
    data, other = make(generator), make(generator)
    out = tmp_path / "m.safetensors"
    with pytest.raises(_Stop):  # interrupted after the step-2 checkpoint
        train(data, out, steps=4, checkpoint_every=2, progress=_stop_at_3)
    written = out.read_bytes()
    with pytest.raises(ValueError, match="m.safetensors was trained on other data"):
        train(other, out, steps=4, checkpoint_every=2)
    with pytest.raises(ValueError, match="m.safetensors was trained on other data"):
        train(data, out, steps=4, checkpoint_every=2, theory="other")  # the same numbers labelled as another theory
    assert out.read_bytes() == written  # untouched
    tensors, meta = load_checkpoint(out)  # a model file of an lgdiff that did not record its data
    save_checkpoint(tmp_path / "old.safetensors", tensors, {k: v for k, v in meta.items() if k != "data_identity"})
    with pytest.raises(ValueError, match="old.safetensors does not record its training data"):
        train(data, tmp_path / "old.safetensors", steps=4, checkpoint_every=2)
    train(data, out, steps=4, checkpoint_every=2)  # the same data resumes
    identity = load_checkpoint(out)[1]["data_identity"]
    assert load_checkpoint(out)[1]["step"] == 4 and identity["configurations"] == 8 and identity["lattice"] == [4, 4]
    assert identity["theory"] == {"scalar": "phi4", "links": "u1"}[kind]


def test_both_configs_refuse_a_checkpoint_interval_below_one():
    # the loop saves when (step + 1) % checkpoint_every == 0: 0 would divide by zero after the first step
    for config in (TrainConfig, GaugeTrainConfig):
        with pytest.raises(ValueError, match=f"^{config.__name__} needs .*checkpoint_every >= 1"):
            config(checkpoint_every=0)

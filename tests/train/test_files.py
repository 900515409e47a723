"""Model files (lgdiff/_models/files.py): one `load_model` for both kinds, bit-identical weights, clear errors."""

from pathlib import Path

import pytest
import torch

import lgdiff
from lgdiff import U1, Lattice, LinkField
from lgdiff._io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lgdiff._models.files import load_model
from lgdiff._models.lcnn import LCNN, LCNNConfig
from lgdiff._models.ncsnpp import NCSNpp
from lgdiff._sde.group import GroupVE
from lgdiff._sde.ve import VESDE
from lgdiff._train.gauge import GaugeTrainConfig, train_lcnn

MODELS = Path(lgdiff.__file__).parent / "models"


@pytest.mark.parametrize(("name", "network", "process"), [("phi4_k0.27_L16", NCSNpp, VESDE()),
                                                          ("u1_b1.0_L16", LCNN, GroupVE())])
def test_load_model_reads_either_kind_of_shipped_model_bit_for_bit(name, network, process):
    path = MODELS / f"{name}.safetensors"
    net, got_process, meta = load_model(path)
    tensors, stored = load_checkpoint(path)
    assert type(net) is network and got_process == process and meta == stored
    state = net.state_dict()
    assert state.keys() == {k.removeprefix("ema.") for k in tensors}
    for key, value in state.items():
        assert value.dtype == tensors[f"ema.{key}"].dtype and torch.equal(value, tensors[f"ema.{key}"]), key
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def _train(path: Path) -> Path:
    train_lcnn(LinkField.random(U1(), Lattice(shape=(4, 4)), batch=4, generator=torch.Generator().manual_seed(1)),
               path, config=GaugeTrainConfig(steps=1, batch_size=2),
               arch=LCNNConfig(group=U1(), dim=2, channels=2, blocks=1), process=GroupVE(), provenance={})
    return path


def test_load_model_errors_name_the_file_and_the_problem(tmp_path):
    tensors, meta = load_checkpoint(_train(tmp_path / "m.safetensors"))
    save_checkpoint(tmp_path / "kind.safetensors", tensors, {**meta, "kind": "unet"})
    with pytest.raises(CheckpointError, match="kind.safetensors holds a 'unet' model; this lgdiff reads 'ncsnpp'"):
        load_model(tmp_path / "kind.safetensors")
    save_checkpoint(tmp_path / "config.safetensors", tensors, {**meta, "config": {**meta["config"], "channels": 5}})
    with pytest.raises(CheckpointError, match="config.safetensors: the 'lcnn' model cannot be rebuilt"):
        load_model(tmp_path / "config.safetensors")


def test_a_shipped_model_is_not_resumed_as_a_training_run(tmp_path):
    # shipped files keep only the EMA weights: training into one is refused, and the file is left as it is
    path = _train(tmp_path / "m.safetensors")
    tensors, meta = load_checkpoint(path)
    save_checkpoint(path, {k: v for k, v in tensors.items() if k.startswith("ema.")}, {**meta, "step": 0})
    written = path.read_bytes()
    with pytest.raises(CheckpointError, match="m.safetensors holds no training state"):
        _train(path)
    assert path.read_bytes() == written

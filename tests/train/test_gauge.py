"""Denoising score matching on links: the score parametrisation, training, checkpoints and resumption, loading,
and what the shipped models learned (their small-t score against the exact Wilson force)."""

import math

import pytest
import torch

from lgdiff import SU, U1, Lattice, LinkField, WilsonAction
from lgdiff._io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lgdiff._models.lcnn import LCNN, LCNNConfig
from lgdiff._run.sample_gauge import default_model
from lgdiff._samplers.heatbath import Heatbath
from lgdiff._sde.group import GroupVE
from lgdiff._sde.ve import VESDE
from lgdiff._train.gauge import GaugeTrainConfig, lcnn_score, load_lcnn, process_from_settings, train_lcnn

LAT = Lattice(shape=(4, 4))


def heatbath_links(group, lattice: Lattice, beta: float, batch: int, generator, sweeps: int = 30) -> LinkField:
    kernel = Heatbath(WilsonAction(beta=beta, group=group))
    U = LinkField.random(group, lattice, batch=batch, generator=generator)
    for _ in range(sweeps):
        U, _ = kernel.step(U, generator=generator)
    return U


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().to(torch.float64), b.flatten().to(torch.float64)
    return float(a @ b / (a.norm() * b.norm()))


def test_lcnn_score_is_the_network_output_at_noise_level_over_s_t(generator):
    net = LCNN(LCNNConfig(group=SU(2), dim=2, channels=3), generator=generator)
    process = GroupVE()
    U = LinkField.random(SU(2), LAT, batch=2, generator=generator)
    t = torch.tensor([0.05, 0.7])
    s = process.std(t)
    want = net(U, torch.log(s) / 4).data / s[:, None, None, None, None, None]
    torch.testing.assert_close(lcnn_score(net, process)(U, t).data, want)


def test_lcnn_score_serves_complex128_chains_from_a_float32_network(generator):
    net = LCNN(LCNNConfig(group=SU(3), dim=2, channels=3, dtype="float32"), generator=generator)
    U = LinkField.random(SU(3), LAT, batch=2, generator=generator)
    t = torch.tensor([0.1, 0.4])
    out = lcnn_score(net, GroupVE())(U, t)
    assert out.data.dtype == torch.complex128
    s = GroupVE().std(t)
    ref = net(U.to(dtype=torch.complex64), (torch.log(s) / 4).float()).data.to(torch.complex128)
    ref = ref / s[:, None, None, None, None, None]
    torch.testing.assert_close(out.data, ref, rtol=1e-6, atol=1e-6)


def test_training_reduces_the_loss_and_records_provenance(tmp_path, generator):
    # cold links (U = 1): the perturbed links are pure heat-kernel noise, whose score the network can learn
    data = LinkField.identity(U1(), LAT, batch=32)
    arch = LCNNConfig(group=U1(), dim=2, channels=4, blocks=1)
    cfg = GaugeTrainConfig(steps=60, batch_size=8, lr=1e-2, checkpoint_every=30, target="heat_kernel", t_focus=0.3)
    out = tmp_path / "m.safetensors"
    report = train_lcnn(data, out, config=cfg, arch=arch, process=GroupVE(),
                        provenance={"theory": "u1", "beta": 1.0, "command": "pytest"})
    first, last = sum(report.losses[:15]) / 15, sum(report.losses[-15:]) / 15
    assert last < 0.8 * first, (first, last)
    net, process, meta = load_lcnn(out)
    assert meta["kind"] == "lcnn" and meta["step"] == 60 and meta["beta"] == 1.0 and meta["command"] == "pytest"
    assert meta["lattice"] == [4, 4] and meta["config"] == arch.to_dict() and meta["train_seconds"] > 0
    assert process == GroupVE() and not any(p.requires_grad for p in net.parameters())


class _Stop(Exception):
    pass


def test_interrupted_training_resumes_bit_identically(tmp_path, generator):
    data = LinkField.random(SU(2), LAT, batch=16, generator=generator)
    kw = dict(arch=LCNNConfig(group=SU(2), dim=2, channels=3, blocks=1), process=GroupVE(), provenance={},
              config=GaugeTrainConfig(steps=8, batch_size=4, checkpoint_every=4))
    train_lcnn(data, tmp_path / "full.safetensors", **kw)

    def stop_at_5(step, loss):
        if step == 5:
            raise _Stop

    with pytest.raises(_Stop):  # killed after the step-4 checkpoint
        train_lcnn(data, tmp_path / "cut.safetensors", progress=stop_at_5, **kw)
    assert load_checkpoint(tmp_path / "cut.safetensors")[1]["step"] == 4
    train_lcnn(data, tmp_path / "cut.safetensors", **kw)  # the same command resumes
    done, _ = load_checkpoint(tmp_path / "cut.safetensors")
    ref, _ = load_checkpoint(tmp_path / "full.safetensors")
    for k in ref:
        if k.startswith(("model.", "ema.")):
            assert torch.equal(done[k], ref[k]), k


def test_training_errors_say_what_to_fix(tmp_path, generator):
    data = LinkField.random(SU(2), LAT, batch=4, generator=generator)
    arch = LCNNConfig(group=SU(2), dim=2, channels=3, blocks=1)
    cfg = GaugeTrainConfig(steps=2, batch_size=2)
    with pytest.raises(ValueError, match="the data are SU\\(2\\) links in D = 2 but the architecture is for SU\\(3\\)"):
        train_lcnn(data, tmp_path / "a.safetensors", config=cfg, arch=LCNNConfig(group=SU(3), dim=2),
                   process=GroupVE(), provenance={})
    train_lcnn(data, tmp_path / "b.safetensors", config=cfg, arch=arch, process=GroupVE(), provenance={})
    with pytest.raises(ValueError, match="trained with other train"):  # more steps would extend it; another batch
        train_lcnn(data, tmp_path / "b.safetensors", config=GaugeTrainConfig(steps=2, batch_size=3), arch=arch,
                   process=GroupVE(), provenance={})
    with pytest.raises(ValueError, match="target must be one of"):
        GaugeTrainConfig(target="exact")
    with pytest.raises(ValueError, match="GaugeTrainConfig needs steps >= 1"):
        GaugeTrainConfig(steps=0)
    with pytest.raises(ValueError, match="t_focus must be None or > t_min"):
        GaugeTrainConfig(t_focus=0.0)


def test_load_lcnn_rejects_other_files_and_reads_ema_only_files(tmp_path, generator):
    data = LinkField.random(U1(), LAT, batch=4, generator=generator)
    arch = LCNNConfig(group=U1(), dim=2, channels=3, blocks=1)
    path = tmp_path / "m.safetensors"
    train_lcnn(data, path, config=GaugeTrainConfig(steps=2, batch_size=2), arch=arch, process=GroupVE(),
               provenance={})
    tensors, meta = load_checkpoint(path)
    save_checkpoint(tmp_path / "ema.safetensors", {k: v for k, v in tensors.items() if k.startswith("ema.")}, meta)
    net, _, _ = load_lcnn(tmp_path / "ema.safetensors")
    with pytest.raises(CheckpointError, match="has no model weights"):
        load_lcnn(tmp_path / "ema.safetensors", ema=False)
    save_checkpoint(tmp_path / "scalar.safetensors", {}, {**meta, "kind": "ncsnpp"})
    with pytest.raises(CheckpointError, match="holds a 'ncsnpp' model, not a gauge L-CNN"):
        load_lcnn(tmp_path / "scalar.safetensors")
    save_checkpoint(tmp_path / "old.safetensors", tensors, {**meta, "time_input": "t"})
    with pytest.raises(CheckpointError, match="trained with time input 't'"):
        load_lcnn(tmp_path / "old.safetensors")
    with pytest.raises(CheckpointError, match="unknown diffusion process 've'"):
        process_from_settings({"process": "ve", "sigma": 25.0, "T": 1.0})
    assert process_from_settings(GroupVE(sde=VESDE(sigma=10.0)).settings()) == GroupVE(sde=VESDE(sigma=10.0))


# ---- what the shipped models learned -------------------------------------------------------------------------
# At small t the score of the perturbed ensemble tends to the score of exp(-S): -(Wilson force at beta_0). A
# trained model must point along it (a random network has cosine ~ 0 with it).

@pytest.mark.parametrize(("theory", "group", "shape", "beta", "min_cos"),
                         [("u1", U1(), (16, 16), 1.0, 0.9), ("su3", SU(3), (4, 4, 4, 4), 5.0, 0.8)])
def test_shipped_model_score_at_small_t_points_along_the_exact_force(theory, group, shape, beta, min_cos, generator):
    net, process, meta = load_lcnn(default_model(theory))
    assert meta["beta"] == beta and tuple(meta["lattice"]) == shape and "train_gauge_models.py" in meta["command"]
    U = heatbath_links(group, Lattice(shape=shape), beta, batch=2, generator=generator, sweeps=10)
    t = torch.full((2,), 0.02)
    learned = lcnn_score(net, process)(U, t).coords()
    exact = -WilsonAction(beta=beta, group=group).force(U).coords()
    assert cosine(learned, exact) > min_cos
    random_net = LCNN(net.config, generator=generator)
    assert abs(cosine(lcnn_score(random_net, process)(U, t).coords().detach(), exact)) < 0.5
    assert math.isfinite(float(learned.abs().max()))

"""``Theory``: the typed theory behind the CLI's ``--theory`` and the ensemble files' ``theory``/``params``: its group
and action, built once from the name, and the generation algorithms it admits."""

import attrs
import pytest
import torch

from lgdiff import SU, U1, Heatbath, U1Direct, Lattice, Phi4Action, ToyAction, WilsonAction, group_from_name
from lgdiff._run.generate import GenerateConfig
from lgdiff._run.theory import Theory, theory_group


def test_gauge_theories_hold_their_group_and_wilson_action():
    for name, group in (("u1", U1()), ("su2", SU(2)), ("su3", SU(3))):
        th = Theory(name=name, lattice=Lattice(shape=(4, 4)), params={"beta": 2})
        assert th.group == group == theory_group(name) == group_from_name(str(group))
        assert th.is_gauge and th.beta == 2.0 and isinstance(th.beta, float)
        assert th.action() == WilsonAction(beta=2.0, group=group)
        assert th.action() is th.action()  # built once


def test_scalar_theories_have_no_group_and_no_beta():
    phi4 = Theory(name="phi4", lattice=Lattice(shape=(4, 4)), params={"kappa": 0.2, "lam": 0.02})
    toy = Theory(name="toy", lattice=Lattice(shape=()), params={"m2": -1, "g": 0.4})
    assert phi4.group is None and not phi4.is_gauge and theory_group("phi4") is None
    assert phi4.action() == Phi4Action(kappa=0.2, lam=0.02) and toy.action() == ToyAction(m2=-1.0, g=0.4)
    with pytest.raises(ValueError, match="theory phi4 has no gauge coupling beta; its couplings are kappa, lam"):
        phi4.beta


def test_equality_repr_and_evolve_follow_name_lattice_and_params():
    th = Theory(name="su2", lattice=Lattice(shape=(4, 4)), params={"beta": 2.0})
    assert th == Theory(name="su2", lattice=Lattice(shape=(4, 4)), params={"beta": 2})
    assert repr(th) == "Theory(name='su2', lattice=Lattice(shape=(4, 4)), params={'beta': 2.0})"
    hotter = attrs.evolve(th, params={"beta": 1.5})
    assert hotter.action() == WilsonAction(beta=1.5, group=SU(2)) and hotter.beta == 1.5 and th.beta == 2.0
    assert hotter != th


def test_invalid_theories_fail_at_construction():
    lat = Lattice(shape=(4, 4))
    with pytest.raises(ValueError, match="unknown theory 'so3'; expected one of phi4, toy, u1, su2, su3"):
        Theory(name="so3", lattice=lat, params={"beta": 1.0})
    with pytest.raises(ValueError, match="unknown theory 'so3'"):
        theory_group("so3")
    with pytest.raises(ValueError, match=r"theory su3 takes parameters \['beta'\]: missing beta; unexpected kappa"):
        Theory(name="su3", lattice=lat, params={"kappa": 0.1})
    with pytest.raises(ValueError, match="gauge theory u1 needs D >= 2"):
        Theory(name="u1", lattice=Lattice(shape=(4,)), params={"beta": 1.0})
    with pytest.raises(ValueError, match="the toy model lives on D = 0"):
        Theory(name="toy", lattice=lat, params={"m2": 1.0, "g": 0.4})
    with pytest.raises(ValueError, match="lam"):  # the action's own validation, at construction
        Theory(name="phi4", lattice=lat, params={"kappa": 0.2, "lam": -0.5})


@pytest.mark.parametrize(("name", "params", "shape", "dtype"), [
    ("su3", {"beta": 5.0}, (3, 2, 2, 2, 3, 3), torch.complex64),
    ("phi4", {"kappa": 0.2, "lam": 0.02}, (3, 2, 2), torch.float32),
])
def test_initial_is_a_hot_start_of_the_theory_fields(name, params, shape, dtype):
    th = Theory(name=name, lattice=Lattice(shape=(2, 2)), params=params)
    state = th.initial(chains=3, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    assert state.data.shape == shape and state.data.dtype == dtype
    assert getattr(state, "group", None) == th.group


def test_the_theory_decides_the_generation_algorithms():
    gauge = Theory(name="su2", lattice=Lattice(shape=(4, 4)), params={"beta": 2.0})
    toy = Theory(name="toy", lattice=Lattice(shape=()), params={"m2": 1.0, "g": 0.4})
    kernel = GenerateConfig(theory=gauge, algorithm="heatbath", n=1).kernel()
    assert isinstance(kernel, Heatbath) and kernel.action is gauge.action()
    with pytest.raises(ValueError, match="--algorithm metropolis is for scalar phi\\^4; for su2 use hmc or heatbath"):
        GenerateConfig(theory=gauge, algorithm="metropolis", n=1)
    with pytest.raises(ValueError, match="--algorithm heatbath is for gauge theories"):
        GenerateConfig(theory=toy, algorithm="heatbath", n=1)
    with pytest.raises(ValueError, match="--algorithm wolff needs the phi4 theory"):
        GenerateConfig(theory=toy, algorithm="wolff", n=1)
    assert GenerateConfig(theory=toy, algorithm="metropolis", n=1).kernel().action is toy.action()


def test_direct_generation_is_2d_u1_only_and_records_independent_draws(tmp_path):
    u1 = Theory(name="u1", lattice=Lattice(shape=(6, 6)), params={"beta": 7.0})
    config = GenerateConfig(theory=u1, algorithm="direct", n=3, chains=4, therm=0, seed=5)
    assert isinstance(config.kernel(), U1Direct)
    ens = config.run(tmp_path / "d.safetensors")
    assert ens.metadata.algorithm == "direct" and ens.configs().batch == 12
    records = ens.configs().data.reshape(3, 4, -1)
    assert not torch.equal(records[0], records[1])  # every record is a fresh draw
    for name, shape in (("su2", (4, 4)), ("u1", (4, 4, 4))):
        th = Theory(name=name, lattice=Lattice(shape=shape), params={"beta": 2.0})
        with pytest.raises(ValueError, match="--algorithm direct \\(exact independent draws\\) exists for 2D U\\(1\\) only"):
            GenerateConfig(theory=th, algorithm="direct", n=1)

import doctest
import importlib

import pytest
import torch

MODULES = [
    "lgdiff._geometry.lattice",
    "lgdiff._groups.names",
    "lgdiff._fields.scalar",
    "lgdiff._fields.links",
    "lgdiff._actions.phi4",
    "lgdiff._samplers.heatbath",
    "lgdiff._models.lcnn",
    "lgdiff._models.embedding",
    "lgdiff._run.theory",
    "lgdiff._models.ncsnpp",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    torch.set_default_dtype(torch.float32)  # as in a user's session (the autouse fixture restores float64)
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0

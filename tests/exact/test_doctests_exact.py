import doctest
import importlib

import pytest

pytest.importorskip("scipy")

MODULES = ["lgdiff._exact.u1_2d", "lgdiff._exact.sun_2d", "lgdiff._exact.scalar", "lgdiff._exact.diffusion"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0

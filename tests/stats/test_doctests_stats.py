import doctest
import importlib

import pytest

MODULES = ["lgdiff._stats.estimate", "lgdiff._stats.resampling", "lgdiff._stats.gamma", "lgdiff._stats.equilibration"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0

import doctest
import importlib

import pytest

MODULES = ["lgdiff._observables.scalar", "lgdiff._observables.gauge", "lgdiff._observables.flow"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0

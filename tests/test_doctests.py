import doctest
import importlib

import pytest

MODULES = ["lgdiff._geometry.lattice", "lgdiff._fields.scalar", "lgdiff._fields.links", "lgdiff._actions.phi4"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0

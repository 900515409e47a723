"""The one interface of everything a file's provenance records: an algorithm, a kinetic term, a forward process."""

import abc


class AbstractRecorded(abc.ABC):
    """An object that ensemble and model files record by its ``name`` and ``settings``."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Short name recorded in provenance, e.g. ``"hmc"`` or ``"ve"``."""

    @abc.abstractmethod
    def settings(self) -> dict[str, float | int | str]:
        """Every setting that defines the object (provenance)."""

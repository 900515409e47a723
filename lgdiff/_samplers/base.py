"""Markov kernels over batches of independent chains, and the driver that runs them."""

import abc
import typing
from collections.abc import Callable, Iterator

import attrs
import torch
from torch import Tensor

from .._fields.links import LinkField
from .._fields.scalar import Field

State = typing.TypeVar("State", Field, LinkField)


class AbstractKernel(abc.ABC, typing.Generic[State]):
    """One Markov update of every chain in a batch (the batch axis of the state is the chain axis).

    A kernel must leave its target distribution invariant for each chain separately; chains never
    interact. Randomness comes only from the ``generator`` argument (on the state's device).
    """

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Short algorithm name recorded in provenance, e.g. ``"hmc"``."""

    @abc.abstractmethod
    def settings(self) -> dict[str, float | int | str]:
        """Every setting that defines the kernel (provenance)."""

    @abc.abstractmethod
    def step(self, state: State, *, generator: torch.Generator) -> tuple[State, Tensor]:
        """Advance every chain once. Returns the new state and the acceptance per chain ``[B]``
        (1.0 for rejection-free updates; the acceptance probability or indicator otherwise)."""


@typing.final
@attrs.frozen
class Composite(AbstractKernel[State]):
    """Apply kernels in sequence (e.g. HMC then a Wolff cluster update). Reports the first kernel's acceptance."""

    kernels: tuple[AbstractKernel, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        if not self.kernels:
            raise ValueError("Composite needs at least one kernel")

    @property
    def name(self) -> str:
        return "+".join(k.name for k in self.kernels)

    def settings(self) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {}
        for k in self.kernels:
            out.update({f"{k.name}.{key}": v for key, v in k.settings().items()})
        return out

    def step(self, state: State, *, generator: torch.Generator) -> tuple[State, Tensor]:
        acc = None
        for k in self.kernels:
            state, a = k.step(state, generator=generator)
            acc = a if acc is None else acc
        return state, acc


@attrs.frozen
class ChainStep:
    """What a chain yields after each kept measurement."""

    index: int          # trajectory / sweep number, counted from the first thermalisation step
    state: Field | LinkField
    acceptance: Tensor  # [B], mean over the steps since the last yield


def run_chain(kernel: AbstractKernel, initial: State, *, n: int, generator: torch.Generator, therm: int = 0,
              every: int = 1, start: int = 0, progress: Callable[[int], None] | None = None) -> Iterator[ChainStep]:
    """Thermalise for ``therm`` steps, then yield every ``every``-th state ``n`` times.

    ``start`` resumes the step counter (a resumed run passes the index of its last saved state + 1 and
    ``therm = 0``). ``progress`` is called with the number of steps done (for progress bars).
    Acceptance is accumulated on the device; nothing synchronises per step.
    """
    if n < 0 or therm < 0 or every < 1:
        raise ValueError(f"run_chain needs n >= 0, therm >= 0, every >= 1; got n={n}, therm={therm}, every={every}")
    state = initial
    step = start
    for _ in range(therm):
        state, _acc = kernel.step(state, generator=generator)
        step += 1
        if progress is not None:
            progress(1)
    for _ in range(n):
        acc_sum: Tensor | None = None
        for _ in range(every):
            state, acc = kernel.step(state, generator=generator)
            acc_sum = acc if acc_sum is None else acc_sum + acc
            step += 1
            if progress is not None:
                progress(1)
        yield ChainStep(index=step - 1, state=state, acceptance=acc_sum / every)


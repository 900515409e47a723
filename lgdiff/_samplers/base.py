"""Markov kernels over batches of independent chains, and the driver that runs them."""

import abc
import math
import typing
from collections.abc import Callable, Iterator, Mapping

import attrs
import torch
from torch import Tensor

from .._fields.links import LinkField
from .._fields.scalar import Field
from .._provenance import AbstractRecorded

State = typing.TypeVar("State", Field, LinkField)


class AbstractKernel(AbstractRecorded, typing.Generic[State]):
    """One Markov update of every chain in a batch (the batch axis of the state is the chain axis).

    A kernel must leave its target distribution invariant for each chain separately; chains never
    interact. Randomness comes only from the ``generator`` argument (on the state's device). Its ``name`` and
    ``settings`` are the algorithm an ensemble file records.
    """

    @abc.abstractmethod
    def step(self, state: State, *, generator: torch.Generator) -> tuple[State, Tensor]:
        """Advance every chain once. Returns the new state and the acceptance per chain ``[B]``
        (1.0 for rejection-free updates; the acceptance probability or indicator otherwise)."""

    # A kernel may carry more than the configuration from step to step (an independence sampler carries the log
    # importance weight of its current state). These four methods say how; the defaults carry nothing.

    def init(self, initial: State, *, generator: torch.Generator) -> typing.Any:
        """The chain state a run starts from, given the configurations ``initial`` (default: ``initial``)."""
        return initial

    def config(self, state: typing.Any) -> Field | LinkField:
        """The configurations of a chain state (what an ensemble records)."""
        return state

    @property
    def carry_keys(self) -> tuple[str, ...]:
        """Names of the per-chain float64 tensors ``[B]`` that :meth:`carry` returns (default: none)."""
        return ()

    def carry(self, state: typing.Any) -> dict[str, Tensor]:
        """Per-chain tensors ``[B]`` beyond the configurations that a bit-for-bit resume needs (default: none)."""
        return {}

    def restore(self, config: Field | LinkField, carry: dict[str, Tensor]) -> typing.Any:
        """The chain state from a recorded configuration and its :meth:`carry`."""
        return config


def requires(cls: type, why: str) -> Callable[[object, attrs.Attribute, object], None]:
    """An attrs validator: the field must be an instance of ``cls``; the one-line error says ``why``."""

    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if not isinstance(value, cls):
            raise TypeError(f"{type(instance).__name__}.{attribute.name} must be a {cls.__name__} ({why}); got "
                            f"{type(value).__name__}")

    return check


@typing.final
@attrs.frozen
class Composite(AbstractKernel[State]):
    """Apply kernels in sequence (e.g. HMC then a Wolff cluster update). Reports the first kernel's acceptance."""

    kernels: tuple[AbstractKernel, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        if not self.kernels:
            raise ValueError("Composite needs at least one kernel")
        carrying = [k.name for k in self.kernels if type(k).init is not AbstractKernel.init]
        if carrying:
            raise ValueError(f"Composite cannot yet combine kernels that carry state beyond the configuration "
                             f"({', '.join(carrying)}): the other kernels would leave their carried weights stale")

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
    carry: dict[str, Tensor] = attrs.field(factory=dict)  # what a bit-for-bit resume needs beyond the state


@typing.final
@attrs.frozen(kw_only=True)
class StepSizeAdaptation:
    r"""Tune a kernel's ``step_size`` during thermalisation, then freeze it, so that the recorded part of every
    chain is one fixed exact kernel: Robbins-Monro on ``log step_size^2`` with the mean acceptance probability over
    the chains, ``log h^2 += (<a> - target) / sqrt(1 + k / 5)`` after thermalisation step ``k``.

    Each update reads the mean acceptance on the host (one device synchronisation per thermalisation step)."""

    target: float = 0.6

    def __attrs_post_init__(self) -> None:
        if not 0.0 < self.target < 1.0:
            raise ValueError(f"the target acceptance must be in (0, 1); got {self.target!r}")

    def tune(self, kernel: AbstractKernel, state: typing.Any, *, steps: int, generator: torch.Generator,
             progress: Callable[[int], None] | None = None) -> tuple[AbstractKernel, typing.Any]:
        """Run ``steps`` adapted steps from the chain state ``state``; returns the frozen kernel and the state."""
        kernel, (state,) = self.tune_blocks(kernel, [state], [generator], steps=steps, progress=progress)
        return kernel, state

    def tune_blocks(self, kernel: AbstractKernel, states: list[typing.Any], generators: list[torch.Generator], *,
                    steps: int, progress: Callable[[int], None] | None = None,
                    reduce: Callable[[float], float] | None = None) -> tuple[AbstractKernel, list[typing.Any]]:
        """:meth:`tune` for independently seeded blocks of chains that share one kernel: the acceptance is averaged
        over the blocks (and by ``reduce``, e.g. over the ranks of a distributed run) before each update."""
        if "step_size" not in attrs.fields_dict(type(kernel)):
            raise TypeError(f"{type(kernel).__name__} has no step_size to adapt")
        log_h2 = 2 * math.log(kernel.step_size)
        for k in range(steps):
            probs = []
            for i, g in enumerate(generators):
                states[i], prob = kernel.step(states[i], generator=g)
                probs.append(float(prob.to(torch.float64).mean()))
            mean = sum(probs) / len(probs)
            if reduce is not None:
                mean = reduce(mean)
            log_h2 += (mean - self.target) / math.sqrt(1.0 + k / 5.0)
            kernel = attrs.evolve(kernel, step_size=math.exp(log_h2 / 2))
            if progress is not None:
                progress(1)
        return kernel, states

    def restore(self, kernel: AbstractKernel, settings: Mapping[str, typing.Any]) -> AbstractKernel:
        """The tuned kernel of an earlier run from its recorded settings (for a resume)."""
        return attrs.evolve(kernel, step_size=float(settings["step_size"]))


def run_chain(kernel: AbstractKernel, initial: typing.Any, *, n: int, generator: torch.Generator, therm: int = 0,
              every: int = 1, start: int = 0, progress: Callable[[int], None] | None = None) -> Iterator[ChainStep]:
    """Thermalise for ``therm`` steps, then yield every ``every``-th state ``n`` times.

    ``initial`` is a chain state (``kernel.init(configs, generator=...)``; for kernels that carry nothing, the
    configurations themselves). ``start`` resumes the step counter (a resumed run passes the index of its last
    saved state + 1 and ``therm = 0``). ``progress`` is called with the number of steps done (for progress bars).
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
        yield ChainStep(index=step - 1, state=kernel.config(state), acceptance=acc_sum / every,
                        carry=kernel.carry(state))


"""lgdiff: lattice field theory with diffusion models.

The public API is curated here; modules starting with ``_`` are private.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from ._actions.base import AbstractGaugeAction as AbstractGaugeAction
from ._actions.base import AbstractScalarAction as AbstractScalarAction
from ._actions.phi4 import Phi4Action as Phi4Action
from ._actions.phi4 import ToyAction as ToyAction
from ._actions.wilson import WilsonAction as WilsonAction
from ._checks import checks as checks
from ._checks import checks_enabled as checks_enabled
from ._fields.links import AlgebraField as AlgebraField
from ._fields.links import GaugeTransform as GaugeTransform
from ._fields.links import LinkField as LinkField
from ._fields.scalar import Field as Field
from ._geometry.lattice import Lattice as Lattice
from ._geometry.lattice import shift as shift
from ._groups.base import AbstractGroup as AbstractGroup
from ._groups.names import group_from_name as group_from_name
from ._groups.sun import SU as SU
from ._groups.u1 import U1 as U1
from ._integrators.schemes import LEAPFROG as LEAPFROG
from ._integrators.schemes import OMELYAN as OMELYAN
from ._integrators.schemes import SplittingScheme as SplittingScheme
from ._io.checkpoint import CheckpointError as CheckpointError
from ._io.ensemble import Ensemble as Ensemble
from ._io.ensemble import EnsembleError as EnsembleError
from ._io.ensemble import EnsembleMetadata as EnsembleMetadata
from ._io.ensemble import EnsembleWriter as EnsembleWriter
from ._io.ensemble import ResumePoint as ResumePoint
from ._run.split import generate_ensemble as generate_ensemble
from ._io.ildg import IldgError as IldgError
from ._io.ildg import read_ildg as read_ildg
from ._io.ildg import write_ildg as write_ildg
from ._io.lime import LimeError as LimeError
from ._io.lime import LimeRecord as LimeRecord
from ._io.lime import read_lime as read_lime
from ._io.nersc import NerscError as NerscError
from ._io.nersc import read_nersc as read_nersc
from ._io.nersc import write_nersc as write_nersc
from ._models.embedding import TimeEmbedding as TimeEmbedding
from ._models.lcnn import LCNN as LCNN
from ._models.lcnn import LCNNConfig as LCNNConfig
from ._models.ncsnpp import NCSNpp as NCSNpp
from ._models.ncsnpp import NCSNppConfig as NCSNppConfig
from ._observables.flow import wilson_flow as wilson_flow
from ._observables.gauge import clover_field_strength as clover_field_strength
from ._observables.gauge import energy_density as energy_density
from ._observables.gauge import mean_plaquette as mean_plaquette
from ._observables.gauge import plaquette_field as plaquette_field
from ._observables.gauge import polyakov_loop as polyakov_loop
from ._observables.gauge import topological_charge_clover as topological_charge_clover
from ._observables.gauge import topological_charge_u1_2d as topological_charge_u1_2d
from ._observables.gauge import wilson_loop as wilson_loop
from ._observables.scalar import abs_magnetization as abs_magnetization
from ._observables.scalar import binder as binder
from ._observables.scalar import connected_correlator as connected_correlator
from ._observables.scalar import correlator as correlator
from ._observables.scalar import cumulants as cumulants
from ._observables.scalar import effective_mass as effective_mass
from ._observables.scalar import magnetization as magnetization
from ._observables.scalar import susceptibility as susceptibility
from ._observables.scalar import two_point_momentum as two_point_momentum
from ._run.generate import GenerateConfig as GenerateConfig
from ._run.sample_gauge import GaugeSampleConfig as GaugeSampleConfig
from ._run.sample_gauge import default_model as default_model
from ._run.sample_scalar import ScalarSampleConfig as ScalarSampleConfig
from ._sde.group import GroupVE as GroupVE
from ._sde.heat_kernel import heat_kernel as heat_kernel
from ._train.gauge import GaugeTrainConfig as GaugeTrainConfig
from ._models.files import load_lcnn as load_lcnn
from ._models.files import LoadedModel as LoadedModel
from ._models.files import load_model as load_model
from ._models.files import load_score as load_score
from ._train.gauge import train_lcnn as train_lcnn
from ._run.compare import compare as compare
from ._run.measure import measure as measure
from ._plot import plot_ensemble as plot_ensemble
from ._run.theory import Theory as Theory
from ._samplers.base import AbstractKernel as AbstractKernel
from ._samplers.base import Composite as Composite
from ._samplers.base import run_chain as run_chain
from ._samplers.base import StepSizeAdaptation as StepSizeAdaptation
from ._samplers.independence import MarginalIMH as MarginalIMH
from ._samplers.independence import PathIMH as PathIMH
from ._samplers.independence import RawDraws as RawDraws
from ._samplers.maala import MCResult as MCResult
from ._samplers.maala import WilsonScore as WilsonScore
from ._samplers.maala import maala as maala
from ._samplers.maala import maala_kernel as maala_kernel
from ._samplers.maala import marginal_imh as marginal_imh
from ._samplers.maala import path_imh as path_imh
from ._samplers.maala import sample_chain as sample_chain
from ._samplers.maala import wilson_score as wilson_score
from ._samplers.reverse import Corrector as Corrector
from ._samplers.reverse import log_likelihood as log_likelihood
from ._samplers.reverse import probability_flow as probability_flow
from ._samplers.reverse import reverse_sde as reverse_sde
from ._samplers.heatbath import Heatbath as Heatbath
from ._samplers.heatbath import Overrelaxation as Overrelaxation
from ._samplers.hmc import HMC as HMC
from ._samplers.hmc import FourierMass as FourierMass
from ._samplers.hmc import GaugeHMC as GaugeHMC
from ._samplers.hmc import UnitMass as UnitMass
from ._samplers.metropolis import Metropolis as Metropolis
from ._samplers.wolff import Wolff as Wolff
from ._sde.base import AbstractProcess as AbstractProcess
from ._sde.base import AbstractSDE as AbstractSDE
from ._sde.score import ConditionedScore as ConditionedScore
from ._sde.score import Score as Score
from ._sde.ve import VESDE as VESDE
from ._sde.vp import VPSDE as VPSDE
from ._stats import Autocorrelation as Autocorrelation
from ._stats import Estimate as Estimate
from ._stats import GammaEstimate as GammaEstimate
from ._stats import autocorrelation as autocorrelation
from ._stats import DriftCheck as DriftCheck
from ._stats import bootstrap as bootstrap
from ._stats import equilibration_drift as equilibration_drift
from ._stats import gamma_method as gamma_method
from ._stats import gamma_method_derived as gamma_method_derived
from ._stats import jackknife as jackknife
from ._train.dsm import TrainConfig as TrainConfig
from ._train.dsm import dsm_loss as dsm_loss
from ._models.files import load_ncsnpp as load_ncsnpp
from ._train.dsm import train_ncsnpp as train_ncsnpp

try:
    __version__ = _version("lgdiff")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"


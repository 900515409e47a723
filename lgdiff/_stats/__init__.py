"""Error analysis of Monte Carlo time series: binning, jackknife, bootstrap, Wolff's Gamma method.

Everything runs on the host in numpy float64 (torch tensors are copied once): end-of-run analysis.
"""

from .estimate import Autocorrelation as Autocorrelation
from .estimate import Estimate as Estimate
from .estimate import GammaEstimate as GammaEstimate
from .estimate import format_mean_error as format_mean_error
from .equilibration import DriftCheck as DriftCheck
from .equilibration import equilibration_drift as equilibration_drift
from .estimate import format_value_error as format_value_error
from .gamma import autocorrelation as autocorrelation
from .gamma import gamma_method as gamma_method
from .gamma import gamma_method_derived as gamma_method_derived
from .importance import effective_sample_size as effective_sample_size
from .importance import reweighted_mean as reweighted_mean
from .resampling import binned as binned
from .resampling import bootstrap as bootstrap
from .resampling import jackknife as jackknife
from .resampling import jackknife_binder as jackknife_binder
from .resampling import jackknife_susceptibility as jackknife_susceptibility

__all__ = [
    "Autocorrelation",
    "DriftCheck",
    "Estimate",
    "GammaEstimate",
    "autocorrelation",
    "binned",
    "bootstrap",
    "effective_sample_size",
    "equilibration_drift",
    "format_mean_error",
    "format_value_error",
    "gamma_method",
    "gamma_method_derived",
    "jackknife",
    "jackknife_binder",
    "jackknife_susceptibility",
    "reweighted_mean",
]

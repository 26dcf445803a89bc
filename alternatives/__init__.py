"""Trainers that are not backpropagation, each a drop-in :class:`fastbp.Trainer`
for the same fastbp models (target propagation, feedback alignment, synthetic
gradients ...). This package imports fastbp; fastbp never imports it.

Importing it registers its trainers with :func:`fastbp.register_trainer`:
``"fa"`` (:class:`FATrainer`), ``"dfa"`` (:class:`DFATrainer`), ``"dtp"``
(:class:`DTPTrainer`), ``"ddtp"`` (:class:`DDTPTrainer`), ``"sg"``
(:class:`SyntheticGradientTrainer`), ``"altmin"`` (:class:`AltMinTrainer`) and
``"hsic"`` (:class:`HSICTrainer`). :func:`hsic` and :func:`nhsic` measure
(normalised) HSIC between two sets of paired samples.
"""
import os as _os

import fastbp
from fastbp.compile_cache import drop_stale_caches
from fastbp.kernels import KERNELS_DIR

# the kernels here call fastbp's: recompile them when either changed
drop_stale_caches(_os.path.dirname(_os.path.abspath(__file__)), [KERNELS_DIR])

from .alignment import AlignmentRecorder, alignment, layer_angles
from .altmin import AltMinTrainer
from .ddtp import DDTPTrainer
from .feedback_alignment import DFATrainer, FATrainer
from .hsic import HSICTrainer
from .hsic_measure import hsic, nhsic  # after .hsic: the name is the function, not the module
from .sg_recurrent import RecurrentSyntheticGradientTrainer
from .synthetic_gradients import SyntheticGradientTrainer
from .target_propagation import DTPTrainer

fastbp.register_trainer("fa", FATrainer)
fastbp.register_trainer("dfa", DFATrainer)
fastbp.register_trainer("dtp", DTPTrainer)
fastbp.register_trainer("ddtp", DDTPTrainer)
fastbp.register_trainer("sg", SyntheticGradientTrainer)
fastbp.register_trainer("hsic", HSICTrainer)
fastbp.register_trainer("altmin", AltMinTrainer)

__all__ = ["FATrainer", "DFATrainer", "DTPTrainer", "DDTPTrainer", "SyntheticGradientTrainer",
           "RecurrentSyntheticGradientTrainer",
           "AltMinTrainer",
           "HSICTrainer", "hsic", "nhsic",
           "alignment", "layer_angles", "AlignmentRecorder"]

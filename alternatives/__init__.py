"""Trainers that are not backpropagation, each a drop-in :class:`fastbp.Trainer`
for the same fastbp models (target propagation, feedback alignment, synthetic
gradients ...). This package imports fastbp; fastbp never imports it.

Importing it registers its trainers with :func:`fastbp.register_trainer`:
``"fa"`` (:class:`FATrainer`) and ``"dfa"`` (:class:`DFATrainer`).
"""
import os as _os

import fastbp
from fastbp.kernels import KERNELS_DIR, drop_stale_caches

# the kernels here call fastbp's: recompile them when either changed
drop_stale_caches(_os.path.dirname(_os.path.abspath(__file__)), [KERNELS_DIR])

from .alignment import AlignmentRecorder, alignment, layer_angles
from .feedback_alignment import DFATrainer, FATrainer

fastbp.register_trainer("fa", FATrainer)
fastbp.register_trainer("dfa", DFATrainer)

__all__ = ["FATrainer", "DFATrainer", "alignment", "layer_angles", "AlignmentRecorder"]

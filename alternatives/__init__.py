"""Trainers that are not backpropagation, each a drop-in :class:`fastbp.Trainer`
for the same fastbp models (target propagation, feedback alignment, synthetic
gradients ...). This package imports fastbp; fastbp never imports it."""

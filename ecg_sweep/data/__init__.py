"""PTB-XL data layer: metadata and labels, record reading, decoded-signal cache, splits.

Import the concrete modules (``ecg_sweep.data.dataset.prepare``, ``ecg_sweep.data.synth``, ...);
this package init stays light so that ``ecg_sweep.config`` can import the fold constants.
"""

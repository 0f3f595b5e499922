"""Training of IDM models (PyTorch Lightning): configs, losses, the LightningModule and the run driver.

- :mod:`idm.train.config`: ``TrainConfig`` (model, data, training, peak-picking sections) from YAML.
- :mod:`idm.train.losses`: multi-resolution STFT, onset and kit losses.
- :mod:`idm.train.module`: ``IDMTrainingModule``, the LightningModule (batched synthesis, sequencing).
- :mod:`idm.train.run`: ``train()``: Trainer, callbacks, resumable chunks, ``model.ckpt`` export.
"""

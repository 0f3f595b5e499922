"""Training data made on the fly: Groove MIDI performances rendered with sampled drum kits.

- :mod:`idm.data.gmd`: the Groove MIDI Dataset (splits, MIDI -> class events).
- :mod:`idm.data.kits`: kits (Hydrogen, SoundFont, one-shot folders), the kit registry.
- :mod:`idm.data.render`: the deterministic renderer and its augmentations.
- :mod:`idm.data.targets`: onset/velocity targets on the model's frame grid.
- :mod:`idm.data.dataset`: the torch ``RenderedDataset`` and the evaluation-clip spec (imports torch).
- :mod:`idm.data.pack`: the compact training pack (FLAC kit samples + MIDI) for a GPU machine.

Only :mod:`idm.data.dataset` imports torch.
"""

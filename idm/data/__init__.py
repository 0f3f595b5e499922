"""Training data made on the fly: Groove MIDI performances rendered with sampled drum kits, pools and synthesized drums.

- :mod:`idm.data.gmd`: the Groove MIDI Dataset (splits, MIDI -> class events).
- :mod:`idm.data.kitmap`, :mod:`idm.data.kits`, :mod:`idm.data.pools`: the kit registry; kits (Hydrogen, SoundFont,
  one-shot folders) and one-shot pools; the reserved evaluation sounds that are never loaded.
- :mod:`idm.data.plan`: render plans (every random choice of a clip, no audio) and the augmentation settings.
- :mod:`idm.data.render`: plays a plan with numpy (the deterministic reference renderer).
- :mod:`idm.data.batch_render`: plays a batch of plans in torch on the training device (imports torch).
- :mod:`idm.data.pitch`, :mod:`idm.data.procedural`, :mod:`idm.data.effects`: pitch-shifted copies, synthesized
  drums and recording-realism effects, in torch.
- :mod:`idm.data.targets`: onset/velocity targets on the model's frame grid.
- :mod:`idm.data.dataset`: the torch datasets (rendered clips, plans) and the evaluation-clip spec.
- :mod:`idm.data.fingerprint`: the check that evaluation kits share no sample with training sounds.
- :mod:`idm.data.pack`: the compact training pack (FLAC kit samples + MIDI) for a GPU machine.

The torch modules are imported only by training; ``import idm.data`` itself imports neither torch nor numpy.
"""

"""The IDM model in PyTorch: configuration, modules and the full model."""

from idm.model.config import EncoderConfig, FrontendConfig, IDMConfig, SynthConfig
from idm.model.idm import EncoderOutput, InverseDrumMachine

__all__ = ["EncoderConfig", "EncoderOutput", "FrontendConfig", "IDMConfig", "InverseDrumMachine", "SynthConfig"]

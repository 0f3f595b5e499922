"""Training configurations shipped with the package (``idm train live`` resolves a name to ``live.yaml``)."""

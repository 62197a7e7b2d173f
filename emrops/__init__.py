"""emrops: the operations toolkit for EMRsim-chat."""

__version__ = "0.1.0"

"""drtool: from a custom model on disk to a monitored DataRobot deployment."""

__version__ = "0.1.0"

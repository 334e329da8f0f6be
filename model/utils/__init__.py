"""The model's working parts; custom.py only hands DRUM's calls to them.

This package is uploaded to DataRobot with custom.py and runs there on its
own, so it imports nothing from drtool.
"""

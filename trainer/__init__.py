"""kws-kit: keyword spotting from audio to int8 models on microcontrollers.

The host side (this package, folder ``trainer/``) prepares data, trains, exports
and evaluates models; ``kws_kit.device`` is the MicroPython runtime that runs on
the boards (and, under CPython with numpy, in the host simulator).
"""

__version__ = "0.1.0"

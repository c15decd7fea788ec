"""Exit codes of every ``efiqa`` command, in one place.

| code | meaning |
|---|---|
| 0 | everything asked for was done |
| 1 | usage error, or a model/engine/calibration problem (one line on stderr) |
| 2 | some inputs failed (each reported; the rest were processed) |
| 3 | a required backend, library or extra is missing here (the line names what to install) |
| 4 | a precision variant failed its fidelity gate (nothing written) |
| 130 | interrupted |
"""
EXIT_OK, EXIT_USAGE, EXIT_INPUTS, EXIT_MISSING, EXIT_GATE_FAILED = 0, 1, 2, 3, 4

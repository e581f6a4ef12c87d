"""What the runner and the operator both speak: versions, phases, the runner's report, errors, redaction.

Nothing here imports the runner, the controller or the CLI.
"""

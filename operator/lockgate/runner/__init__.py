"""The migration runner (`lockgate migrate` and its siblings), run inside the migration Job.

Pure decisions (scripts, history, plan, lint, statements) and the database shell (database,
lock, execute) that carries them out. It never imports kubernetes, kopf or the controller.
"""

"""The migration runner (`lockgate migrate` and its siblings), run inside the migration Job.

Its front door is execute.Runner (migrate, plan, undo, baseline, repair, info); `lockgate exec`
is exec_command. Pure decisions (scripts, history, plan, inventory, options, lint, lint_objects,
statements, summary, pooler, say) and the shell that carries them out (database, lock, outcome,
heartbeat, invalid_indexes); batched/ walks background scripts in committed batches. It never
imports kubernetes, kopf or the controller.
"""

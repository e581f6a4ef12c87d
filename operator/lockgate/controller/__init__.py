"""The SchemaMigration operator: a pure decision core (decide.py) in a thin kopf/API shell."""

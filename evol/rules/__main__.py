"""``python -m evol.rules``: the table of rules the README holds."""

from evol.rules.registry import table

print(table())

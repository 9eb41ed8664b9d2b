"""The national platform's day end (issue 13): 3201/3202 reconciliation against the sandbox."""

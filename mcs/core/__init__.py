"""The pure core: API names, the merge, the plan of every write for one key. Imports no I/O."""

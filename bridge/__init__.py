"""The chain side of twin: a local anvil node, the compiled Lilypad contracts, their deployment
and a typed client that drives them, one signing account per party."""

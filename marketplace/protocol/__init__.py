"""Protocol SDK: contract artifacts and bindings, typed client, job spec and hashing."""

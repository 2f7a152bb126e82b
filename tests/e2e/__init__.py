"""End-to-end runs of python -m evol against scripted models: planted failures, realistic models, method fidelity, kills."""

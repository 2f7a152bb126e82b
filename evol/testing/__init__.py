"""Test helpers that ship with evol: a scripted OpenAI-compatible server on loopback."""

"""The embedded default model: llama.cpp's server as a child process, and what a run on it needs settled first."""

"""The elimination rules: each names what it catches; the registry lists every rule."""
